"""What a reviewer, an operator and an auditor see of a case, composed from its state (gates.composition):
the case view, the UI's Current Details, the inbox's search attributes, the decision trace, the late
additions to it, and the state a waiting case carries to its next run."""

from __future__ import annotations

from datetime import timedelta

from gates import search_attributes as sa
from gates.bounds import MAX_CASE_PAYLOAD_BYTES
from gates.brief import Proposal, ReviewerQuestion
from gates.case_file import AtGate, CaseFile
from gates.cases import CaseKind
from gates.composition import (
    carry_over,
    case_attributes,
    case_details,
    case_view,
    decision_trace,
    late_additions,
    opening_attributes,
    refused_attributes,
    refused_details,
    summarize_input,
)
from gates.gate import AcceptedDecision, Decision, OperatorRecord, RejectedAttempt
from gates.messages import Roster
from gates.policy import evaluate
from gates.trace import AgentNote, CaseState, CaseSummary
from tests.unit.factories import CRM_FULL, T0, context, policy, precedent, renewal, renewal_facts

ROSTER = Roster(
    members={
        "finance_reviewers": ["fin_rev_ana", "sam.sales"],
        "finance_directors": ["fin_dir_omar"],
        "cfo_office": ["cfo_jane"],
    }
)
BRIEF = "**Ask**: 28% renewal discount for `acme_enterprise` (`fy26`)"


def _waiting_case() -> tuple[CaseFile, AtGate]:
    """A renewal waiting at the Finance gate's first level, with one early and one gate-refused attempt."""
    request, finance = renewal(), policy(CaseKind.RENEWAL)
    case = CaseFile(request=request, policy=finance, context=context(CRM_FULL), tags=["service_impact"])
    case.precedents = [precedent(1)]
    case.headline = "discount exception approved after a service-impact precedent: 1 similar case"
    case.evaluation = evaluate(finance, renewal_facts(request, precedents=1), ["approve"])
    case.summary = CaseSummary(
        brief=BRIEF, proposal=Proposal(outcome="approve", rationale="precedent supports it"), agent=AgentNote(used=False)
    )
    case.keep_attempt(
        RejectedAttempt.of(at=T0, via="signal", reviewer="early_bird", payload={}, error="case is not waiting for a decision")
    )
    gate = case.open_gate(finance, request, ROSTER, level=0, now=T0 + timedelta(minutes=1))
    gate.submit_raw({"outcome": "approve", "reviewer": "sam.sales", "reason": "mine"}, "signal", T0 + timedelta(minutes=5))
    return case, AtGate(request, T0, finance, case.evaluation, case.summary, gate)


def _decided(case: CaseFile, at_gate: AtGate) -> AcceptedDecision:
    approval = Decision(outcome="approve", reviewer="fin_rev_ana", reason="outage credit")
    decision = at_gate.gate.accept(approval, "update", T0 + timedelta(hours=2))
    case.decision, case.state = decision, CaseState.RECORDING
    return decision


# --- the reviewer's view -----------------------------------------------------------------------


def test_a_waiting_case_shows_its_gate_who_may_decide_and_every_refused_attempt_oldest_first():
    case, _ = _waiting_case()
    view = case_view(case, renewal(), case_id="renewal_discount_exception:acme_enterprise/fy26")
    assert view.state == CaseState.WAITING and view.policy == "discount_policy_v3_2"
    assert view.ask == "28% renewal discount for acme_enterprise (fy26)"
    assert view.brief == BRIEF and view.proposal is not None and view.proposal.outcome == "approve"
    assert view.gate is not None
    assert (view.gate.level_title, view.gate.group) == ("Finance reviewer", "finance_reviewers")
    assert view.gate.may_decide == ["fin_rev_ana", "fin_dir_omar", "cfo_jane"]  # not the requester
    assert view.gate.remind_at == T0 + timedelta(minutes=1, hours=4)
    assert view.gate.deadline_action == "escalates to Finance director"
    assert [a.reviewer for a in view.rejected_attempts] == ["early_bird", "sam.sales"]
    assert "requested this case and may not decide it" in view.rejected_attempts[1].error


def test_a_case_still_gathering_shows_no_gate_no_brief_and_no_policy_yet():
    view = case_view(CaseFile(request=renewal()), renewal(), case_id="c")
    assert (view.state, view.policy, view.brief, view.gate, view.findings) == (CaseState.GATHERING, "", None, None, [])


# --- the UI's Current Details ------------------------------------------------------------------


def test_the_current_details_of_a_waiting_case_say_who_may_decide_how_and_by_when_then_the_brief():
    case, _ = _waiting_case()
    details = case_details(case)
    assert details.startswith("## Waiting\n")
    assert "- **Finance gate**, level 1 of 3: Finance reviewer (`finance_reviewers`)" in details
    assert "- **May decide now**: fin_rev_ana, fin_dir_omar, cfo_jane" in details
    assert "- **Reminder** 2026-09-01 13:01 UTC; **escalates** 2026-09-02 09:01 UTC" in details
    assert "More Actions → Send a Signal → `decide`" in details
    assert "Last rejected attempt: reviewer `sam.sales` (as the sender wrote it)" in details
    assert details.endswith(BRIEF)


def test_the_current_details_of_a_decided_case_name_the_decision_as_the_reviewers_words_and_no_gate():
    case, at_gate = _waiting_case()
    _decided(case, at_gate)
    details = case_details(case)
    assert details.startswith("## Recording\n\n**approve** by fin_rev_ana (update): `outage credit` (their words)")
    assert "May decide now" not in details


def test_a_refused_start_shows_its_reason_as_quoted_text_not_as_markdown():
    details = refused_details("## I am a heading\n[click](https://evil.example)")
    assert details.startswith("## Refused\n\nThis start is not a case:\n\n```")
    assert "\n## I am a heading" in details and details.rstrip().endswith("```")


# --- the inbox's search attributes -------------------------------------------------------------


def _values(updates) -> dict[str, object]:
    return {u.key.name: u.value for u in updates}


def test_a_waiting_case_is_in_the_inbox_of_every_eligible_group_with_its_next_deadline():
    case, _ = _waiting_case()
    values = _values(case_attributes(case))
    assert values[sa.CASE_STATE.name] == "waiting" and values[sa.GATE.name] == "finance"
    assert values[sa.ELIGIBLE_GROUPS.name] == ["finance_reviewers", "finance_directors", "cfo_office"]
    assert values[sa.NEXT_DEADLINE.name] == T0 + timedelta(minutes=1, hours=24)
    assert sa.OUTCOME.name not in values


def test_a_decided_case_leaves_every_inbox_and_shows_its_outcome():
    case, at_gate = _waiting_case()
    _decided(case, at_gate)
    values = _values(case_attributes(case))
    assert values[sa.ELIGIBLE_GROUPS.name] is None and values[sa.NEXT_DEADLINE.name] is None
    assert values[sa.OUTCOME.name] == "approve"


def test_an_opening_case_owns_every_attribute_and_a_refused_start_keeps_none_but_its_state():
    opened = _values(opening_attributes(renewal(), policy(CaseKind.RENEWAL), own_all=True))
    assert opened[sa.BUSINESS_KEY.name] == "acme_enterprise/fy26" and opened[sa.POLICY.name] == "discount_policy_v3_2"
    assert set(opened) == {key.name for key in sa.HARDENED_SEARCH_ATTRIBUTES}
    trusted = _values(opening_attributes(renewal(), policy(CaseKind.RENEWAL), own_all=True, trusted=True))
    assert set(trusted) == {key.name for key in sa.ALL_SEARCH_ATTRIBUTES} and trusted[sa.MAY_NOT_DECIDE.name] is None
    assert opened[sa.OUTCOME.name] is None and opened[sa.REVIEWER_GROUP.name] is None
    assert sa.OUTCOME.name not in _values(opening_attributes(renewal(), policy(CaseKind.RENEWAL), own_all=False))
    refused = _values(refused_attributes())
    assert refused[sa.CASE_STATE.name] == "refused"
    assert [name for name, value in refused.items() if value is not None] == [sa.CASE_STATE.name]


# --- the brief's input ---------------------------------------------------------------------------


def test_the_brief_repeats_the_latest_questions_and_counts_the_others():
    case, _ = _waiting_case()
    case.questions = [ReviewerQuestion(round=n, reviewer="fin_rev_ana", question=f"q{n}") for n in range(1, 6)]
    assert case.evaluation is not None
    latest = summarize_input(case, renewal(), case.evaluation, "h", latest_questions=True, advise_inline=False)
    assert [q.question for q in latest.questions] == ["q3", "q4", "q5"] and latest.earlier_questions == 2
    older = summarize_input(case, renewal(), case.evaluation, "h", latest_questions=False, advise_inline=True)
    assert len(older.questions) == 5 and older.earlier_questions == 0
    assert latest.ask == "28% renewal discount for `acme_enterprise` (`fy26`)"


# --- the decision trace -------------------------------------------------------------------------


def test_the_trace_of_a_reviewed_case_says_who_decided_at_which_level_on_what_evidence_and_policy():
    case, at_gate = _waiting_case()
    decision = _decided(case, at_gate)
    case.operator_actions.append(OperatorRecord(action="note", operator="ops", reason="customer called", at=T0, result="noted"))
    trace = decision_trace(case, renewal(), decision, started_at=T0, workflow_id="wf", run_id="run-1")
    assert (trace.outcome, trace.decided_by, trace.decided_via, trace.decided_level) == ("approve", "fin_rev_ana", "update", 0)
    assert trace.entities == {"account": "acme_enterprise", "renewal": "fy26", "policy": "discount_policy_v3_2"}
    assert trace.human_gate == "finance" and "crm: service_impact" in trace.inputs
    assert trace.precedents_cited == [precedent(1).case_id]
    assert (trace.features.amount_band, trace.features.tags) == ("discount_20_30", ["service_impact"])
    assert [a.reviewer for a in trace.rejected_attempts] == ["early_bird", "sam.sales"]
    assert [a.reason for a in trace.operator_actions] == ["customer called"]
    assert (trace.opened_at, trace.gate_opened_at, trace.decided_at) == (T0, T0 + timedelta(minutes=1), decision.at)


def test_a_case_cancelled_before_its_policy_was_resolved_records_what_there_is():
    case = CaseFile(request=renewal())
    case.cancel_requested = OperatorRecord(action="cancel", operator="ops_lee", reason="duplicate request", at=T0)
    decision = case.cancellation(T0 + timedelta(minutes=1))
    trace = decision_trace(case, renewal(), decision, started_at=T0, workflow_id="wf", run_id="run-1")
    assert (trace.outcome, trace.decided_by, trace.reason) == ("cancelled", "operator:ops_lee", "duplicate request")
    assert trace.entities["policy"] == "unresolved" and trace.features.policy == "unresolved"
    assert (trace.human_gate, trace.gate_opened_at, trace.decided_level) == (None, None, None)
    assert trace.proposal == Proposal(outcome="none", rationale="no brief was written") and trace.brief == ""


def test_late_additions_carry_the_full_lists_and_still_fit_when_a_flood_arrived():
    case, _ = _waiting_case()
    late = late_additions(case, "wf#run-1")
    assert [a.reviewer for a in late.rejected_attempts] == ["early_bird", "sam.sales"]
    for n in range(60):
        case.operator_actions.append(OperatorRecord(action="note", operator="ops", reason="x" * 4000, at=T0, result=str(n)))
    flooded = late_additions(case, "wf#run-1")
    assert len(flooded.model_dump_json()) < MAX_CASE_PAYLOAD_BYTES // 2 + 1024
    assert flooded.decision_key == "wf#run-1" and flooded.operator_actions


# --- continue-as-new -----------------------------------------------------------------------------


def test_a_waiting_case_carried_to_its_next_run_resumes_at_the_same_gate_with_the_same_record():
    case, at_gate = _waiting_case()
    case.runs_before = 2
    carried = carry_over(case, at_gate, workflow_id="wf", first_execution_run_id="run-1")
    assert (carried.runs, carried.kind, carried.started_at) == (3, CaseKind.RENEWAL, T0)
    restored, resumed = CaseFile.restored(carried.model_validate_json(carried.model_dump_json()))
    assert restored.state == CaseState.WAITING and restored.request == renewal()
    assert resumed.gate.may_decide() == at_gate.gate.may_decide() and resumed.started_at == T0
    assert restored.attempts_received() == case.attempts_received() == 2
    assert [a.reviewer for a in restored.attempts()] == ["early_bird", "sam.sales"]
