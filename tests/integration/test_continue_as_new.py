"""A waiting case continues as new before its history can reach Temporal's limits, with its whole
state carried over, on the real dev server (which sets the limits of gates/bounds.py).

Anyone who can signal can grow a case's history; Temporal terminates a workflow whose history
passes 50 MB or 51,200 events, and then nothing is recorded. The server refuses payloads over
SERVER_BLOB_LIMIT_BYTES and more than SERVER_MAX_SIGNALS_PER_RUN signals per run; the case
continues as new after CONTINUE_AS_NEW_AFTER_SIGNALS signals or when Temporal suggests it.
"""

from __future__ import annotations

import asyncio
import json

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from demo.examples import example
from gates import bounds
from gates.cases import CaseKind
from gates.gate import Decision
from gates.trace import CaseResult
from tests.case_helpers import case_view, save_history, start_case, trace_row, wait_until_waiting
from tests.helpers import HoldTheContinueAsNew, assert_eventually, new_worker
from tests.hostile import json_payload, raw_payload, raw_signal


async def _current_run(client: Client, handle: WorkflowHandle) -> str:
    return (await client.get_workflow_handle(handle.id).describe()).run_id


async def _continued(client: Client, handle: WorkflowHandle) -> str:
    """Wait until the case runs in a later run than the first; return that run's ID."""

    async def later_run() -> str:
        run_id = await _current_run(client, handle)
        assert run_id != handle.first_execution_run_id, "the case has not continued as new"
        return run_id

    return await assert_eventually(later_run, timeout=60, interval=0.3)


async def test_a_flood_of_junk_signals_makes_the_case_continue_as_new_with_its_state(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-flood"), worker.task_queue)
        before = await wait_until_waiting(handle)
        for n in range(bounds.CONTINUE_AS_NEW_AFTER_SIGNALS + 10):
            await raw_signal(client, handle.id, [json_payload({"junk": n})])
        await _continued(client, handle)
        after = await wait_until_waiting(client.get_workflow_handle(handle.id))
        # the same case: same gate, level, deadlines, brief and every kept attempt
        assert after.gate is not None and before.gate is not None
        assert (after.gate.level, after.gate.next_deadline, after.gate.remind_at) == (
            before.gate.level,
            before.gate.next_deadline,
            before.gate.remind_at,
        )
        assert after.brief == before.brief and after.policy == before.policy
        first_history = await client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).fetch_history()
        assert first_history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW

        async def all_kept():
            view = await case_view(client.get_workflow_handle(handle.id))
            assert len(view.rejected_attempts) == min(bounds.CONTINUE_AS_NEW_AFTER_SIGNALS + 10, bounds.MAX_KEPT_ATTEMPTS)
            return view

        await assert_eventually(all_kept, timeout=30)
        latest = client.get_workflow_handle(handle.id, result_type=CaseResult)
        receipt = await latest.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="fine after the flood")
        )
        assert receipt["accepted"]
        result = await latest.result()
        await save_history(
            client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id),
            CaseKind.RENEWAL,
            "flood_first_run",
            folder="continued",
        )
        await save_history(latest, CaseKind.RENEWAL, "flood_next_run", folder="continued")
    assert result.decided_by == "fin_rev_ana"
    row = await trace_row(world_pool, handle)  # one trace, under the case's first run's key
    trace = json.loads(row["trace"])
    assert trace["gate_opened_at"] is not None and len(trace["rejected_attempts"]) == bounds.MAX_KEPT_ATTEMPTS


async def test_a_flood_of_large_signals_never_pushes_a_run_near_the_history_limit(temporal_env, world_pool):
    """While signals keep arriving a run cannot close (Temporal refuses to continue a run as new
    with signals it has not handled), so under a flood the case continues as new at the first
    pause; meanwhile the server takes at most SERVER_MAX_SIGNALS_PER_RUN signals per run and
    refuses the rest, which bounds the run's history far below Temporal's 50 MB."""
    client = temporal_env.client
    big = b'"' + b"x" * (bounds.SERVER_BLOB_LIMIT_BYTES - 64 * 1024) + b'"'  # 448 KiB, under the server's limit
    refused = 0
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.ACCESS, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        for _ in range(bounds.SERVER_MAX_SIGNALS_PER_RUN + 16):
            try:
                await raw_signal(client, handle.id, [raw_payload(big)])
            except RPCError as err:
                assert "exceeded workflow execution limit for signal events" in err.message, err.message
                refused += 1
        await _continued(client, handle)
        first = await client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id).describe()
        size = first.raw_description.workflow_execution_info.history_size_bytes
        assert size < bounds.SERVER_MAX_SIGNALS_PER_RUN * len(big) + 1024 * 1024 < 50 * 1024 * 1024, size
        latest = client.get_workflow_handle(handle.id, result_type=CaseResult)
        view = await wait_until_waiting(latest)
        assert all(a.payload["truncated"] for a in view.rejected_attempts), "a huge payload was kept whole"
        # even if the run just continued is still starting, the decision waits for its state
        await latest.execute_update("submit_decision", Decision(outcome="reject", reviewer="sec_rev_eli", reason="no"))
        assert (await latest.result()).outcome == "reject"
    assert (await trace_row(world_pool, handle))["outcome"] == "reject"


async def test_decisions_in_flight_when_the_case_continues_as_new_are_not_lost(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        for n in range(bounds.CONTINUE_AS_NEW_AFTER_SIGNALS - 1):
            await raw_signal(client, handle.id, [json_payload({"junk": n})])
        latest = client.get_workflow_handle(handle.id, result_type=CaseResult)
        decision = Decision(outcome="approve", reviewer="vp_ops_raj", reason="budgeted")
        # the signal that makes the case continue as new, racing a decision and an operator note
        _, receipt, note = await asyncio.gather(
            raw_signal(client, handle.id, [json_payload({"junk": "last"})]),
            latest.execute_update("submit_decision", decision),
            latest.execute_update("operator_action", {"action": "note", "operator": "ops_oncall", "reason": "watching"}),
            return_exceptions=True,
        )
        assert not isinstance(receipt, BaseException), receipt
        assert receipt["accepted"], receipt
        # An update the closing run had admitted is retried by the client on the new run, after a backoff.
        # If the decision's retry lands first, the case can record and complete before the note's retry
        # arrives: then the note is refused as too late, to its sender, and is not in the trace.
        too_late = isinstance(note, RPCError) and note.status == RPCStatusCode.NOT_FOUND
        assert too_late or not isinstance(note, BaseException), note
        result = await asyncio.wait_for(latest.result(), timeout=60)
    assert (result.outcome, result.decided_by) == ("approve", "vp_ops_raj")
    row = await trace_row(world_pool, handle)
    trace = json.loads(row["trace"])
    assert [a["operator"] for a in trace["operator_actions"]] == ([] if too_late else ["ops_oncall"])


async def test_a_decision_and_a_signal_that_reach_the_continued_run_before_it_restored_its_state_are_taken(
    temporal_env, world_pool
):
    """Temporal hands a continued run its first updates and signals with its first task, before the run
    method restores the carried state. They used to be refused as "case is starting" (an update) or
    lost (a decide signal, overwritten by the restore); they are judged against the restored case."""
    client = temporal_env.client
    hold = HoldTheContinueAsNew()
    worker = new_worker(client, world_pool, interceptors=[hold])
    queue = worker.task_queue
    async with worker:
        handle = await start_case(client, example(CaseKind.PROCUREMENT, human=True), queue)
        await wait_until_waiting(handle)
        for n in range(bounds.CONTINUE_AS_NEW_AFTER_SIGNALS):
            await raw_signal(client, handle.id, [json_payload({"junk": n})])
        await asyncio.to_thread(hold.continuing.wait, 30)
        # leaving the block stops the worker's polling at once, and lets the held task finish
    latest = client.get_workflow_handle(handle.id, result_type=CaseResult)
    assert (await latest.describe()).run_id != handle.first_execution_run_id, "continued, and nobody polls the new run"
    await latest.signal("decide", {"outcome": "approve", "reviewer": "nobody_here", "reason": "kept as an attempt"})
    update = asyncio.create_task(
        latest.execute_update("submit_decision", Decision(outcome="approve", reviewer="vp_ops_raj", reason="budgeted"))
    )
    await asyncio.sleep(1.0)  # the update is admitted by the server, waiting for the run's first task
    async with new_worker(client, world_pool, task_queue=queue):
        receipt = await asyncio.wait_for(update, timeout=60)
        result = await asyncio.wait_for(latest.result(), timeout=60)
        await save_history(latest, CaseKind.PROCUREMENT, "judged_after_restore", folder="continued")
    assert receipt["accepted"] and (result.outcome, result.decided_by) == ("approve", "vp_ops_raj")
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [a["reviewer"] for a in trace["rejected_attempts"] if a["via"] == "signal"][-1:] == ["nobody_here"]
