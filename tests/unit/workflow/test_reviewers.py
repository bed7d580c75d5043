"""Reviewers decide at the gate: approve through the update, reject through the signal, request
information and decide the next round; who may decide depends on the level the gate opened at."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from demo.examples import FIRST_REVIEWER, example
from gates.cases import CaseKind
from gates.gate import Decision
from gates.info_request import InfoAnswer
from tests.case_helpers import case_view, wait_until_waiting
from tests.helpers import assert_eventually
from tests.unit.factories import policy
from tests.unit.workflow.harness import finished

KINDS = list(CaseKind)
# The gathering activities each kind's human example calls in a round (gates/kinds.py).
SOURCES_OF_HUMAN_EXAMPLE = {
    CaseKind.RENEWAL: ["gather_crm", "gather_chat"],
    CaseKind.PROCUREMENT: ["gather_vendor_master", "gather_finance", "gather_procurement"],
    CaseKind.ACCESS: ["gather_iam"],
}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_reviewer_approves_through_the_update_and_the_trace_names_them(world, start, kind):
    reviewer = FIRST_REVIEWER[kind]
    handle = await start(example(kind, human=True))
    view = await wait_until_waiting(handle)
    assert reviewer in view.gate.may_decide
    receipt = await handle.execute_update(
        "submit_decision", Decision(outcome="approve", reviewer=reviewer, reason="evidence supports it")
    )
    result = await finished(handle)
    assert receipt["accepted"] is True
    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", reviewer, "update")
    trace = world.trace(handle)
    assert (trace.decision_trace, trace.human_gate) == (kind.value, policy(kind).gate.name)
    assert (trace.outcome, trace.decided_by, trace.reason) == ("approve", reviewer, "evidence supports it")
    assert trace.decided_level == view.gate.level
    assert trace.inputs and trace.brief.startswith("### ")
    assert world.notifications == [], "decided before any reminder was due"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_reviewer_rejects_through_the_decide_signal(world, start, kind):
    reviewer = FIRST_REVIEWER[kind]
    handle = await start(example(kind, human=True))
    await wait_until_waiting(handle)
    await handle.signal("decide", {"outcome": "reject", "reviewer": reviewer, "reason": "not this quarter"})
    result = await finished(handle)
    assert (result.outcome, result.decided_by, result.decided_via) == ("reject", reviewer, "signal")
    trace = world.trace(handle)
    assert (trace.outcome, trace.decided_by, trace.reason) == ("reject", reviewer, "not this quarter")


@pytest.mark.parametrize("kind", KINDS)
async def test_request_info_gathers_and_summarizes_again_with_the_question_then_returns_to_the_gate(world, start, kind):
    reviewer = FIRST_REVIEWER[kind]
    question = "What did the customer sign last year?"
    handle = await start(example(kind, human=True))
    await wait_until_waiting(handle)
    await handle.execute_update("submit_decision", Decision(outcome="request_info", reviewer=reviewer, reason=question))
    requester = example(kind, human=True).requester  # asked by default; the case waits for the answer
    await handle.execute_update("answer_info", InfoAnswer(answerer=requester, text="The 2025 MSA."))
    view = await wait_until_waiting(handle, round_no=2)
    assert [q.question for q in view.questions] == [question]
    assert question in (view.brief or ""), "the new brief repeats the question"
    assert f"`{requester}` answered: `The 2025 MSA.`" in (view.brief or ""), "and the answer, as the requester's words"
    assert [r.outcome for r in view.rounds] == ["request_info"]
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer=reviewer, reason="answered"))
    assert (await finished(handle)).outcome == "approve"
    for source in SOURCES_OF_HUMAN_EXAMPLE[kind]:
        assert world.calls.count(source) == 2, f"{source} was asked again for the second round"
    trace = world.trace(handle)
    assert [r.outcome for r in trace.rounds] == ["request_info"]
    assert [(q.round, q.reviewer, q.question) for q in trace.questions] == [(1, reviewer, question)]


async def test_without_precedent_the_renewal_opens_at_directors_and_a_reviewers_signal_is_kept_as_a_rejected_attempt(
    world, start
):
    world.precedents = []  # no approved service-impact precedent: DISC-3 needs a Finance director
    handle = await start(example(CaseKind.RENEWAL, human=True))
    view = await wait_until_waiting(handle)
    assert (view.gate.level, view.gate.group) == (1, "finance_directors")
    assert "fin_rev_ana" not in view.gate.may_decide
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
    assert "fin_rev_ana may not decide at level 2" in str(refused.value.cause)
    await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "ok by me"})
    await handle.signal("decide", {"outcome": "approve", "reviewer": "ae_sam", "reason": "my own deal"})

    async def both_kept() -> None:
        assert len((await case_view(handle)).rejected_attempts) == 2

    await assert_eventually(both_kept, timeout=30)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="ok"))
    assert (await finished(handle)).decided_by == "fin_dir_omar"
    trace = world.trace(handle)
    assert trace.decided_level == 1
    errors = [a.error for a in trace.rejected_attempts]
    assert "may not decide at level 2" in errors[0]
    assert errors[1] == "ae_sam requested this case and may not decide it"


async def test_a_configured_agent_advises_beside_the_brief_and_the_trace_keeps_its_advice(world, start):
    world.agent_advice = {"recommendation": "approve", "rationale": "matches the service-impact precedents"}
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await wait_until_waiting(handle)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
    await finished(handle)
    assert world.calls.count("advise_case") == 1
    trace = world.trace(handle)
    assert trace.agent.used is True and trace.agent.advice == world.agent_advice
    assert trace.brief.startswith("### "), "the deterministic brief stays"
