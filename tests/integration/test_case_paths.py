"""Every path of every kind, on the time-skipping server with real activities and a real PostgreSQL:
auto-decided, approved, rejected, request_info and back, and reminded, escalated and timed out."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowHandle

from activities.policy_files import bundled_gates, bundled_policy_dir, load_policies
from demo.examples import FIRST_REVIEWER, example
from gates.cases import CaseKind
from gates.gate import Decision
from gates.trace import CaseResult
from tests.case_helpers import activity_ids, save_history, start_case, trace_row, wait_until_waiting
from tests.helpers import new_worker

KINDS = list(CaseKind)
POLICIES = load_policies(bundled_policy_dir())


async def _result(handle: WorkflowHandle) -> CaseResult:
    return await handle.result()


@pytest.mark.parametrize("kind", KINDS)
async def test_case_within_policy_is_decided_by_policy_and_recorded_with_the_rules_that_allowed_it(
    time_skipping_env, world_pool, kind
):
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=False), worker.task_queue)
        result = await _result(handle)
        await save_history(handle, kind, "auto")
    policy = POLICIES[kind]
    assert result.outcome == "approve"
    assert result.decided_by == f"policy:{policy.ref}"
    row = await trace_row(world_pool, handle)
    trace = json.loads(row["trace"])
    assert row["decided_via"] == "policy" and row["gate"] is None
    assert trace["human_gate"] is None
    assert {f["rule_id"] for f in trace["findings"]} == {r.id for r in policy.rules}
    assert not any(f["requires_human"] for f in trace["findings"])
    assert trace["entities"]["policy"] == policy.ref


@pytest.mark.parametrize("kind", KINDS)
async def test_reviewer_approves_through_the_update_and_the_trace_names_them(time_skipping_env, world_pool, kind):
    reviewer = FIRST_REVIEWER[kind]
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=True), worker.task_queue)
        view = await wait_until_waiting(handle)
        assert reviewer in view.gate.may_decide
        receipt = await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer=reviewer, reason="evidence supports it")
        )
        result = await _result(handle)
        await save_history(handle, kind, "approve")
    assert receipt["accepted"] is True
    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", reviewer, "update")
    row = await trace_row(world_pool, handle)
    trace = json.loads(row["trace"])
    assert trace["decision_trace"] == kind.value
    assert trace["human_gate"] == bundled_gates()[kind]
    assert trace["reason"] == "evidence supports it"
    assert trace["inputs"], "the trace lists the evidence consulted"
    assert trace["brief"].startswith("### ")
    # these tests run with HITL_IDENTITY=asserted: a reviewer nobody verified sets no precedent
    # (tests/integration/test_trust.py: a verified reviewer's decision does)
    assert await world_pool.fetchval("SELECT count(*) FROM precedents WHERE decision_trace_id = $1", row["id"]) == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_reviewer_rejects_through_the_decide_signal(time_skipping_env, world_pool, kind):
    reviewer = FIRST_REVIEWER[kind]
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        await handle.signal("decide", {"outcome": "reject", "reviewer": reviewer, "reason": "not this quarter"})
        result = await _result(handle)
        await save_history(handle, kind, "reject")
    assert (result.outcome, result.decided_by, result.decided_via) == ("reject", reviewer, "signal")
    row = await trace_row(world_pool, handle)
    assert (row["outcome"], row["decided_by"], row["reason"]) == ("reject", reviewer, "not this quarter")


@pytest.mark.parametrize("kind", KINDS)
async def test_request_info_waits_for_the_answer_then_gathers_again_and_returns_to_the_gate(time_skipping_env, world_pool, kind):
    reviewer = FIRST_REVIEWER[kind]
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        await handle.execute_update(
            "submit_decision",
            Decision(outcome="request_info", reviewer=reviewer, reason="What did the customer sign last year?"),
        )
        requester = example(kind, human=True).requester  # asked by default
        await handle.execute_update("answer_info", {"answerer": requester, "text": "The 2025 MSA."})
        view = await wait_until_waiting(handle, round_no=2)
        assert [q.question for q in view.questions] == ["What did the customer sign last year?"]
        assert "What did the customer sign last year?" in view.brief
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer=reviewer, reason="answered"))
        result = await _result(handle)
        history = await handle.fetch_history()
        await save_history(handle, kind, "request_info")
    assert result.outcome == "approve"
    asked = activity_ids(history)
    assert "open-case-and-gather" in asked, "the first round's sources are asked with the case's opening read"
    gathered_rounds = {a.rsplit("-", 1)[1] for a in asked if a.startswith("gather-")}
    assert gathered_rounds == {"2"}, "evidence was gathered again for the second round"
    assert "What did the customer sign last year?" in view.brief, "and summarized again with the question"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [r["outcome"] for r in trace["rounds"]] == ["request_info"]
    assert trace["questions"][0]["question"] == "What did the customer sign last year?"
    assert [(r["asked"], r["answer"]) for r in trace["info_rounds"]] == [(requester, "The 2025 MSA.")]


async def test_an_unanswered_question_is_reminded_closes_and_the_case_goes_back_to_its_gate_as_the_policy_says(
    time_skipping_env, world_pool
):
    """The bundled policies say `no_answer: back_to_gate`: nobody answers, the person asked is reminded, the
    question closes unanswered (both told), the gate reopens, and the case then runs its ladder to the timeout."""
    kind = CaseKind.PROCUREMENT
    policy = POLICIES[kind]
    assert policy.gate.no_answer == "back_to_gate"
    reviewer = FIRST_REVIEWER[kind]
    requester = example(kind, human=True).requester
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        await handle.execute_update(
            "submit_decision", Decision(outcome="request_info", reviewer=reviewer, reason="Is the quote for three years?")
        )
        result = await _result(handle)  # the time-skipping server runs the question's and the gate's timers
    assert result.outcome == policy.gate.timeout_outcome and result.decided_via == "timeout"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [(r["asked"], r["outcome"], r["answer"]) for r in trace["info_rounds"]] == [(requester, "no_answer", None)]
    notes = await world_pool.fetch("SELECT kind, payload FROM notifications WHERE case_id = $1 ORDER BY id", handle.id)
    kinds = [n["kind"] for n in notes]
    info = [k for k in kinds if k.startswith("info_")]
    assert info == ["info_requested", "info_reminder", "info_unanswered"]
    unanswered = json.loads(next(n["payload"] for n in notes if n["kind"] == "info_unanswered"))
    assert unanswered["recipients"] == [requester, reviewer]
    assert "the case went back to the gate" in unanswered["notification"]["message"]
    assert kinds.index("info_unanswered") < kinds.index("timeout"), "the gate reopened after the question closed"


@pytest.mark.parametrize("kind", KINDS)
async def test_silent_gate_reminds_escalates_through_every_level_and_times_out(time_skipping_env, world_pool, kind):
    policy = POLICIES[kind]
    levels = policy.gate.levels
    async with new_worker(time_skipping_env.client, world_pool) as worker:
        handle = await start_case(time_skipping_env.client, example(kind, human=True), worker.task_queue)
        start_level = (await wait_until_waiting(handle)).gate.level
        result = await _result(handle)  # the time-skipping server fast-forwards through every timer
        await save_history(handle, kind, "timeout")
    assert result.outcome == policy.gate.timeout_outcome
    assert result.decided_by == f"timeout:{policy.gate.name}"
    assert result.decided_via == "timeout"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [e["to_group"] for e in trace["escalations"]] == [lvl.group for lvl in levels[start_level + 1 :]]
    assert [r["group"] for r in trace["reminders"]] == [lvl.group for lvl in levels[start_level:]]
    notes = await world_pool.fetch(
        "SELECT kind, reviewer_group FROM notifications WHERE case_id = $1 AND kind <> 'decided' ORDER BY id", handle.id
    )
    kinds = [n["kind"] for n in notes]
    assert kinds.count("reminder") == len(levels) - start_level
    assert kinds.count("escalation") == len(levels) - start_level - 1
    assert kinds[-1] == "timeout"
