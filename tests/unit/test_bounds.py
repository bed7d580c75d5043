"""Every channel at its bound at once still fits what the workflow writes under the payload limit,
and the pure pieces that judge input (the guard, the gate, the fitter) never raise on any input.

Property-based (Hypothesis): generated payloads and text, of any shape and any Unicode."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

from gates import bounds
from gates.brief import Proposal, ReviewerQuestion
from gates.cases import MAX_TEXT_CHARS, CaseKind
from gates.evidence import ContextBundle, EvidenceItem
from gates.fit import fit_json, json_size
from gates.gate import (
    AcceptedDecision,
    Decision,
    GateState,
    OperatorRecord,
    RejectedAttempt,
    keep_attempt,
)
from gates.policy import evaluate
from gates.precedent import PrecedentFeatures
from gates.text import person_text_problem
from gates.trace import (
    AgentNote,
    CaseCarryOver,
    CaseSummary,
    DecisionTrace,
    fitted_carry_over,
    fitted_trace,
)
from tests.unit.factories import T0, policy, precedent, renewal, renewal_facts
from tests.unit.untrusted import TEXT
from workflows.guard import InputProblem, single_json

WORDS = "w" * MAX_TEXT_CHARS


def _gate_full_of_everything() -> GateState:
    gate = GateState(
        definition=policy(CaseKind.RENEWAL).gate,
        requester="sam.sales",
        roster={"finance_reviewers": ["fin_rev_ana"]},
        level=0,
        opened_at=T0,
        level_started_at=T0,
    )
    for n in range(bounds.MAX_KEPT_ATTEMPTS * 3):
        junk = {"outcome": "approve", "reviewer": "x" * 80, "reason": WORDS, "n": n}
        gate.reject(junk, "signal", T0 + timedelta(seconds=n), "invalid decision: " + WORDS, "x" * 80)
    return gate


def _worst_case() -> dict:
    request = renewal(justification=WORDS)
    evaluation = evaluate(policy(CaseKind.RENEWAL), renewal_facts(request), [])
    rounds = [
        AcceptedDecision(outcome="request_info", decided_by="fin_rev_ana", reason=WORDS, via="update", level=0, at=T0)
        for _ in range(bounds.MAX_REQUEST_INFO_ROUNDS)
    ]
    actions = [
        OperatorRecord(action="note", operator="ops_oncall", reason=WORDS, at=T0, result="noted")
        for _ in range(bounds.MAX_OPERATOR_ACTIONS + 1)
    ]
    evidence = ContextBundle(
        items=[EvidenceItem(source="crm", item=f"item_{n}", value="v" * 8000, ref="crm:acme") for n in range(12)]
    )
    return {
        "request": request,
        "evaluation": evaluation,
        "rounds": rounds,
        "questions": [ReviewerQuestion(round=n, reviewer="fin_rev_ana", question=WORDS) for n in range(len(rounds))],
        "actions": actions,
        "context": evidence,
        "precedents": [precedent(n).model_copy(update={"reason": "r" * 500}) for n in range(10)],
        "summary": CaseSummary(
            brief="b" * 60_000, proposal=Proposal(outcome="none", rationale=WORDS), agent=AgentNote(used=False)
        ),
        "gate": _gate_full_of_everything(),
    }


def test_the_carried_over_state_fits_under_the_payload_limit_with_every_channel_at_its_bound():
    w = _worst_case()
    state = CaseCarryOver(
        workflow_id=w["request"].case_id(), first_execution_run_id="run-1", runs=1, kind=CaseKind.RENEWAL,
        request=w["request"].model_dump(mode="json"), started_at=T0, policy=policy(CaseKind.RENEWAL),
        context=w["context"], evaluation=w["evaluation"], precedents=w["precedents"], headline="h", summary=w["summary"],
        tags=[], gate=w["gate"], rounds=w["rounds"], questions=w["questions"], early_attempts=w["gate"].rejected_attempts,
        attempts_received=w["gate"].attempts_received, operator_actions=w["actions"],
    )
    assert json_size(state.model_dump(mode="json")) > bounds.MAX_CASE_PAYLOAD_BYTES, "the worst case must need fitting"
    fitted = fitted_carry_over(state)
    assert json_size(fitted.model_dump(mode="json")) <= bounds.MAX_CASE_PAYLOAD_BYTES
    assert fitted.request == state.request and fitted.policy == state.policy and fitted.evaluation == state.evaluation
    assert fitted.trimmed, "what was cut is said"


def test_the_trace_fits_under_the_payload_limit_with_every_channel_at_its_bound_and_keeps_who_decided():
    w = _worst_case()
    gate = w["gate"]
    trace = DecisionTrace(
        decision_trace="renewal_discount_exception", entities={"account": "acme_enterprise"}, inputs=["crm: tier"],
        human_gate="finance", case_id="c", business_key="acme_enterprise/fy26", workflow_id="c", run_id="r",
        request=w["request"].model_dump(mode="json"), brief=w["summary"].brief, findings=w["evaluation"].findings,
        reason_codes=[], proposal=w["summary"].proposal, agent=AgentNote(used=False), precedent_headline="h",
        precedents_cited=[], features=PrecedentFeatures(kind=CaseKind.RENEWAL, policy="p", amount_band="b"),
        outcome="approve", decided_by="fin_rev_ana", decided_via="update", reason=WORDS, decided_level=0,
        rounds=w["rounds"], questions=w["questions"], reminders=[], escalations=[],
        rejected_attempts=gate.rejected_attempts, operator_actions=w["actions"], opened_at=T0, gate_opened_at=T0, decided_at=T0,
    )
    fitted = fitted_trace(trace)
    assert json_size(fitted.model_dump(mode="json")) <= bounds.MAX_CASE_PAYLOAD_BYTES
    assert (fitted.outcome, fitted.decided_by, fitted.decided_via) == ("approve", "fin_rev_ana", "update")
    assert len(fitted.operator_actions) == bounds.MAX_OPERATOR_ACTIONS + 1, "no operator action is dropped when texts can be cut"
    assert fitted.trimmed


def test_a_gate_keeps_a_bounded_number_of_bounded_attempts_and_counts_them_all():
    gate = _gate_full_of_everything()
    assert len(gate.rejected_attempts) == bounds.MAX_KEPT_ATTEMPTS
    assert gate.attempts_received == bounds.MAX_KEPT_ATTEMPTS * 3
    for attempt in gate.rejected_attempts:
        assert len(json.dumps(attempt.payload)) <= bounds.MAX_KEPT_PAYLOAD_CHARS + 100
        assert len(attempt.error) <= bounds.MAX_KEPT_ERROR_CHARS


# --- properties --------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(TEXT, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()), max_size=3),
    st.sampled_from([b"json/plain", b"binary/null", b"binary/plain", b""]),
)
def test_the_guard_turns_any_payloads_into_one_value_or_a_one_line_problem(datas, encoding):
    payloads = [RawValue(Payload(metadata={"encoding": encoding}, data=d)) for d in datas]
    try:
        single_json(payloads, what="the decide signal")
    except InputProblem as problem:
        assert "\n" not in str(problem) and str(problem).startswith("the decide signal")


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_the_gate_takes_any_submission_without_raising_and_accepts_only_valid_ones(value):
    gate = GateState(
        definition=policy(CaseKind.RENEWAL).gate, requester="sam.sales",
        roster={"finance_reviewers": ["fin_rev_ana"]}, level=0, opened_at=T0, level_started_at=T0,
    )
    accepted = gate.submit_raw(value, "signal", T0)
    if accepted is None:
        [attempt] = gate.rejected_attempts
        json.dumps(attempt.model_dump(mode="json"))  # storable and serializable, whatever was sent
        assert "\x00" not in json.dumps(attempt.model_dump(mode="json"), ensure_ascii=False)
    else:
        decision = Decision.model_validate(value)
        assert person_text_problem(decision.reason) is None and decision.reviewer == "fin_rev_ana"


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_a_reason_is_accepted_only_when_it_is_visible_storable_text(reason):
    try:
        decision = Decision(outcome="approve", reviewer="fin_rev_ana", reason=reason)
    except ValueError:
        return
    assert person_text_problem(decision.reason) is None
    assert "\x00" not in decision.reason and 0 < len(decision.reason) <= MAX_TEXT_CHARS


@settings(max_examples=200, deadline=None)
@given(JSON, st.integers(min_value=200, max_value=20_000))
def test_fitting_is_deterministic_keeps_protected_parts_and_meets_the_budget_when_it_can(value, budget):
    document = {"keep": "k" * 300, "body": value, "rejected_attempts": [value] * 5}
    first, notes = fit_json(document, budget, protect=("keep",), droppable=("rejected_attempts",))
    again, _ = fit_json(document, budget, protect=("keep",), droppable=("rejected_attempts",))
    assert first == again
    assert first["keep"] == document["keep"]
    if json_size(first) > budget:
        assert notes and "nothing left to cut" in notes[-1]


def test_keep_attempt_keeps_the_first_and_the_latest():
    attempts: list[RejectedAttempt] = []
    for n in range(bounds.MAX_KEPT_ATTEMPTS + 5):
        keep_attempt(attempts, RejectedAttempt.of(at=T0, via="signal", reviewer=None, payload=n, error="bad"))
    assert [a.payload for a in attempts[:3]] == [0, 1, 2] and attempts[-1].payload == bounds.MAX_KEPT_ATTEMPTS + 4


def test_fitting_ends_when_the_only_texts_left_are_as_short_as_a_cut_leaves_them():
    """A text just over the kept minimum comes back no shorter once the cut's marker is added:
    fitting used to cut it again for ever (found by the property test above)."""
    document = {"a": "x" * 230, "b": {"c": "y" * 239}, "n": list(range(2000))}
    fitted, notes = fit_json(document, 1000)
    assert fitted["a"] == document["a"] and fitted["b"] == document["b"]
    assert notes == [f"still {json_size(document):,} bytes, over the 1,000 budget: nothing left to cut"]
