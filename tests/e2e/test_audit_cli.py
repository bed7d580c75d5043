"""`hitl audit verify | checkpoint | export` as a user (and an auditor) runs them, against a database
of their own that an insider then changes behind the trigger's back."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from activities.migrations import apply_migrations
from activities.store.audit import append_events, recorded_traces
from activities.store.traces import insert_trace
from gates.audit import AuditEvent, AuditKind, trace_event_body
from tests.helpers import clean_env, run_hitl, with_database
from tests.integration.test_audit_store import decision_trace, event

# case-a: rows 1, 3, 5, 7 (its trace_recorded last); case-b: rows 2, 4; case-c: row 6
PLAN = [("case-a", 1), ("case-b", 1), ("case-a", 2), ("case-b", 2), ("case-a", 3), ("case-c", 1)]


@pytest_asyncio.fixture
async def db(empty_database_url: str):
    conn = await asyncpg.connect(empty_database_url)
    await apply_migrations(conn)
    await append_events(conn, [event(case, n) for case, n in PLAN])
    await insert_trace(conn, "case-a#run-1", decision_trace("case-a"))
    (record,) = await recorded_traces(conn, "case-a")
    await append_events(conn, [event("case-a", 4, AuditKind.TRACE_RECORDED, trace_event_body(record))])
    yield conn
    await conn.close()


@pytest.fixture
def env(db, empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    return clean_env(HITL_DATABASE_URL=empty_database_url, HITL_STATE_DIR=str(tmp_path / "state"))


async def as_insider(conn: asyncpg.Connection, *statements: str) -> None:
    """What a superuser can do: switch the trigger off, change the table, switch it back on."""
    async with conn.transaction():
        await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_append_only")


def one_line_error(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hitl: "), result.stderr
    return lines[0]


async def test_an_intact_log_and_each_of_its_cases_verify(env):
    whole = await run_hitl(env, "audit", "verify")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.splitlines()[0].startswith("the audit log holds: 7 rows, 3 cases, 1 trace checked; head global row 7 ")
    case = await run_hitl(env, "audit", "verify", "--case", "case-a")
    assert case.returncode == 0, case.stderr
    assert case.stdout.startswith("case case-a holds: 4 rows, 1 case, 1 trace checked; head global row 7 ")
    unknown = await run_hitl(env, "audit", "verify", "--case", "case-zzz")
    assert unknown.returncode == 1 and one_line_error(unknown) == "hitl: no audit rows for case 'case-zzz'"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            ["""UPDATE audit_events SET body_canonical = '{"n":99}' WHERE global_seq = 3"""],
            "global_seq 3 (case 'case-a', event_key 'case-a#run-1/gate_opened/2')",
            id="edited row",
        ),
        pytest.param(
            ["UPDATE audit_events SET kind = 'cancelled' WHERE global_seq = 6"],
            "global_seq 6 (case 'case-c', event_key 'case-c#run-1/gate_opened/1'): its content",
            id="edited kind",
        ),
        pytest.param(
            ["DELETE FROM audit_events WHERE global_seq = 4"],
            "global_seq 5 (case 'case-a', event_key 'case-a#run-1/gate_opened/3'): follows global_seq 3: row 4 was deleted",
            id="deleted row",
        ),
        pytest.param(
            ["DELETE FROM audit_events WHERE case_id = 'case-b'"],  # rows 2 and 4: the first gap is named, then the next
            "global_seq 3 (case 'case-a', event_key 'case-a#run-1/gate_opened/2'): follows global_seq 1: row 2 was deleted",
            id="deleted case",
        ),
        pytest.param(
            [
                "CREATE TEMP TABLE pair AS SELECT * FROM audit_events WHERE global_seq IN (2, 3)",
                "DELETE FROM audit_events WHERE global_seq IN (2, 3)",
                "INSERT INTO audit_events SELECT 5 - global_seq, case_id, case_seq, event_key, kind, at, body_canonical, "
                "case_prev, entry_hash, global_prev, row_hash, recorded_at FROM pair",
            ],
            "global_seq 2 (case 'case-a', event_key 'case-a#run-1/gate_opened/2'): holds the row made for global_seq 3",
            id="reordered pair",
        ),
    ],
)
async def test_an_insider_change_behind_the_trigger_is_found_and_its_row_named(db, env, change, named):
    await as_insider(db, *change)
    result = await run_hitl(env, "audit", "verify")
    assert result.returncode == 1, result.stdout
    line = one_line_error(result)
    assert named in line, line
    if "case-b" in change[0]:
        assert "follows global_seq 3: row 4 was deleted" in result.stdout, result.stdout
    assert "does NOT hold" in result.stdout


async def test_a_trace_edited_in_sql_is_found(db, env, tmp_path):
    await db.execute("UPDATE decision_traces SET outcome = 'reject', decided_by = 'cfo_jane' WHERE case_id = 'case-a'")
    refused = await run_hitl(env, "audit", "export", "case-a", "-o", str(tmp_path / "bundle.json"))
    assert refused.returncode == 1 and "not exported" in one_line_error(refused) and not (tmp_path / "bundle.json").exists()
    for args in (("audit", "verify"), ("audit", "verify", "--case", "case-a")):
        result = await run_hitl(env, *args)
        assert result.returncode == 1, result.stdout
        line = one_line_error(result)
        assert "trace 1 (case 'case-a', decision_key 'case-a#run-1')" in line and "the trace was edited" in line, line


async def test_an_exported_bundle_verifies_offline_and_fails_once_a_byte_changes(env, tmp_path):
    bundle = tmp_path / "case-a.bundle.json"
    exported = await run_hitl(env, "audit", "export", "case-a", "-o", str(bundle))
    assert exported.returncode == 0, exported.stderr
    assert "4 rows, 1 trace, chain proof of 7 rows up to global row 7 (signed a new checkpoint with dev key" in exported.stdout
    assert "after verifying the whole log)" in exported.stdout
    offline = clean_env(HITL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", TEMPORAL_ADDRESS="127.0.0.1:1")
    checked = await run_hitl(offline, "audit", "verify", "--bundle", str(bundle))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"bundle {bundle} holds: 7 rows, 1 case, 1 trace checked")
    assert "the bundle's own public key" in checked.stdout

    public = tmp_path / "trusted.pem"  # handed to the auditor apart from the bundle
    printed = await run_hitl(env, "audit", "public-key", "-o", str(public))
    assert printed.returncode == 0 and "public half of dev key" in printed.stderr, printed.stderr
    assert public.read_text() == json.loads(bundle.read_bytes())["public_key_pem"]
    trusted = await run_hitl(offline, "audit", "verify", "--bundle", str(bundle), "--public-key", str(public))
    assert trusted.returncode == 0 and "signed by trusted key" in trusted.stdout, trusted.stderr

    data = bundle.read_bytes()
    document = json.loads(data)
    value = document["case_rows"][1]["event_key"]
    position = data.index(value.encode()) + len(value) - 1
    for changed in (data[:position] + b"X" + data[position + 1 :], data.replace(b'"outcome":"approve"', b'"outcome":"reject!"')):
        bundle.write_bytes(changed)
        result = await run_hitl(offline, "audit", "verify", "--bundle", str(bundle))
        assert result.returncode in (1, 2), result.stdout
        one_line_error(result)


async def test_a_checkpoint_catches_history_rewritten_and_rechained_after_it(db, env, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    signed = await run_hitl(env, "audit", "checkpoint", "-o", str(checkpoint))
    assert signed.returncode == 0, signed.stderr
    assert json.loads(checkpoint.read_bytes())["global_seq"] == 7
    assert (await run_hitl(env, "audit", "verify", "--checkpoint", str(checkpoint))).returncode == 0

    # rewrite row 3's body and re-chain every row from scratch: the chains hold again
    stored = await db.fetch("SELECT * FROM audit_events ORDER BY global_seq")
    events = [
        AuditEvent(
            event_key=r["event_key"], case_id=r["case_id"], kind=r["kind"], at=r["at"],
            body={"n": 99} if r["global_seq"] == 3 else json.loads(r["body_canonical"]),
        )
        for r in stored
    ]
    async with db.transaction():
        await db.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        await db.execute("DELETE FROM audit_events")
        await append_events(db, events)
        await db.execute("ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_append_only")
    alone = await run_hitl(env, "audit", "verify")
    assert alone.returncode == 0, "re-chained history is consistent on its own"
    assert "note: no --checkpoint: history rewritten and re-chained" in alone.stdout

    caught = await run_hitl(env, "audit", "verify", "--checkpoint", str(checkpoint))
    assert caught.returncode == 1, caught.stdout
    assert "global_seq 7" in one_line_error(caught) and "rewritten" in caught.stderr
    export = await run_hitl(env, "audit", "export", "case-a", "-o", str(tmp_path / "b.json"), "--checkpoint", str(checkpoint))
    assert export.returncode == 1 and "history was rewritten or cut" in one_line_error(export)


async def test_a_checkpoint_catches_a_cut_tail_and_refuses_a_foreign_key(db, env, tmp_path):
    checkpoint = tmp_path / "checkpoint.json"
    to_stdout = await run_hitl(env, "audit", "checkpoint")
    assert to_stdout.returncode == 0 and to_stdout.stderr.startswith("signed global row 7 (7 rows verified) with dev key ")
    checkpoint.write_text(to_stdout.stdout)
    await as_insider(db, "DELETE FROM audit_events WHERE global_seq >= 6")
    cut = await run_hitl(env, "audit", "verify", "--checkpoint", str(checkpoint))
    assert cut.returncode == 1 and "truncated" in one_line_error(cut), cut.stderr

    other = clean_env(HITL_DATABASE_URL=env["HITL_DATABASE_URL"], HITL_STATE_DIR=str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    assert (await run_hitl(other, "audit", "checkpoint", "-o", str(tmp_path / "x.json"))).returncode == 1, "the log is cut"
    foreign = await run_hitl(other, "audit", "verify", "--checkpoint", str(checkpoint))
    assert foreign.returncode == 1 and "not by the given key" in one_line_error(foreign)


async def test_bad_input_is_one_line_and_exit_2(db, env, tmp_path):
    not_json = tmp_path / "bad.json"
    not_json.write_text("nope")
    for args in (
        ("audit", "verify", "--checkpoint", str(not_json)),
        ("audit", "verify", "--bundle", str(not_json)),
        ("audit", "verify", "--bundle", str(not_json), "--case", "case-a"),
        ("audit", "checkpoint", "--key", str(not_json)),
        ("audit", "export", "case-a", "-o", "-", "--checkpoint", str(tmp_path / "missing.json")),
    ):
        result = await run_hitl(env, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        one_line_error(result)
    unreachable = clean_env(HITL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    down = await run_hitl(unreachable, "audit", "verify")
    assert down.returncode == 2 and "cannot reach PostgreSQL" in one_line_error(down)


async def test_export_with_a_kept_checkpoint_needs_one_at_or_after_the_cases_last_row(db, env, tmp_path):
    checkpoint, bundle = tmp_path / "checkpoint.json", tmp_path / "bundle.json"
    assert (await run_hitl(env, "audit", "checkpoint", "-o", str(checkpoint))).returncode == 0
    await append_events(db, [event("case-b", 3)])  # global row 8, after the checkpoint: case-b's proof stops at 7
    kept = await run_hitl(env, "audit", "export", "case-a", "-o", str(bundle), "--checkpoint", str(checkpoint))
    assert kept.returncode == 0, kept.stderr
    assert f"up to global row 7 (checkpoint {checkpoint})" in kept.stdout
    assert (await run_hitl(env, "audit", "verify", "--bundle", str(bundle))).returncode == 0
    stale = await run_hitl(env, "audit", "export", "case-b", "-o", str(bundle), "--checkpoint", str(checkpoint))
    assert stale.returncode == 2 and "before the case's last row 8: sign a newer one" in one_line_error(stale)
    behind = f"{env['HITL_DATABASE_URL'].rsplit('/', 1)[1]}_behind"
    await db.execute(f'CREATE DATABASE "{behind}"')
    try:
        unmigrated = clean_env(HITL_DATABASE_URL=with_database(env["HITL_DATABASE_URL"], behind), HITL_STATE_DIR=str(tmp_path))
        for args in (("audit", "verify"), ("audit", "checkpoint"), ("audit", "export", "case-a", "-o", "-")):
            result = await run_hitl(unmigrated, *args)
            assert result.returncode == 2 and "run `hitl migrate` first" in one_line_error(result), (args, result.stderr)
    finally:
        await db.execute(f'DROP DATABASE IF EXISTS "{behind}" WITH (FORCE)')
