"""The case's state and the rules that say whether a submission reaches it now (gates.case_file):
the same rules serve the update validators, the handlers after an await, and the signal path."""

from __future__ import annotations

from datetime import timedelta

from gates.bounds import MAX_OPERATOR_ACTIONS
from gates.case_file import CaseFile
from gates.cases import CaseKind
from gates.gate import Decision, GateState, OperatorAction, OperatorRecord
from gates.messages import Roster
from gates.trace import CaseState
from tests.unit.factories import T0, policy, renewal

ROSTER = Roster(members={"finance_reviewers": ["fin_rev_ana"], "finance_directors": ["fin_dir_omar"], "cfo_office": ["cfo_jane"]})
REASSIGN = OperatorAction(action="reassign", operator="op", reason="team out", group="finance_directors")


def _waiting() -> tuple[CaseFile, GateState]:
    case = CaseFile(request=renewal(), policy=policy(CaseKind.RENEWAL))
    return case, case.open_gate(policy(CaseKind.RENEWAL), renewal(), ROSTER, level=0, now=T0)


def test_before_the_gate_opens_a_decision_is_refused_with_the_case_state():
    assert CaseFile().judging_gate() == "case is starting; send it again in a moment"  # before the run's first step
    gathering = CaseFile(request=renewal())
    assert gathering.judging_gate() == "case is not waiting for a decision (state: gathering)"
    assert CaseFile(state=CaseState.REFUSED).judging_gate() == "this start was refused and is not a case"


def test_once_decided_the_gate_itself_answers_already_decided():
    case, gate = _waiting()
    case.decision = gate.accept(Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"), "update", T0)
    case.state = CaseState.RECORDING
    judge = case.judging_gate()
    assert judge is gate
    assert isinstance(judge, GateState)
    problem = judge.problem_with(Decision(outcome="reject", reviewer="fin_dir_omar", reason="no"))
    assert problem is not None and problem.startswith("case already decided: approve by fin_rev_ana")


def test_a_reassign_checked_again_after_its_read_is_refused_once_the_gate_was_decided_or_cancelled():
    case, gate = _waiting()
    assert case.gate_for(REASSIGN, bounded=True) is gate
    gate.close_by_operator("cancelled", "ops_lee", "duplicate", T0 + timedelta(minutes=1))
    refused = case.gate_for(REASSIGN, bounded=True)
    assert refused == "the case was decided meanwhile (cancelled by operator:ops_lee); nothing was changed"


def test_a_reassign_is_refused_while_recording_and_when_the_case_keeps_its_most_operator_actions():
    case, _ = _waiting()
    case.operator_actions = [OperatorRecord(action="note", operator="op", reason="r", at=T0)] * MAX_OPERATOR_ACTIONS
    assert "only cancel is still possible" in (case.operator_problem(REASSIGN, bounded=True) or "")
    assert case.operator_problem(REASSIGN, bounded=False) is None  # cases from before the bound keep taking them
    case.state = CaseState.RECORDING
    assert case.operator_problem(REASSIGN, bounded=False) == "case is already recording"
    assert case.operator_problem(OperatorAction(action="note", operator="op", reason="r"), bounded=False) is None


def test_back_from_request_info_the_gate_reopens_at_no_lower_level_with_fresh_deadlines():
    case, gate = _waiting()
    gate.escalate(T0 + timedelta(hours=24), reason="no decision")
    question = Decision(outcome="request_info", reviewer="fin_dir_omar", reason="which outage?")
    case.rounds.append(gate.accept(question, "update", T0))
    later = T0 + timedelta(days=2)
    case.reopen_gate(gate, level=0, now=later)
    assert (gate.open, gate.decision, gate.level, gate.round, gate.level_started_at) == (True, None, 1, 2, later)
    assert case.state == CaseState.WAITING
