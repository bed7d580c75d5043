"""The review gate: who may decide, what happens to bad submissions, escalation and timeout."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from gates.cases import CaseKind
from gates.gate import Decision, DecisionOutcome, GateState, RejectedAttempt
from gates.trace import gate_view
from tests.unit.factories import T0, policy

FINANCE = policy(CaseKind.RENEWAL).gate
ROSTER = {
    "finance_reviewers": ["rita.reviewer", "sam.sales", "ravi.reviewer"],
    "finance_directors": ["dora.director", "rita.reviewer"],
    "cfo_office": ["carl.cfo"],
}


def _gate(level: int = 0, requester: str = "sam.sales") -> GateState:
    return GateState(
        definition=FINANCE, requester=requester, roster=ROSTER, level=level, opened_at=T0, level_started_at=T0
    )


def _decision(reviewer: str, outcome: str = "approve", reason: str = "precedent supports it") -> dict:
    return {"outcome": outcome, "reviewer": reviewer, "reason": reason}


# --- who may decide --------------------------------------------------------------------------


def test_at_the_first_level_every_level_may_decide_except_the_requester():
    gate = _gate()
    assert gate.eligible_groups() == ["finance_reviewers", "finance_directors", "cfo_office"]
    assert gate.may_decide() == ["rita.reviewer", "ravi.reviewer", "dora.director", "carl.cfo"]


def test_at_a_higher_level_only_that_level_and_above_may_decide():
    gate = _gate(level=1)
    assert gate.eligible_groups() == ["finance_directors", "cfo_office"]
    assert gate.may_decide() == ["dora.director", "rita.reviewer", "carl.cfo"]


def test_higher_level_member_may_decide_at_a_lower_level():
    gate = _gate()
    assert gate.problem_with(Decision.model_validate(_decision("carl.cfo"))) is None


def test_reviewer_is_refused_after_escalation_naming_the_allowed_groups():
    gate = _gate()
    gate.escalate(T0 + timedelta(hours=24), "no decision in 24h")
    problem = gate.problem_with(Decision.model_validate(_decision("ravi.reviewer")))
    assert problem == (
        "ravi.reviewer may not decide at level 2 (Finance director); allowed groups: finance_directors, cfo_office"
    )


def test_stranger_is_refused():
    problem = _gate().problem_with(Decision.model_validate(_decision("eve.outsider")))
    assert problem is not None and problem.startswith("eve.outsider may not decide at level 1 (Finance reviewer)")


def test_requester_is_refused_even_when_in_the_group():
    gate = _gate()
    assert gate.submit_raw(_decision("sam.sales"), "signal", T0) is None
    assert gate.open is True
    assert gate.rejected_attempts[-1].error == "sam.sales requested this case and may not decide it"


def test_requester_who_is_a_director_is_refused_too():
    gate = _gate(requester="dora.director")
    assert "dora.director" not in gate.may_decide()
    problem = gate.problem_with(Decision.model_validate(_decision("dora.director")))
    assert problem == "dora.director requested this case and may not decide it"


# --- accepting -------------------------------------------------------------------------------


def test_accepted_decision_closes_the_gate():
    gate = _gate()
    accepted = gate.submit_raw(_decision("ravi.reviewer"), "update", T0 + timedelta(hours=1))
    assert accepted is not None
    assert gate.open is False
    assert gate.decision == accepted
    assert (accepted.outcome, accepted.decided_by, accepted.via) == ("approve", "ravi.reviewer", "update")
    assert accepted.reason == "precedent supports it"
    assert accepted.at == T0 + timedelta(hours=1)


def test_decision_records_the_level_the_reviewer_sat_at():
    accepted = _gate().submit_raw(_decision("carl.cfo"), "signal", T0)
    assert accepted is not None
    assert (accepted.level, accepted.group) == (2, "cfo_office")


def test_member_of_two_groups_decides_from_the_higher_seat():
    accepted = _gate().submit_raw(_decision("rita.reviewer"), "signal", T0)
    assert accepted is not None
    assert (accepted.level, accepted.group) == (1, "finance_directors")


def test_request_info_is_accepted_as_a_decision():
    accepted = _gate().submit_raw(_decision("ravi.reviewer", outcome="request_info", reason="need ARR"), "signal", T0)
    assert accepted is not None and accepted.outcome == DecisionOutcome.REQUEST_INFO


def test_second_decision_after_acceptance_is_refused_naming_the_first():
    gate = _gate()
    gate.submit_raw(_decision("ravi.reviewer"), "update", T0 + timedelta(hours=2))
    assert gate.submit_raw(_decision("carl.cfo", outcome="reject"), "signal", T0 + timedelta(hours=3)) is None
    assert gate.rejected_attempts[-1].error == (
        "case already decided: approve by ravi.reviewer at 2026-09-01T11:00:00+00:00"
    )
    assert gate.decision is not None and gate.decision.decided_by == "ravi.reviewer"


def test_problem_with_does_not_change_the_gate():
    gate = _gate()
    before = gate.model_dump()
    gate.problem_with(Decision.model_validate(_decision("sam.sales")))
    gate.problem_with(Decision.model_validate(_decision("ravi.reviewer")))
    assert gate.model_dump() == before


# --- malformed submissions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "error_start"),
    [
        ("approve", "invalid decision: payload: "),
        (None, "invalid decision: payload: "),
        (["approve"], "invalid decision: payload: "),
        ({"outcome": "approve", "reviewer": "ravi.reviewer"}, "invalid decision: reason: Field required"),
        (
            {"outcome": "approve", "reviewer": "ravi.reviewer", "reason": "   "},
            "invalid decision: reason: String should have at least 1 character",
        ),
        (
            {"outcome": "maybe", "reviewer": "ravi.reviewer", "reason": "x"},
            "invalid decision: outcome: Input should be 'approve', 'reject' or 'request_info'",
        ),
        ({**_decision("ravi.reviewer"), "urgent": True}, "invalid decision: urgent: Extra inputs are not permitted"),
        (_decision("ravi reviewer"), "invalid decision: reviewer: String should match pattern"),
        ({}, "invalid decision: outcome: Field required; reviewer: Field required; reason: Field required"),
    ],
    ids=[
        "string",
        "none",
        "list",
        "no-reason",
        "blank-reason",
        "unknown-outcome",
        "extra-field",
        "reviewer-with-spaces",
        "empty",
    ],
)
def test_malformed_submission_is_recorded_not_raised(payload, error_start):
    gate = _gate()
    assert gate.submit_raw(payload, "signal", T0) is None
    assert gate.open is True
    assert gate.decision is None
    (attempt,) = gate.rejected_attempts
    assert isinstance(attempt, RejectedAttempt)
    assert attempt.error.startswith(error_start), attempt.error
    assert attempt.payload == payload
    assert (attempt.via, attempt.at) == ("signal", T0)


def test_rejected_attempt_names_the_reviewer_when_it_can():
    gate = _gate()
    gate.submit_raw({"outcome": "maybe", "reviewer": "ravi.reviewer", "reason": "x"}, "signal", T0)
    gate.submit_raw({"outcome": "approve", "reviewer": 42, "reason": "x"}, "signal", T0)
    assert [a.reviewer for a in gate.rejected_attempts] == ["ravi.reviewer", None]


def test_gate_still_accepts_a_good_decision_after_bad_ones():
    gate = _gate()
    gate.submit_raw("approve", "signal", T0)
    gate.submit_raw(_decision("sam.sales"), "signal", T0)
    assert gate.submit_raw(_decision("ravi.reviewer"), "signal", T0 + timedelta(minutes=5)) is not None
    assert len(gate.rejected_attempts) == 2


# --- deadlines, escalation, timeout ----------------------------------------------------------


def test_deadlines_follow_the_levels_durations():
    gate = _gate()
    assert gate.remind_at() == T0 + timedelta(hours=4)
    assert gate.escalate_at() == T0 + timedelta(hours=24)


def test_escalation_moves_up_a_level_and_restarts_its_clock():
    gate = _gate()
    at = T0 + timedelta(hours=24)
    escalation = gate.escalate(at, "no decision within 24h")
    assert (escalation.from_level, escalation.to_level, escalation.to_group) == (0, 1, "finance_directors")
    assert gate.level == 1
    assert gate.current_group == "finance_directors"
    assert gate.level_started_at == at
    assert gate.opened_at == T0
    assert gate.remind_at() == at + timedelta(hours=4)
    assert gate.escalate_at() == at + timedelta(hours=24)
    assert gate.escalations == [escalation]


def test_cfo_level_uses_its_own_longer_durations():
    gate = _gate()
    gate.escalate(T0 + timedelta(hours=24), "timeout")
    cfo_start = T0 + timedelta(hours=48)
    gate.escalate(cfo_start, "timeout")
    assert gate.remind_at() == cfo_start + timedelta(hours=8)
    assert gate.escalate_at() == cfo_start + timedelta(hours=48)


def test_only_the_cfo_level_is_last():
    assert [_gate(level=i).is_last_level() for i in range(3)] == [False, False, True]


def test_cannot_escalate_past_the_last_level():
    with pytest.raises(AssertionError):
        _gate(level=2).escalate(T0, "timeout")


def test_reminder_is_recorded_for_the_current_level():
    gate = _gate(level=1)
    reminder = gate.record_reminder(T0 + timedelta(hours=4))
    assert (reminder.level, reminder.group) == (1, "finance_directors")
    assert gate.reminders == [reminder]
    assert gate.open is True


def test_timeout_records_the_policy_outcome_as_a_decision():
    gate = _gate(level=2)
    at = T0 + timedelta(hours=48)
    decision = gate.time_out(at)
    assert gate.open is False
    assert gate.decision == decision
    assert decision.outcome == "reject"
    assert decision.decided_by == "timeout:finance"
    assert decision.via == "timeout"
    assert (decision.level, decision.group, decision.at) == (2, "cfo_office", at)
    assert decision.reason == "no decision within 2d at the last level (CFO); policy outcome on timeout is reject"


def test_decision_after_timeout_is_refused():
    gate = _gate(level=2)
    gate.time_out(T0)
    assert gate.submit_raw(_decision("carl.cfo"), "signal", T0 + timedelta(minutes=1)) is None
    assert gate.rejected_attempts[-1].error.startswith("case already decided: reject by timeout:finance at ")


# --- what the inbox shows --------------------------------------------------------------------


def test_gate_view_says_the_deadline_escalates_to_the_next_level():
    view = gate_view(_gate())
    assert view.deadline_action == "escalates to Finance director"
    assert view.next_deadline == T0 + timedelta(hours=24)
    assert view.remind_at == T0 + timedelta(hours=4)
    assert view.level_title == "Finance reviewer"
    assert "sam.sales" not in view.may_decide


def test_gate_view_says_the_last_level_times_out():
    assert gate_view(_gate(level=2)).deadline_action == "times out"


def test_a_huge_bad_payload_is_kept_as_a_bounded_preview():
    from datetime import datetime

    from gates.gate import MAX_KEPT_PAYLOAD_CHARS, RejectedAttempt

    attempt = RejectedAttempt.of(
        at=datetime.now(UTC), via="signal", reviewer="x" * 500, payload={"reason": "y" * 100_000}, error="too long"
    )
    assert attempt.payload["truncated"] is True and attempt.payload["chars"] > 100_000
    assert len(attempt.payload["preview"]) <= MAX_KEPT_PAYLOAD_CHARS
    assert attempt.reviewer is None  # an 500-character "reviewer" is not an id worth keeping


def test_only_a_bounded_number_of_rejected_attempts_is_kept_the_latest_always_among_them():
    from datetime import datetime

    from gates.gate import MAX_KEPT_ATTEMPTS, RejectedAttempt, keep_attempt

    attempts: list = []
    for n in range(MAX_KEPT_ATTEMPTS + 25):
        keep_attempt(attempts, RejectedAttempt.of(at=datetime.now(UTC), via="signal", reviewer=None, payload=n, error="bad"))
    assert len(attempts) == MAX_KEPT_ATTEMPTS
    assert attempts[0].payload == 0 and attempts[-1].payload == MAX_KEPT_ATTEMPTS + 24
