"""Automation levels per rule: shadow sends every case to a human with the rule's verdict recorded,
auto lets a met condition through, customer commitments never reach auto, missing data is never a guess."""

from __future__ import annotations

from decimal import Decimal
from pathlib import PurePath
from typing import Any

import pytest

from activities.policy_files import bundled_policy_dir
from gates.agreement import NO_RULE, measure_agreement
from gates.brief import propose, render_brief
from gates.policy import Policy, PolicyError, ReasonCode, evaluate, parse_policy_file
from gates.whatif import what_if
from tests.unit.factories import CRM_FULL, context, renewal
from tests.unit.test_whatif import APPROVING, cited_rows, recorded, variant

BUNDLED_DISCOUNT = (bundled_policy_dir() / "discount_policy_v3_2.yaml").read_text()
GATE = parse_policy_file(BUNDLED_DISCOUNT.encode(), PurePath("discount_policy_v3_2.yaml")).gate.model_dump()


def _policy(*levels: str, reason: str = "threshold_breach") -> Policy:
    """Two rules: a discount above 15% (at the first level given) and a known ARR (at the second)."""
    return Policy.model_validate(
        {
            "policy_id": "levels",
            "version": "1.0",
            "kind": "renewal_discount_exception",
            "description": "levels under test",
            "rules": [
                {
                    "id": "L-1",
                    "description": "above 15%",
                    "reason_code": reason,
                    "automation": levels[0],
                    "when": {"fact": "request.requested_discount_pct", "op": "gt", "value": 15},
                },
                {
                    "id": "L-2",
                    "description": "above 30%",
                    "reason_code": "threshold_breach",
                    "automation": levels[1],
                    "when": {"fact": "request.requested_discount_pct", "op": "gt", "value": 30},
                    "min_level": 1,
                },
            ],
            "gate": GATE,
        }
    )


def _facts(pct: Any) -> dict[str, Any]:
    return {"request.requested_discount_pct": pct}


def test_a_rule_in_shadow_sends_every_case_to_a_human_and_records_what_the_others_said():
    policy = _policy("assist", "shadow")
    quiet = evaluate(policy, _facts(10), [])
    assert quiet.requires_human and quiet.shadow_rules == ["L-2"] and quiet.verdict_without_shadow is False
    assert quiet.start_level == 0 and not quiet.reason_codes
    fired = evaluate(policy, _facts(35), [])
    assert fired.requires_human and fired.verdict_without_shadow is True and fired.start_level == 1
    assert {f.rule_id: f.automation for f in fired.findings} == {"L-1": "assist", "L-2": "shadow"}


def test_a_rule_at_auto_lets_a_met_condition_through():
    policy = _policy("auto", "assist")
    evaluation = evaluate(policy, _facts(20), [])
    assert not evaluation.requires_human and evaluation.reason_codes == []
    (l1, _) = evaluation.findings
    assert l1.fired and not l1.requires_human and l1.reason_code == ReasonCode.THRESHOLD_BREACH and l1.automation == "auto"
    # another rule still at assist still sends the case to a human
    assert evaluate(policy, _facts(35), []).requires_human


def test_the_brief_says_a_rule_at_auto_let_the_case_through_rather_than_listing_it_as_ok():
    evaluation = evaluate(_policy("auto", "assist"), _facts(20), [])
    brief = render_brief(
        ask="a renewal discount",
        requester="ae_sam",
        justification="",
        context=context({}),
        evaluation=evaluation,
        precedents=[],
        headline="",
        proposal=propose(evaluation, [], context({})),
        questions=[],
    )
    assert "**L-1** condition met; at auto, it lets the case through: above 15%" in brief
    assert "- ok: L-2" in brief  # the rule whose condition was not met


@pytest.mark.parametrize("pct", [None, "twenty", True])
def test_missing_or_ambiguous_data_goes_to_a_human_at_auto_too(pct):
    evaluation = evaluate(_policy("auto", "auto"), _facts(pct), [])
    assert evaluation.requires_human and evaluation.reason_codes == [ReasonCode.AMBIGUOUS_OR_MISSING_DATA]


def test_a_customer_commitment_rule_cannot_be_auto_whatever_the_path():
    with pytest.raises(ValueError, match="rule L-1: a customer_commitment rule cannot be auto"):
        _policy("auto", "assist", reason="customer_commitment")
    edited = BUNDLED_DISCOUNT.replace(
        "reason_code: customer_commitment", "reason_code: customer_commitment\n    automation: auto"
    )
    with pytest.raises(PolicyError) as raised:
        parse_policy_file(edited.encode(), PurePath("discount_policy_v3_2.yaml"))
    assert "rule DISC-5: a customer_commitment rule cannot be auto" in str(raised.value) and "\n" not in str(raised.value)
    _policy("shadow", "assist", reason="customer_commitment")  # shadow and assist keep a human


def test_an_unknown_level_is_refused_naming_the_rule_field():
    edited = BUNDLED_DISCOUNT.replace(
        "reason_code: customer_commitment", "reason_code: customer_commitment\n    automation: full"
    )
    with pytest.raises(PolicyError, match=r"rules\.4\.automation: Input should be 'shadow', 'assist' or 'auto'"):
        parse_policy_file(edited.encode(), PurePath("discount_policy_v3_2.yaml"))


def test_owners_are_named_once_and_the_quorum_defaults_to_a_majority():
    bundled = parse_policy_file(BUNDLED_DISCOUNT.encode(), PurePath("discount_policy_v3_2.yaml"))
    assert bundled.owners == ["fin_dir_omar", "fin_dir_lina", "cfo_jane"] and bundled.owners_needed == 2
    data = bundled.model_dump(mode="json")
    with pytest.raises(ValueError, match="owner_quorum 4 but the policy names 3 owners"):
        Policy.model_validate({**data, "owner_quorum": 4})
    with pytest.raises(ValueError, match="each owner is named once"):
        Policy.model_validate({**data, "owners": ["cfo_jane", "cfo_jane"]})


def test_a_policy_without_levels_dumps_and_evaluates_as_before_levels_existed():
    """Replay safety: findings, evaluations and rules at assist carry no new keys (digest_of hashes them)."""
    policy = _policy("assist", "assist")
    evaluation = evaluate(policy, _facts(35), [])
    dumped = evaluation.model_dump(mode="json")
    assert "shadow_rules" not in dumped and "verdict_without_shadow" not in dumped
    assert all("automation" not in f for f in dumped["findings"])
    assert all("automation" not in r for r in policy.model_dump(mode="json")["rules"])
    assert "automation" in evaluate(_policy("auto", "assist"), _facts(35), []).findings[0].model_dump(mode="json")


# --- what-if and agreement compare levels ------------------------------------------------------


def test_whatif_flags_a_rejected_case_a_rule_moved_to_auto_would_let_through_and_names_the_level_change():
    rejected = recorded(
        renewal(requested_discount_pct=Decimal("18")), context(CRM_FULL), outcome="reject", precedents=APPROVING[:1]
    )
    to_auto = variant(rules={"DISC-2": {"automation": "auto"}})
    report = what_if(to_auto, [rejected], cited_rows(APPROVING))
    (case,) = report.cases
    assert report.rejected_would_pass == [rejected.case_id]
    assert "human needed -> not needed" in case.changes and "DISC-2 assist -> auto" in case.changes
    # into shadow instead: still a human, the level change is what differs
    (shadowed,) = what_if(variant(rules={"DISC-2": {"automation": "shadow"}}), [rejected], cited_rows(APPROVING)).cases
    assert shadowed.status == "changed" and shadowed.changes == ["DISC-2 assist -> shadow"] and not shadowed.rejected_would_pass


def test_agreement_is_reported_per_rule_and_level_and_a_shadow_rule_counts_on_every_decision():
    shadow = variant(rules={"DISC-4": {"automation": "shadow"}})
    traces = [
        recorded(renewal(renewal=f"fy{n}", requested_discount_pct=Decimal(pct)), context(CRM_FULL), outcome=outcome,
                 precedents=APPROVING, under=shadow)
        for n, (pct, outcome) in enumerate([("28", "approve"), ("8", "approve"), ("8", "reject")])
    ]  # fmt: skip
    assert all(t.proposal.outcome == "approve" for t in traces)
    report = measure_agreement(traces)
    rows = {(r.rule, r.level): (r.agreed, r.decisions) for r in report.rules}
    assert rows[("DISC-4", "shadow")] == (2, 3), "the shadow rule is on trial in every case"
    assert rows[("DISC-2", "assist")] == (1, 1) and rows[("DISC-3", "assist")] == (1, 1)
    assert (NO_RULE, None) not in rows
