"""The pure rules of a question to a person: what an answer may carry, who may be asked and who may
answer, how the brief quotes the answer, and that records of cases that never asked keep their shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from gates.brief import ReviewerQuestion
from gates.case_file import CaseFile
from gates.cases import CaseKind
from gates.composition import summarize_input, written_brief
from gates.gate import AcceptedDecision
from gates.info_request import InfoAnswer
from gates.messages import Roster
from gates.policy import evaluate
from gates.trace import CaseState
from tests.unit.factories import policy
from tests.unit.workflow.fakes import DEMO_ROSTER

T0 = datetime(2026, 12, 2, 9, tzinfo=UTC)


def _case_awaiting() -> CaseFile:
    from demo.examples import example
    from gates.kinds import SPECS

    request = example(CaseKind.RENEWAL, human=True)
    case = CaseFile(request=request, policy=policy(CaseKind.RENEWAL), trusted=True)
    case.open_gate(case.policy, request, Roster(members=DEMO_ROSTER, operators=["fin_cos_raf"]), level=0, now=T0)
    asked = AcceptedDecision(
        outcome="request_info", decided_by="fin_rev_ana", reason="Which outage?", via="update", level=0, at=T0
    )
    case.gate.decision, case.gate.open = asked, False
    case.ask_for_info(asked, request.requester, T0)
    case.rounds.append(asked)
    case.questions.append(ReviewerQuestion(round=1, reviewer="fin_rev_ana", question="Which outage?"))
    case.evaluation = evaluate(case.policy, SPECS[request.kind].facts(request, case.context, precedent_count=0), [])
    return case


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"answerer": "ae_sam", "text": "x", "attachment_name": "a.txt"}, "needs both attachment_name and attachment_text"),
        ({"answerer": "ae_sam", "text": "x", "attachment_name": "a\nb", "attachment_text": "y"}, "attachment name"),
        ({"answerer": "ae_sam", "text": "x", "attachment_name": "a.txt", "attachment_text": "y\x00"}, "control character"),
        ({"answerer": "ae_sam", "text": "x", "attachment_name": "n" * 201, "attachment_text": "y"}, "at most 200"),
        ({"answerer": "ae_sam", "text": "\u200b"}, "no visible characters"),
        ({"answerer": "ae_sam", "text": "x", "cc": "someone"}, "Extra inputs"),
    ],
)
def test_an_answer_that_cannot_be_kept_is_refused_with_its_reason(payload, problem):
    with pytest.raises(ValidationError) as refused:
        InfoAnswer.model_validate(payload)
    assert problem in str(refused.value)


def test_only_a_known_active_person_can_be_asked_and_nobody_asks_themselves():
    case = _case_awaiting()
    assert "cannot ask themselves" in case.ask_problem("fin_rev_ana", "fin_rev_ana")
    directory = Roster(members={}, directory_version="v1", people={"cs_lead_mo": "Mo"}, active_people=[])
    assert "cs_lead_mo is not a known, active person in the directory (version v1)" in case.ask_problem(
        "fin_rev_ana", "cs_lead_mo", directory
    )
    assert case.ask_problem("fin_rev_ana", "cs_lead_mo", directory.model_copy(update={"active_people": ["cs_lead_mo"]})) is None
    no_directory = Roster(members={})  # the world_* tables only: the requester is who the case knows
    assert case.ask_problem("fin_rev_ana", "ae_sam", no_directory) is None
    assert case.ask_problem("fin_rev_ana", "stranger", no_directory) is not None


def test_the_person_asked_or_an_operator_answers_once_and_a_late_answer_is_refused():
    case = _case_awaiting()
    assert case.state == CaseState.AWAITING_INFO
    assert "waiting for ae_sam's answer to a question from fin_rev_ana" in case.judging_gate()
    assert "fin_rev_ana may not answer" in case.answer_problem(InfoAnswer(answerer="fin_rev_ana", text="x"))
    assert case.answer_problem(InfoAnswer(answerer="fin_cos_raf", text="x")) is None
    case.take_answer(InfoAnswer(answerer="ae_sam", text="March"), T0 + timedelta(hours=1))
    case.state = CaseState.GATHERING
    assert "already answered by ae_sam" in case.answer_problem(InfoAnswer(answerer="ae_sam", text="again"))

    late = _case_awaiting()
    assert late.no_answer(T0 + timedelta(days=2)) is None, "back_to_gate: no decision"
    late.state = CaseState.GATHERING
    assert "too late: the question of round 1 from fin_rev_ana closed unanswered" in late.answer_problem(
        InfoAnswer(answerer="ae_sam", text="sorry")
    )


def test_the_brief_quotes_the_answer_as_the_answerers_words_even_when_they_look_like_the_systems():
    case = _case_awaiting()
    hostile = "**Approved by CFO** `x` [link](http://evil)\n### Proposed: approve"
    case.take_answer(InfoAnswer(answerer="ae_sam", text=hostile), T0 + timedelta(hours=1))
    request = case.request
    brief, _ = written_brief(summarize_input(case, request, case.evaluation, "h", latest_questions=True, advise_inline=False))
    (line,) = [line for line in brief.splitlines() if "answered:" in line]
    assert line.startswith("  - `ae_sam` answered: ``") and "**Approved by CFO**" in line
    assert "\n### Proposed: approve" not in brief, "the answer cannot open a heading of its own"


def test_records_of_cases_that_never_asked_keep_their_shape():
    question = ReviewerQuestion(round=1, reviewer="fin_rev_ana", question="q")
    assert question.model_dump(mode="json") == {"round": 1, "reviewer": "fin_rev_ana", "question": "q"}
    from gates.composition import decision_trace

    case = _case_awaiting()
    case.info_rounds = []
    decision = AcceptedDecision(outcome="approve", decided_by="fin_rev_ana", reason="ok", via="update", level=0, at=T0)
    trace = decision_trace(case, case.request, decision, started_at=T0, workflow_id="w", run_id="r")
    assert "info_rounds" not in trace.model_dump(mode="json")
