"""Bad, unauthorized, duplicate and late decisions never break a case, on the real dev server:
the update rejects them before anything is written, the signal path keeps them as rejected attempts,
and exactly one decision row is ever written."""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.case_activities import CaseActivities
from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision
from gates.messages import RecordDecisionInput
from gates.trace import DecisionTrace
from hitl_temporal import CaseClient, DecisionRejected
from tests.case_helpers import case_view, start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from workers.config import Settings


def _update_events(history) -> int:
    return sum(
        1
        for e in history.events
        if e.event_type
        in (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    )


@pytest.mark.parametrize(
    ("reviewer", "expected"),
    [
        ("ae_sam", "ae_sam requested this case and may not decide it"),
        ("buyer_pat", "buyer_pat may not decide at level 1 (Finance reviewer); allowed groups: finance_reviewers"),
        ("fin_rev_greta", "fin_rev_greta may not decide"),  # left the company: not on the roster
    ],
)
async def test_update_rejects_requester_and_outsiders_before_anything_is_written(temporal_env, world_pool, reviewer, expected):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        cases = CaseClient(temporal_env.client, worker.task_queue)
        with pytest.raises(DecisionRejected) as rejected:
            await cases.decide(handle.id, Decision(outcome="approve", reviewer=reviewer, reason="looks fine"))
        assert expected in str(rejected.value)
        assert _update_events(await handle.fetch_history()) == 0, "a rejected update left events in history"
        view = await case_view(handle)
        assert view.state.value == "waiting" and view.decision is None
        await handle.terminate("test over")


async def test_update_with_malformed_payload_fails_for_the_caller_and_the_case_keeps_waiting(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        for bad in (
            {"outcome": "approve", "reviewer": "sec_rev_eli"},
            {"outcome": "ok", "reviewer": "sec_rev_eli", "reason": "x"},
            "approve",
        ):
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update("submit_decision", bad)
        assert (await case_view(handle)).state.value == "waiting"
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_rev_eli", reason="ok"))
        assert (await handle.result()).outcome == "approve"


async def test_bad_signals_become_rejected_attempts_visible_in_the_case_and_its_trace(temporal_env, world_pool):
    bad_signals = [
        "approve",  # not an object
        {"outcome": "approve", "reviewer": "fin_rev_ana"},  # no reason
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "   "},  # blank reason
        {"outcome": "maybe", "reviewer": "fin_rev_ana", "reason": "x"},  # unknown outcome
        {"outcome": "approve", "reviewer": "ae_sam", "reason": "my own deal"},  # the requester
        {"outcome": "approve", "reviewer": "buyer_pat", "reason": "x"},  # not in the finance ladder
    ]
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        for payload in bad_signals:
            await handle.signal("decide", payload)

        async def all_recorded():
            view = await case_view(handle)
            assert len(view.rejected_attempts) == len(bad_signals)
            return view

        view = await assert_eventually(all_recorded)
        assert view.state.value == "waiting", "bad signals must not move the case"
        errors = [a.error for a in view.rejected_attempts]
        assert "invalid decision: reason: Field required" in errors[1]
        assert "ae_sam requested this case" in errors[4]
        assert "buyer_pat may not decide" in errors[5]
        await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "precedent holds"})
        result = await handle.result()
    assert (result.outcome, result.decided_by) == ("approve", "fin_rev_ana")
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert len(trace["rejected_attempts"]) == len(bad_signals)


async def test_duplicate_and_late_decisions_are_refused_with_the_recorded_outcome(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        cases = CaseClient(temporal_env.client, worker.task_queue)
        await cases.decide(handle.id, Decision(outcome="approve", reviewer="vp_ops_raj", reason="budgeted"))
        await handle.result()
        with pytest.raises(DecisionRejected, match="already decided"):
            await cases.decide(handle.id, Decision(outcome="reject", reviewer="vp_proc_dana", reason="late"))
        with pytest.raises(RPCError, match="already completed"):
            await handle.signal("decide", {"outcome": "reject", "reviewer": "vp_proc_dana", "reason": "late"})
    row = await trace_row(world_pool, handle)
    assert (row["outcome"], row["decided_by"]) == ("approve", "vp_ops_raj")


async def test_racing_decisions_through_update_and_signal_write_exactly_one_row(temporal_env, world_pool):
    reviewers = ["fin_rev_ana", "fin_rev_ben", "fin_dir_omar"]
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        decision = {"outcome": "approve", "reason": "same call, three times"}
        outcomes = await asyncio.gather(
            *[handle.execute_update("submit_decision", Decision(reviewer=r, **decision)) for r in reviewers],
            *[handle.signal("decide", {"reviewer": r, **decision}) for r in reviewers],
            return_exceptions=True,
        )
        result = await handle.result()
        view = await case_view(handle)
    accepted_updates = [o for o in outcomes[:3] if not isinstance(o, BaseException)]
    # Refused: by the gate, or, for one that reached Temporal as the case completed, by the server
    # (an update aborted by the closing workflow, a signal to a completed one: RPC NOT_FOUND).
    refused = [
        o
        for o in outcomes
        if isinstance(o, WorkflowUpdateFailedError) or (isinstance(o, RPCError) and o.status == RPCStatusCode.NOT_FOUND)
    ]
    assert len(accepted_updates) <= 1
    assert len(accepted_updates) + len([o for o in outcomes[:3] if o in refused]) == 3
    assert result.decided_by in reviewers
    assert view.decision is not None and view.decision.decided_by == result.decided_by
    # every submission is accounted for: one accepted, the rest refused or kept as attempts (signal)
    assert 1 + len(refused) + len(view.rejected_attempts) == 6
    assert all("already decided" in a.error for a in view.rejected_attempts)
    row = await trace_row(world_pool, handle)  # asserts exactly one row
    assert (row["outcome"], row["decided_by"]) == ("approve", result.decided_by)
    # the trace keeps every attempt the case kept, those made while it was being written included
    trace_attempts = json.loads(row["trace"])["rejected_attempts"]
    assert [a["error"] for a in trace_attempts] == [a.error for a in view.rejected_attempts]


async def test_record_decision_retried_or_repeated_writes_once(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=False), worker.task_queue)
        await handle.result()
    row = await trace_row(world_pool, handle)
    record = RecordDecisionInput(decision_key=row["decision_key"], trace=DecisionTrace.model_validate_json(row["trace"]))
    activities = CaseActivities(world_pool, Settings(_env_file=None))
    env = ActivityEnvironment()
    first = await env.run(activities.record_decision, record)
    second = await env.run(activities.record_decision, record)
    assert first.trace_id == second.trace_id == row["id"]
    assert not first.newly_recorded and not second.newly_recorded
    await trace_row(world_pool, handle)
    # the policy decided this case: a trace, and no precedent (only verified reviewers' decisions are)
    assert await world_pool.fetchval("SELECT count(*) FROM precedents WHERE case_id = $1", handle.id) == 0


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"account": "acme_enterprise", "renewal": "fy26", "requested_discount_pct": 140}, "requested_discount_pct"),
        ("not an object", "invalid renewal_discount_exception case"),
    ],
)
async def test_a_bad_start_payload_fails_the_case_at_once_with_the_validation_errors(temporal_env, world_pool, payload, expected):
    """Started from another SDK or the `temporal` CLI without validation, the case must not wedge."""
    import uuid

    from temporalio.client import WorkflowFailureError

    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await temporal_env.client.start_workflow(
            "RenewalDiscountException", payload, id=f"bad-payload-{uuid.uuid4()}", task_queue=worker.task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    message = str(failed.value.cause)
    assert "invalid renewal_discount_exception case" in message and expected in message
