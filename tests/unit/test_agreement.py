"""Agreement between reviewers and the brief's proposals, from traces built here with known outcomes.

The expected intervals are the Wilson score interval at 95% worked by hand (and matching published
tables): 7 of 9 is 45.26%-93.68%, 3 of 3 is 43.85%-100%, 0 of 3 is 0%-56.15%, 1 of 2 is 9.45%-90.55%."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from gates.agreement import NO_RULE, iso_week, measure_agreement, wilson_interval
from gates.brief import Proposal
from gates.cases import CaseKind
from gates.gate import AcceptedDecision
from gates.policy import Finding, ReasonCode
from gates.precedent import PrecedentFeatures
from gates.trace import AgentNote, DecisionTrace

# Monday 2026-11-23 is the first day of ISO week 2026-W48.
W48 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
W49 = W48 + timedelta(days=7)
POLICY = "discount_policy_v3_2"
ProposedOutcome = Literal["approve", "reject", "request_info", "none"]


def finding(rule_id: str, fired: bool = True) -> Finding:
    return Finding(
        rule_id=rule_id,
        description=f"rule {rule_id}",
        requires_human=fired,
        reason_code=ReasonCode.THRESHOLD_BREACH if fired else None,
        detail="condition met" if fired else "condition not met",
    )


def decided(
    n: int,
    *,
    proposed: ProposedOutcome,
    outcome: str,
    at: datetime = W48,
    via: str = "update",
    fired: tuple[str, ...] = ("DISC-2",),
    policy: str = POLICY,
    kind: CaseKind = CaseKind.RENEWAL,
    reason: str = "reviewed",
    rounds: int = 0,
) -> DecisionTrace:
    """A recorded decision: `proposed` by the brief, `outcome` by whoever decided through `via`."""
    case_id = f"{kind.value}:acct_{n}/fy26"
    asked = at - timedelta(hours=1)
    round_decision = AcceptedDecision(
        outcome="request_info", decided_by="fin_rev_ana", reason="what changed?", via="update", at=asked, level=0
    )
    return DecisionTrace(
        decision_trace=kind.value, entities={"policy": policy}, inputs=[], human_gate=None if via == "policy" else "finance",
        case_id=case_id, business_key=f"acct_{n}/fy26", workflow_id=case_id, run_id=f"run-{n}", request={}, brief="",
        findings=[finding(rule) for rule in fired] + [finding("DISC-9", fired=False)], reason_codes=[],
        proposal=Proposal(outcome=proposed, rationale="r"), agent=AgentNote(used=False), precedent_headline="",
        precedents_cited=[], features=PrecedentFeatures(kind=kind, policy=policy, amount_band="discount_20_30"),
        outcome=outcome, decided_by="policy:x" if via == "policy" else "fin_rev_ana", decided_via=via, reason=reason,
        decided_level=0, rounds=[round_decision] * rounds, opened_at=at - timedelta(hours=2),
        gate_opened_at=at - timedelta(hours=2), decided_at=at,
    )  # fmt: skip


def test_wilson_interval_matches_the_hand_computed_bounds():
    assert wilson_interval(7, 9) == pytest.approx((0.45259, 0.93677), abs=1e-5)
    assert wilson_interval(3, 3) == pytest.approx((0.43850, 1.0), abs=1e-5)
    assert wilson_interval(0, 3) == pytest.approx((0.0, 0.56150), abs=1e-5)
    assert wilson_interval(1, 2) == pytest.approx((0.09453, 0.90547), abs=1e-5)
    assert wilson_interval(0, 0) is None


def test_agreement_counts_reviewer_decisions_per_kind_policy_and_rule_with_the_wilson_interval():
    agreeing = [decided(i, proposed="approve", outcome="approve") for i in range(6)]
    agreeing.append(decided(6, proposed="reject", outcome="reject", fired=("DISC-2", "DISC-3")))
    disagreeing = [
        decided(7, proposed="approve", outcome="reject", fired=("DISC-2", "DISC-3"), reason="margin too thin"),
        decided(8, proposed="reject", outcome="approve", via="signal", reason="the outage was ours"),
    ]
    report = measure_agreement(agreeing + disagreeing)

    assert (report.decisions, report.agreed) == (9, 7)
    [total] = report.totals
    assert (total.kind, total.policy, total.rule, total.decisions, total.agreed) == (CaseKind.RENEWAL.value, POLICY, None, 9, 7)
    assert (total.low, total.high) == pytest.approx((0.45259, 0.93677), abs=1e-5)
    rules = {r.rule or NO_RULE: r for r in report.rules}
    assert sorted(rules) == ["DISC-2", "DISC-3"], "only the rules that required a human"
    assert (rules["DISC-2"].decisions, rules["DISC-2"].agreed) == (9, 7)
    assert (rules["DISC-3"].decisions, rules["DISC-3"].agreed, rules["DISC-3"].rate) == (2, 1, 0.5)
    assert (rules["DISC-3"].low, rules["DISC-3"].high) == pytest.approx((0.09453, 0.90547), abs=1e-5)


def test_disagreements_are_listed_with_the_reviewers_own_reasons():
    traces = [
        decided(1, proposed="approve", outcome="approve"),
        decided(2, proposed="approve", outcome="reject", reason="margin too thin"),
        decided(3, proposed="reject", outcome="approve", reason="the outage was ours"),
    ]
    [total] = measure_agreement(traces).totals
    assert [(d.case_id, d.proposed, d.outcome, d.reason) for d in total.disagreements] == [
        (traces[1].case_id, "approve", "reject", "margin too thin"),
        (traces[2].case_id, "reject", "approve", "the outage was ours"),
    ]


def test_only_reviewer_decisions_on_a_proposed_approve_or_reject_count():
    traces = [
        decided(1, proposed="approve", outcome="approve"),
        decided(2, proposed="approve", outcome="approve", via="policy", fired=()),
        decided(3, proposed="approve", outcome="reject", via="timeout"),
        decided(4, proposed="approve", outcome="cancelled", via="operator"),
        decided(5, proposed="none", outcome="approve"),
        decided(6, proposed="request_info", outcome="reject"),
        decided(7, proposed="reject", outcome="reject", rounds=2),
    ]
    report = measure_agreement(traces)
    assert (report.decisions, report.agreed) == (2, 2)
    skipped = report.not_counted
    assert (skipped.by_policy, skipped.by_timeout, skipped.by_operator_or_other, skipped.no_outcome_proposed) == (1, 1, 1, 2)
    assert skipped.request_info_rounds == 2, "the rounds before a counted decision are not decisions of their own"


def test_policy_versions_and_kinds_are_measured_apart():
    traces = [
        decided(1, proposed="approve", outcome="approve"),
        decided(2, proposed="approve", outcome="reject", policy="discount_policy_v3_3"),
        decided(3, proposed="reject", outcome="reject", kind=CaseKind.ACCESS, policy="access_policy_v1_4", fired=("ACC-1",)),
    ]
    report = measure_agreement(traces)
    assert [(t.kind, t.policy, t.decisions, t.agreed) for t in report.totals] == [
        (CaseKind.ACCESS.value, "access_policy_v1_4", 1, 1),
        (CaseKind.RENEWAL.value, "discount_policy_v3_2", 1, 1),
        (CaseKind.RENEWAL.value, "discount_policy_v3_3", 1, 0),
    ]


def test_a_decision_no_rule_sent_to_a_human_counts_under_no_rule():
    report = measure_agreement([decided(1, proposed="approve", outcome="approve", fired=())])
    assert [r.rule for r in report.rules] == [NO_RULE]


def test_weekly_buckets_are_iso_weeks_with_the_change_from_the_week_before():
    assert (iso_week(W48), iso_week(W48 + timedelta(days=6, hours=13)), iso_week(W49)) == ("2026-W48", "2026-W48", "2026-W49")
    assert iso_week(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53", "1 January 2027 is a Friday of 2026's last ISO week"
    traces = [
        decided(1, proposed="approve", outcome="approve", at=W48),
        decided(2, proposed="approve", outcome="reject", at=W48 + timedelta(days=6)),  # Sunday, still W48
        decided(3, proposed="approve", outcome="approve", at=W49),
        decided(4, proposed="reject", outcome="reject", at=W49 + timedelta(days=1)),
        decided(5, proposed="reject", outcome="reject", at=W49 + timedelta(days=2)),
    ]
    [total] = measure_agreement(traces).totals
    assert [(p.week, p.decisions, p.agreed) for p in total.weekly] == [("2026-W48", 2, 1), ("2026-W49", 3, 3)]
    assert total.weekly[0].change is None
    assert total.weekly[1].change == pytest.approx(1.0 - 0.5)
