"""Hostile and careless signals, updates and queries on a waiting case, on the real dev server.

Each is answered with its reason (a rejected attempt for the signal, a refused update for the
update), the case keeps waiting with no failed workflow task, a valid decision still goes through,
and PostgreSQL ends up with exactly one trace that keeps every attempt.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.case_activities import CaseActivities
from demo.examples import example
from gates import bounds
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from gates.messages import RecordDecisionInput
from gates.trace import DecisionTrace
from tests.case_helpers import case_view, start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from tests.hostile import UNREADABLE_INPUTS, json_payload, raw_signal
from workers.config import Settings


async def _no_failed_workflow_task(handle: WorkflowHandle) -> None:
    history = await handle.fetch_history()
    failures = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert not failures, f"a workflow task failed: {failures[0].workflow_task_failed_event_attributes.failure.message}"


async def _attempts(handle: WorkflowHandle, count: int):
    async def kept():
        view = await case_view(handle)
        assert len(view.rejected_attempts) >= count, f"{len(view.rejected_attempts)} of {count} attempts kept"
        return view

    return await assert_eventually(kept, timeout=30)


async def test_decide_signals_that_are_not_one_json_decision_become_rejected_attempts(temporal_env, world_pool):
    """The Web UI's Send a Signal with an empty Data box sends no input at all; other senders send
    two payloads, bytes that are not JSON, other encodings."""
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-signals"), worker.task_queue)
        await wait_until_waiting(handle)
        for payloads, _ in UNREADABLE_INPUTS.values():
            await raw_signal(client, handle.id, payloads)
        view = await _attempts(handle, len(UNREADABLE_INPUTS))
        assert view.state.value == "waiting"
        for (name, (_, expected)), attempt in zip(UNREADABLE_INPUTS.items(), view.rejected_attempts, strict=True):
            assert expected in attempt.error, (name, attempt.error)
            assert attempt.error.startswith("the decide signal"), attempt.error
        await _no_failed_workflow_task(handle)
        await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "precedent holds"})
        assert (await handle.result()).decided_by == "fin_rev_ana"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [a["error"] for a in trace["rejected_attempts"]] == [a.error for a in view.rejected_attempts]


CONTENT = {
    "zero-width reason": (
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "\u200b"},
        "reason: Value error, text has no visible characters",
    ),
    "NUL in reason": (
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "ok\u0000"},
        "text contains the control character ⟨U+0000⟩",
    ),
    "escape in reason": ({"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "\u001b[2J"}, "control character ⟨U+001B⟩"),
    "RTL override reviewer": (
        {"outcome": "approve", "reviewer": "\u202eana_ver_nif", "reason": "x"},
        "reviewer: String should match pattern",
    ),
    "extra field": (
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "x", "level": 9},
        "level: Extra inputs are not permitted",
    ),
    "outcome in capitals": ({"outcome": "APPROVE", "reviewer": "fin_rev_ana", "reason": "x"}, "outcome: Input should be"),
    "huge reason": (
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "x" * 5000},
        "reason: String should have at most 4000 characters",
    ),
}


async def test_decisions_whose_content_is_not_valid_are_refused_the_same_way_by_update_and_signal(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-content"), worker.task_queue)
        await wait_until_waiting(handle)
        for name, (payload, expected) in CONTENT.items():
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update("submit_decision", payload)
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == "DecisionRejected", name
            assert expected in cause.message, (name, cause.message)
            assert cause.non_retryable, f"{name}: a refusal for its content is reported as retryable"
            assert not cause.failure or not cause.failure.stack_trace, f"{name}: the refusal carries a stack trace"
            await raw_signal(client, handle.id, [json_payload(payload)])
        view = await _attempts(handle, len(CONTENT))
        for (name, (_, expected)), attempt in zip(CONTENT.items(), view.rejected_attempts, strict=True):
            assert expected in attempt.error, (name, attempt.error)
        assert view.state.value == "waiting" and view.decision is None
        await _no_failed_workflow_task(handle)
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="fine"))
        await handle.result()
    row = await trace_row(world_pool, handle)
    trace = json.loads(row["trace"])
    assert len(trace["rejected_attempts"]) == len(CONTENT)
    reviewers = [a["reviewer"] for a in trace["rejected_attempts"]]
    assert "\u202eana_ver_nif" in reviewers, "the attempt's reviewer label is kept as sent (it is shown neutralized)"


async def test_updates_with_no_or_several_payloads_are_refused_and_queries_ignore_their_input(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-arity"), worker.task_queue)
        await wait_until_waiting(handle)
        decision = {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "x"}
        for update, args, expected in (
            ("submit_decision", [], "submit_decision takes exactly one JSON payload; got none"),
            ("submit_decision", [decision, decision], "submit_decision takes exactly one JSON payload; got 2"),
            ("operator_action", [], "operator_action takes exactly one JSON payload; got none"),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(update, args=args)
            assert isinstance(refused.value.cause, ApplicationError) and expected in refused.value.cause.message
        view = await handle.query("case_state", args=["unexpected", 1])
        assert view["state"] == "waiting"
        await _no_failed_workflow_task(handle)
        await handle.terminate("test over")


async def test_unstorable_text_in_a_rejected_signal_does_not_stop_the_trace_being_written(temporal_env, world_pool):
    """PostgreSQL cannot store NUL: an anonymous junk signal carrying one used to make
    record_decision retry forever, with no trace ever written."""
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-nul"), worker.task_queue)
        await wait_until_waiting(handle)
        await raw_signal(
            client,
            handle.id,
            [json_payload({"outcome": "approve", "reviewer": "x\u0000y", "reason": "\u0000", "junk\u0000": "\ud800"})],
        )
        await _attempts(handle, 1)
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="fine"))
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.outcome == "approve"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    [attempt] = trace["rejected_attempts"]
    assert attempt["reviewer"] == "x\ufffdy"


async def test_a_signal_sent_while_the_decision_is_being_recorded_reaches_the_trace(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-late"), worker.task_queue)
        await wait_until_waiting(handle)
        async with world_pool.acquire() as lock:
            async with lock.transaction():
                await lock.execute("LOCK TABLE decision_traces IN SHARE MODE")  # the recorder's INSERT waits
                await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))

                async def recording():
                    assert (await case_view(handle)).state.value == "recording"

                await assert_eventually(recording, timeout=20)
                await handle.signal("decide", {"outcome": "reject", "reviewer": "fin_rev_ben", "reason": "too late"})
                await _attempts(handle, 1)
        await asyncio.wait_for(handle.result(), timeout=60)
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    [late] = trace["rejected_attempts"]
    assert late["reviewer"] == "fin_rev_ben" and "already decided" in late["error"]


async def test_operator_actions_are_bounded_and_cancel_stays_possible(temporal_env, world_pool):
    client = temporal_env.client
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-notes"), worker.task_queue)
        await wait_until_waiting(handle)
        note = OperatorAction(action="note", operator="ops_oncall", reason="n" * 4000)
        for _ in range(bounds.MAX_OPERATOR_ACTIONS):
            await handle.execute_update("operator_action", note)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("operator_action", note)
        assert "only cancel is still possible" in refused.value.cause.message
        cancel = OperatorAction(action="cancel", operator="ops_oncall", reason="enough")
        await handle.execute_update("operator_action", cancel)
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.outcome == "cancelled"
    row = await trace_row(world_pool, handle)
    trace = json.loads(row["trace"])
    assert len(trace["operator_actions"]) == bounds.MAX_OPERATOR_ACTIONS + 1
    assert len(row["trace"].encode()) < bounds.MAX_CASE_PAYLOAD_BYTES


async def test_request_info_rounds_are_bounded_and_the_brief_stops_growing(temporal_env, world_pool):
    client = temporal_env.client
    question = "q" * 3000
    async with new_worker(client, world_pool) as worker:
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal="fy26-rounds"), worker.task_queue)
        briefs = []
        for round_no in range(1, bounds.MAX_REQUEST_INFO_ROUNDS + 2):
            view = await wait_until_waiting(handle, round_no=round_no, timeout=60)
            briefs.append(len(view.brief or ""))
            ask = Decision(outcome="request_info", reviewer="fin_rev_ana", reason=f"{round_no}: {question}")
            if round_no <= bounds.MAX_REQUEST_INFO_ROUNDS:
                await handle.execute_update("submit_decision", ask)
                answer = {"answerer": "ae_sam", "text": f"{round_no}: " + "a" * 3000}  # the requester, asked by default
                await handle.execute_update("answer_info", answer)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("submit_decision", ask)
        assert (
            f"sent back for information {bounds.MAX_REQUEST_INFO_ROUNDS} times; approve or reject it"
            in refused.value.cause.message
        )
        earlier = bounds.MAX_REQUEST_INFO_ROUNDS - bounds.QUESTIONS_IN_BRIEF
        assert f"({earlier} earlier questions are in the trace)" in (view.brief or "")
        # once the brief shows its most questions, each further round leaves its size unchanged
        settled = briefs[bounds.QUESTIONS_IN_BRIEF + 1 :]
        assert max(settled) - min(settled) < 100, briefs
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="done"))
        await handle.result()
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert len(trace["rounds"]) == bounds.MAX_REQUEST_INFO_ROUNDS


async def test_the_recorder_stores_a_trace_whatever_text_reached_it(temporal_env, world_pool):
    """NUL and unpaired surrogates (from a connector, say) cannot be stored by PostgreSQL: the
    recorder replaces them, so writing the trace never fails on content."""
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=False), worker.task_queue)
        await handle.result()
    row = await trace_row(world_pool, handle)
    trace = DecisionTrace.model_validate_json(row["trace"])
    poisoned = trace.model_copy(
        update={"brief": "evidence\x00with NUL", "reason": "x\ud800y", "case_id": trace.case_id + "-copy"}
    )
    record = RecordDecisionInput(decision_key=row["decision_key"] + "-copy", trace=poisoned)
    receipt = await ActivityEnvironment().run(CaseActivities(world_pool, Settings(_env_file=None)).record_decision, record)
    stored = await world_pool.fetchrow("SELECT reason, trace FROM decision_traces WHERE id = $1", receipt.trace_id)
    assert receipt.newly_recorded and stored["reason"] == "x\ufffdy"
    assert json.loads(stored["trace"])["brief"] == "evidence\ufffdwith NUL"
