"""One truth per case, precedent only from verified humans: on the real dev server and PostgreSQL.

A decided case reset to before its decision and decided the other way, and a decided case ID started
again under ALLOW_DUPLICATE, each end with one current trace (the newest), agreeing with the workflow's
result, linked to the trace it supersedes, whose precedent is retracted, and a chain that shows both.
Only a verified reviewer's decision (update or signal) becomes precedent, named by its trace and chain position.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.case_activities import CaseActivities
from activities.identity import LocalIssuer
from activities.migrations import apply_migrations, available_migrations
from activities.store.audit import case_rows, verify_log
from activities.store.precedents import find_precedents
from activities.store.traces import insert_trace, latest_trace, report_rows, superseded_traces
from demo.examples import example
from gates.audit import AuditKind, AuditScope
from gates.brief import Proposal
from gates.cases import CaseKind
from gates.gate import Identity, IdentityMode
from gates.messages import RecordDecisionInput
from gates.precedent import PrecedentFeatures
from gates.trace import AgentNote, CaseResult, DecisionTrace
from tests.case_helpers import start_case, trace_row, wait_until_waiting
from tests.helpers import new_worker
from workers.config import Settings

REVIEWER = "vp_ops_raj"  # decides the procurement example at its first level (tests/integration/test_trust.py)


def verified_settings(state_dir: Path) -> Settings:
    return Settings(_env_file=None, database_url=None, identity="verified", state_dir=state_dir)


def proven(issuer: LocalIssuer, digest: str, outcome: str, reason: str) -> dict:
    proof = issuer.mint(REVIEWER, ttl=timedelta(minutes=30))
    return {"outcome": outcome, "reviewer": REVIEWER, "reason": reason, "digest": digest, "proof": proof}


async def reset_to_first_task(client: Client, handle: WorkflowHandle, run_id: str) -> str:
    """`temporal workflow reset` to the run's first workflow task: the case starts over, its first run
    ID kept. The new run's ID."""
    history = await handle.fetch_history()
    first_task = next(e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    answer = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=run_id),
            reason="test: decide again",
            workflow_task_finish_event_id=first_task,
            request_id=str(uuid.uuid4()),
        )
    )
    return answer.run_id


async def case_traces(pool, case_id: str) -> list:
    return await pool.fetch(
        """SELECT id, decision_key, run_id, outcome, supersedes FROM decision_traces
           WHERE case_id = $1 AND decided_via <> 'seed' ORDER BY id""",
        case_id,
    )


async def test_a_decided_case_reset_and_decided_the_other_way_has_one_truth_and_only_its_precedent(
    temporal_env, world_pool, tmp_path
):
    client, issuer = temporal_env.client, LocalIssuer(tmp_path)
    request = example(CaseKind.PROCUREMENT, human=True)
    async with new_worker(client, world_pool, settings=verified_settings(tmp_path)) as worker:
        handle = await start_case(client, request, worker.task_queue)
        view = await wait_until_waiting(handle)
        await handle.execute_update("submit_decision", proven(issuer, view.gate.digest, "approve", "quote checked"))
        first = await handle.result()
        first_run = (await handle.describe()).run_id
        approved = await trace_row(world_pool, handle)
        assert await world_pool.fetchval("SELECT count(*) FROM precedents WHERE decision_trace_id = $1", approved["id"]) == 1

        new_run = await reset_to_first_task(client, handle, first_run)
        again = client.get_workflow_handle(handle.id, run_id=new_run, result_type=CaseResult)
        view = await wait_until_waiting(again)
        await again.execute_update("submit_decision", proven(issuer, view.gate.digest, "reject", "the vendor is on hold"))
        second = await again.result()

    assert (first.outcome, second.outcome) == ("approve", "reject")
    old, new = await case_traces(world_pool, handle.id)
    assert old["id"] == first.trace_id and new["id"] == second.trace_id
    assert old["decision_key"] == new["decision_key"] and (old["run_id"], new["run_id"]) == (first_run, new_run)
    assert new["supersedes"] == old["id"]
    # what `hitl trace` prints is the workflow's result
    current = await latest_trace(world_pool, handle.id)
    assert current["id"] == second.trace_id and json.loads(current["trace"])["outcome"] == second.outcome == "reject"
    assert [e["id"] for e in await superseded_traces(world_pool, current["id"])] == [old["id"]]

    rows = await case_rows(world_pool, handle.id)
    superseded = [r for r in rows if r.kind == AuditKind.TRACE_SUPERSEDED]
    assert [json.loads(r.body_canonical) for r in superseded] == [
        {"new_trace_id": new["id"], "old_trace_id": old["id"], "reason": "reset"}
    ]
    recorded = {json.loads(r.body_canonical)["trace_id"]: r.global_seq for r in rows if r.kind == AuditKind.TRACE_RECORDED}
    assert set(recorded) == {old["id"], new["id"]}

    precedents = await world_pool.fetch(
        """SELECT decision_trace_id, outcome, trace_global_seq, retracted_at, retracted_reason
           FROM precedents WHERE case_id = $1 ORDER BY id""",
        handle.id,
    )
    assert [(p["decision_trace_id"], p["outcome"]) for p in precedents] == [(old["id"], "approve"), (new["id"], "reject")]
    assert [p["trace_global_seq"] for p in precedents] == [recorded[old["id"]], recorded[new["id"]]]
    assert precedents[0]["retracted_at"] is not None and f"superseded by trace {new['id']}" in precedents[0]["retracted_reason"]
    assert precedents[1]["retracted_at"] is None
    cited = await find_precedents(
        world_pool,
        kind=CaseKind.PROCUREMENT,
        amount_band=json.loads(approved["trace"])["features"]["amount_band"],
        tags=[],
        exclude_case_id=None,
        limit=50,
        reason_chars=100,
    )
    assert [p.outcome for p in cited if p.case_id == handle.id] == ["reject"]

    async with world_pool.acquire() as conn:
        report = await verify_log(conn, scope=AuditScope.case(handle.id))
    assert report.ok, report.problems
    assert report.traces_checked == 2


async def test_a_decided_case_id_started_again_has_one_current_trace_and_the_chain_shows_both(temporal_env, world_pool):
    request = example(CaseKind.ACCESS, human=False)
    async with new_worker(temporal_env.client, world_pool) as worker:
        first_handle = await start_case(temporal_env.client, request, worker.task_queue)
        first = await first_handle.result()
        second_handle = await start_case(temporal_env.client, request, worker.task_queue)  # ALLOW_DUPLICATE
        second = await second_handle.result()
    old, new = await case_traces(world_pool, first_handle.id)
    assert (old["id"], new["id"]) == (first.trace_id, second.trace_id)
    assert old["decision_key"] != new["decision_key"] and new["supersedes"] == old["id"]
    assert (await latest_trace(world_pool, first_handle.id))["id"] == second.trace_id
    rows = await case_rows(world_pool, first_handle.id)
    assert [r.kind for r in rows].count(AuditKind.CASE_OPENED) == 2
    assert [json.loads(r.body_canonical) for r in rows if r.kind == AuditKind.TRACE_SUPERSEDED] == [
        {"new_trace_id": new["id"], "old_trace_id": old["id"], "reason": "re-run"}
    ]
    # `hitl report` counts the case once (the world database is this test's: its other traces are seeded history)
    assert [r.outcome for r in await report_rows(world_pool, since=None)] == [second.outcome]

    # a late retry of either run's recording finds that run's row and changes nothing
    activities = CaseActivities(world_pool, Settings(_env_file=None))
    for row in (old, new):
        stored = await world_pool.fetchval("SELECT trace::text FROM decision_traces WHERE id = $1", row["id"])
        record = RecordDecisionInput(decision_key=row["decision_key"], trace=DecisionTrace.model_validate_json(stored))
        receipt = await ActivityEnvironment().run(activities.record_decision, record)
        assert (receipt.trace_id, receipt.newly_recorded) == (row["id"], False)
    assert [r["id"] for r in await case_traces(world_pool, first_handle.id)] == [old["id"], new["id"]]
    assert len(await case_rows(world_pool, first_handle.id)) == len(rows)
    async with world_pool.acquire() as conn:
        assert (await verify_log(conn, scope=AuditScope.case(first_handle.id))).ok


T0 = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def decided(via: str, mode: IdentityMode | None) -> RecordDecisionInput:
    """A small recorded decision (the fields the store reads), decided via `via` by someone whose identity
    is `mode` (None: none recorded), under a case ID of its own."""
    case_id = f"procurement_threshold_breach-pr-{uuid.uuid4().hex[:8]}"
    identity = None if mode is None else Identity(mode=mode, person=REVIEWER, issuer="hitl-local", channel=via)
    trace = DecisionTrace(
        decision_trace="procurement_threshold_breach",
        entities={"request": "pr-1"},
        inputs=["finance: budget"],
        human_gate="ops",
        case_id=case_id,
        business_key="pr-1",
        workflow_id=case_id,
        run_id="run-1",
        request={},
        brief="a purchase above threshold",
        findings=[],
        reason_codes=["amount_above_threshold"],
        proposal=Proposal(outcome="approve", rationale="budget remains"),
        agent=AgentNote(used=False),
        precedent_headline="no similar cases",
        precedents_cited=[],
        features=PrecedentFeatures(kind=CaseKind.PROCUREMENT, policy="procurement_policy_v1", amount_band="amount_10k_50k"),
        outcome="approve",
        decided_by=REVIEWER,
        decided_via=via,
        reason="budget remains",
        decided_level=0,
        opened_at=T0,
        gate_opened_at=T0,
        decided_at=T0 + timedelta(hours=1),
        decided_identity=identity,
        identity=mode,
    )
    return RecordDecisionInput(decision_key=f"{case_id}#run-1", trace=trace)


@pytest.fixture
async def migrated_pool(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.mark.parametrize(
    ("via", "mode", "is_precedent"),
    [
        ("update", "verified", True),
        ("signal", "verified", True),
        ("update", "asserted", False),
        ("signal", "asserted", False),
        ("update", None, False),
        ("policy", None, False),
        ("timeout", None, False),
        ("operator", "verified", False),  # a cancellation, even by a proven operator
    ],
)
async def test_only_a_verified_reviewers_decision_becomes_precedent_named_by_its_trace_and_chain_position(
    migrated_pool, via, mode, is_precedent
):
    record = decided(via, mode)
    activities = CaseActivities(migrated_pool, Settings(_env_file=None))
    receipt = await ActivityEnvironment().run(activities.record_decision, record)
    assert receipt.newly_recorded
    precedents = await migrated_pool.fetch(
        "SELECT decision_trace_id, trace_global_seq FROM precedents WHERE case_id = $1", record.trace.case_id
    )
    cited = await find_precedents(
        migrated_pool,
        kind=CaseKind.PROCUREMENT,
        amount_band="amount_10k_50k",
        tags=[],
        exclude_case_id=None,
        limit=5,
        reason_chars=50,
    )
    if not is_precedent:
        assert precedents == [] and cited == []
        return
    [recorded] = [r for r in await case_rows(migrated_pool, record.trace.case_id) if r.kind == AuditKind.TRACE_RECORDED]
    assert [(p["decision_trace_id"], p["trace_global_seq"]) for p in precedents] == [(receipt.trace_id, recorded.global_seq)]
    assert [p.case_id for p in cited] == [record.trace.case_id]


async def test_migrating_retracts_the_precedents_that_no_longer_deserve_it_and_keeps_seeded_history(empty_database_url):
    conn = await asyncpg.connect(empty_database_url)
    try:
        for migration in available_migrations():
            if migration.version < 5:
                await conn.execute(migration.sql)
        verified, asserted, policy = decided("update", "verified"), decided("signal", "asserted"), decided("policy", None)
        rerun = decided("update", "verified")
        rerun_first = rerun.model_copy(update={"decision_key": f"{rerun.trace.case_id}#run-0"})
        kept: dict[str, int] = {}
        for name, record in [
            ("verified", verified),
            ("asserted", asserted),
            ("policy", policy),
            ("rerun_old", rerun_first),
            ("rerun_new", rerun),
        ]:
            trace_id = await conn.fetchval(
                """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy, outcome,
                       decided_by, decided_via, reason, opened_at, decided_at, trace)
                   VALUES ($1, $2, $3, 'procurement_threshold_breach', 'procurement_threshold_breach', 'pr-1', 'p', 'approve',
                           $4, $5, 'r', $6, $6, $7::jsonb) RETURNING id""",
                record.decision_key,
                record.trace.case_id,
                record.trace.run_id,
                record.trace.decided_by,
                record.trace.decided_via,
                T0,
                record.trace.model_dump_json(),
            )
            kept[name] = trace_id
        seeded = await conn.fetchval(
            """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy, outcome,
                   decided_by, decided_via, reason, opened_at, decided_at, trace)
               VALUES ('seed:x', 'x', 'seed', 'k', 'k', 'b', 'p', 'approve', 'fin_rev_ana', 'seed', 'r', $1, $1, '{}')
               RETURNING id""",
            T0,
        )
        for trace_id in [*kept.values(), seeded]:
            await conn.execute(
                """INSERT INTO precedents (decision_trace_id, case_id, kind, policy, outcome, decided_by, reason, decided_at)
                   SELECT id, case_id, kind, policy, outcome, decided_by, reason, decided_at
                     FROM decision_traces WHERE id = $1""",
                trace_id,
            )

        await conn.execute(next(m for m in available_migrations() if m.version == 5).sql)

        retracted = {
            r["decision_trace_id"]: r["retracted_reason"]
            for r in await conn.fetch("SELECT decision_trace_id, retracted_reason FROM precedents WHERE retracted_at IS NOT NULL")
        }
        assert set(retracted) == {kept["asserted"], kept["policy"], kept["rerun_old"]}
        assert "not a decision by a verified human" in retracted[kept["policy"]]
        assert "a later trace of the same case ID supersedes it" in retracted[kept["rerun_old"]]
        # the same key under another run is a second row now; the same run is refused
        again = rerun.trace.model_copy(update={"run_id": "run-9"})
        assert await insert_trace(conn, rerun.decision_key, again) is not None
        assert await insert_trace(conn, rerun.decision_key, again) is None
    finally:
        await conn.close()


async def test_a_stale_runs_late_recording_never_supersedes_the_newer_decision(migrated_pool):
    """A reset ends the old run, but an attempt of its record_decision may still be running: its write
    comes after the new run's and must not become the truth."""
    newer = decided("update", "verified")
    case_id = newer.trace.case_id
    stale_trace = newer.trace.model_copy(
        update={"run_id": "run-0", "outcome": "reject", "decided_at": newer.trace.decided_at - timedelta(minutes=5)}
    )
    stale = RecordDecisionInput(decision_key=f"{case_id}#run-0", trace=stale_trace)
    activities = CaseActivities(migrated_pool, Settings(_env_file=None))
    current = await ActivityEnvironment().run(activities.record_decision, newer)
    with pytest.raises(ApplicationError, match="records a later decision of this case") as refused:
        await ActivityEnvironment().run(activities.record_decision, stale)
    assert refused.value.non_retryable
    assert (await latest_trace(migrated_pool, case_id))["id"] == current.trace_id
    assert await migrated_pool.fetchval("SELECT count(*) FROM decision_traces WHERE case_id = $1", case_id) == 1
