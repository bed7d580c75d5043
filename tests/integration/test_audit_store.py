"""The audit log in a real PostgreSQL: written once per event, one chain under concurrent appenders,
refused changes, and rows that read back into the hashes they were written with."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from activities.audit_keys import dev_checkpoint_key, dev_key_path, load_checkpoint_key
from activities.migrations import apply_migrations
from activities.store.audit import all_rows, append_events, case_rows, global_head_row, recorded_traces, verify_log
from activities.store.traces import insert_trace
from gates.audit import AuditEvent, AuditKind, AuditScope, trace_digest, verify_chain
from gates.brief import Proposal
from gates.cases import CaseKind
from gates.precedent import PrecedentFeatures
from gates.trace import AgentNote, DecisionTrace

T0 = datetime(2026, 12, 2, 9, 30, 0, 123456, tzinfo=UTC)


def decision_trace(case_id: str, *, outcome: str = "approve", decided_by: str = "fin_rev_ana") -> DecisionTrace:
    """A small recorded decision, as the workflow builds one (the fields the audit digest covers and what they need)."""
    return DecisionTrace(
        decision_trace="renewal_discount_exception", entities={"account": "acme"}, inputs=["crm: tier"], human_gate="finance",
        case_id=case_id, business_key="acme/fy26", workflow_id=case_id, run_id="run-1", request={"discount_pct": 12.5},
        brief="12.5% discount on a 3-year renewal", findings=[], reason_codes=["discount_above_limit"],
        proposal=Proposal(outcome="approve", rationale="within precedent"), agent=AgentNote(used=False),
        precedent_headline="3 similar cases, all approved", precedents_cited=[],
        features=PrecedentFeatures(kind=CaseKind.RENEWAL, policy="discount_policy_v3_2", amount_band="10-20"),
        outcome=outcome, decided_by=decided_by, decided_via="update", reason="service impact last quarter", decided_level=0,
        opened_at=T0, gate_opened_at=T0, decided_at=T0 + timedelta(hours=2),
    )


def event(case_id: str, n: int, kind: AuditKind = AuditKind.GATE_OPENED, body: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(
        event_key=f"{case_id}#run-1/{kind}/{n}", case_id=case_id, kind=kind, at=T0 + timedelta(seconds=n), body=body or {"n": n}
    )


@pytest.fixture
async def conn(empty_database_url):
    connection = await asyncpg.connect(empty_database_url)
    await apply_migrations(connection)
    yield connection
    await connection.close()


async def test_appending_the_same_events_again_adds_nothing_and_returns_the_stored_rows(conn):
    events = [event("case-a", 1), event("case-b", 1), event("case-a", 2)]
    first = await append_events(conn, events)
    again = await append_events(conn, [events[1], events[0], event("case-a", 3), events[2]])

    assert [r.global_seq for r in first] == [1, 2, 3]
    assert [(r.case_id, r.case_seq) for r in first] == [("case-a", 1), ("case-b", 1), ("case-a", 2)]
    assert again[0] == first[1] and again[1] == first[0] and again[3] == first[2]
    assert (again[2].global_seq, again[2].case_seq) == (4, 3), "only the new event is appended"
    assert await conn.fetchval("SELECT count(*) FROM audit_events") == 4
    assert await append_events(conn, [events[0], events[0]]) == [first[0], first[0]]
    assert await conn.fetchval("SELECT count(*) FROM audit_events") == 4


async def test_rows_read_back_hash_as_written_whatever_the_body_looks_like(conn):
    awkward = {"z": 1.0, "a": [1e21, 0.1, -0.0, "é\u2028"], "nested": {"b": None, "a": True}, "big": 2**53 - 1}
    written = await append_events(conn, [event("case-a", 1, body=awkward)])
    stored = await case_rows(conn, "case-a")

    assert stored == written
    assert verify_chain(stored, scope=AuditScope.case("case-a")).ok
    assert (await global_head_row(conn)) == written[0]


async def test_twenty_concurrent_appenders_make_one_valid_chain(empty_database_url):
    setup = await asyncpg.connect(empty_database_url)
    await apply_migrations(setup)
    pool = await asyncpg.create_pool(empty_database_url, min_size=5, max_size=10)
    try:

        async def appender(i: int) -> None:
            for n in range(5):
                async with pool.acquire() as c:
                    await append_events(c, [event(f"case-{i % 7}", i * 100 + n), event(f"case-{i}-own", n)])

        await asyncio.gather(*(appender(i) for i in range(20)))
        rows = [row async for batch in _all(setup) for row in batch]
    finally:
        await pool.close()
        await setup.close()

    assert [r.global_seq for r in rows] == list(range(1, 201))
    report = verify_chain(rows)
    assert report.ok, report.problems
    assert report.rows_checked == 200 and report.cases_checked == 27


async def _all(conn: asyncpg.Connection):
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for batch in all_rows(conn, batch=17):
            yield batch


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET kind = 'cancelled' WHERE global_seq = 1",
        "DELETE FROM audit_events WHERE global_seq = 1",
        "TRUNCATE audit_events",
    ],
)
async def test_the_table_refuses_updates_deletes_and_truncation_even_to_a_superuser(conn, statement):
    await append_events(conn, [event("case-a", 1)])
    assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    refused = r"audit_events is append-only: (UPDATE|DELETE|TRUNCATE) refused"
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refused):
        await conn.execute(statement)
    await conn.execute("SET session_replication_role = replica")  # skips ordinary triggers; not these
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="audit_events is append-only"):
        await conn.execute(statement)
    await conn.execute("RESET session_replication_role")
    assert await conn.fetchval("SELECT count(*) FROM audit_events WHERE kind = 'gate_opened'") == 1


async def test_the_writer_role_may_insert_and_select_only(conn):
    await append_events(conn, [event("case-a", 1)])
    privileges = await conn.fetch(
        """SELECT privilege_type FROM information_schema.role_table_grants
           WHERE grantee = 'hitl_audit_writer' AND table_name = 'audit_events' ORDER BY privilege_type"""
    )
    assert [p["privilege_type"] for p in privileges] == ["INSERT", "SELECT"]
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE hitl_audit_writer")
        await append_events(conn, [event("case-a", 2)])
        for statement, refusal in [
            ("UPDATE audit_events SET kind = 'cancelled'", "permission denied for table audit_events"),
            ("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only", "must be owner of table audit_events"),
        ]:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
                async with conn.transaction():
                    await conn.execute(statement)
    assert await conn.fetchval("SELECT count(*) FROM audit_events") == 2


async def test_migrating_a_second_database_of_the_cluster_tolerates_the_existing_role(conn, empty_database_url):
    from tests.helpers import with_database

    name = f"t2_{empty_database_url.rsplit('/', 1)[1]}"[:60]
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        other = await asyncpg.connect(with_database(empty_database_url, name))
        try:
            assert 4 in [m.version for m in await apply_migrations(other)]
            assert await other.fetchval("SELECT has_table_privilege('hitl_audit_writer', 'audit_events', 'INSERT')")
        finally:
            await other.close()
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_trace_reads_back_with_the_digest_its_writer_computed(conn):
    trace = decision_trace("case-a")
    trace_id = await insert_trace(conn, "case-a#run-1", trace)
    (record,) = await recorded_traces(conn, "case-a")
    assert record.trace_id == trace_id
    assert trace_digest(record) == trace_digest(record.model_copy(update={"trace": trace.model_dump(mode="json")}))
    await conn.execute("UPDATE decision_traces SET decided_via = 'seed' WHERE id = $1", trace_id)
    assert await recorded_traces(conn) == [], "seeded history is not vouched for by the chain"


async def test_streamed_verification_in_small_batches_reports_as_the_whole_log_at_once(conn):
    await append_events(conn, [event(f"case-{n % 3}", n) for n in range(1, 12)])
    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
    await conn.execute("""UPDATE audit_events SET body_canonical = '{"n":0}' WHERE global_seq = 8""")
    rows = [row async for batch in _all(conn) for row in batch]
    streamed = await verify_log(conn, batch=3)
    assert streamed.problems == verify_chain(rows, traces=[]).problems
    assert not streamed.ok and streamed.problems[0].startswith("global_seq 8 ")
    assert streamed.rows_checked == 11


def test_the_dev_checkpoint_key_is_created_once_readable_only_by_its_owner(tmp_path):
    first = dev_checkpoint_key(tmp_path)
    path = dev_key_path(tmp_path)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    same = dev_checkpoint_key(tmp_path)
    assert same.private_bytes_raw() == first.private_bytes_raw() == load_checkpoint_key(path).private_bytes_raw()
