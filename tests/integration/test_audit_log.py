"""A case's gate events in the hash-chained audit log, written by the real worker into PostgreSQL:
the chain of a decided case holds, binds its trace, and an insider's edit of the trace is found.

Each case here has a business key of its own (the session's database holds other tests' runs of
the example cases), and checks are of that case's chain (`hitl audit verify --case`)."""

from __future__ import annotations

import uuid

from activities.store.audit import case_rows, verify_log
from demo.examples import FIRST_REVIEWER, example
from gates.audit import AuditScope
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import start_case, trace_row, wait_until_waiting
from tests.helpers import new_worker


async def test_a_decided_case_leaves_one_chain_that_holds_and_binds_its_trace(time_skipping_env, world_pool):
    request = example(CaseKind.RENEWAL, human=True, renewal=f"audit-{uuid.uuid4().hex[:8]}")
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)
        await handle.signal("decide", {"outcome": "approve", "reviewer": "ae_sam", "reason": "my own case"})
        reviewer = FIRST_REVIEWER[CaseKind.RENEWAL]
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer=reviewer, reason="precedent"))
        await handle.result()
    rows = await case_rows(world_pool, handle.id)
    assert [row.kind.value for row in rows] == [
        "case_opened",
        "gate_opened",
        "decision_refused",
        "decision_accepted",
        "trace_recorded",
    ]
    trace = await trace_row(world_pool, handle)
    assert rows[-1].body["trace_id"] == trace["id"]
    assert rows[3].body["decided_by"] == reviewer
    async with world_pool.acquire() as conn:
        report = await verify_log(conn, scope=AuditScope.case(handle.id))
    assert report.ok, report.problems
    assert (report.rows_checked, report.traces_checked) == (5, 1)


async def test_an_insider_edit_of_the_trace_row_is_found_and_named(time_skipping_env, world_pool):
    request = example(CaseKind.PROCUREMENT, human=True, request_id=f"pr-audit-{uuid.uuid4().hex[:8]}")
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, request, worker.task_queue)
        await wait_until_waiting(handle)
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="vp_ops_raj", reason="budget ok"))
        await handle.result()
    trace = await trace_row(world_pool, handle)
    scope = AuditScope.case(handle.id)
    try:
        await world_pool.execute(
            "UPDATE decision_traces SET outcome = 'reject', decided_by = 'cfo_jane' WHERE id = $1", trace["id"]
        )
        async with world_pool.acquire() as conn:
            report = await verify_log(conn, scope=scope)
        assert not report.ok
        assert f"trace {trace['id']}" in report.problems[0]
    finally:  # the session's database is shared: leave the row as the case wrote it
        await world_pool.execute(
            "UPDATE decision_traces SET outcome = $2, decided_by = $3 WHERE id = $1", trace["id"], "approve", "vp_ops_raj"
        )
    async with world_pool.acquire() as conn:
        assert (await verify_log(conn, scope=scope)).ok


async def test_a_case_decided_by_policy_writes_its_opening_its_outcome_and_its_trace(time_skipping_env, world_pool):
    request = example(CaseKind.PROCUREMENT, human=False, request_id=f"pr-audit-{uuid.uuid4().hex[:8]}")
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, request, worker.task_queue)
        await handle.result()
    rows = await case_rows(world_pool, handle.id)
    assert [row.kind.value for row in rows] == ["case_opened", "decided_by_policy", "trace_recorded"]
    async with world_pool.acquire() as conn:
        assert (await verify_log(conn, scope=AuditScope.case(handle.id))).ok
