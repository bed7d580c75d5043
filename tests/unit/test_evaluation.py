"""Policy evaluation: which rules send a case to a human, at which level, and why."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gates.cases import CaseKind
from gates.policy import Policy, ReasonCode, evaluate
from tests.unit.factories import (
    CRM_FULL,
    access,
    access_facts,
    context,
    policy,
    procurement,
    procurement_facts,
    renewal,
    renewal_facts,
)

DISCOUNT = policy(CaseKind.RENEWAL)
PROCUREMENT = policy(CaseKind.PROCUREMENT)
ACCESS = policy(CaseKind.ACCESS)
APPROVED = ["approve", "approve", "approve"]


def _finding(evaluation, rule_id: str):
    (finding,) = [f for f in evaluation.findings if f.rule_id == rule_id]
    return finding


def _fired(evaluation) -> list[str]:
    return [f.rule_id for f in evaluation.findings if f.requires_human]


def _policy(rules: list[dict[str, Any]]) -> Policy:
    """A small policy over the finance gate, for testing one rule shape at a time."""
    return Policy.model_validate(
        {
            "policy_id": "test_policy",
            "version": "1.0",
            "kind": "renewal_discount_exception",
            "description": "rules under test",
            "rules": rules,
            "gate": DISCOUNT.gate.model_dump(),
        }
    )


# --- one finding per rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "facts"),
    [
        (CaseKind.RENEWAL, lambda: renewal_facts(renewal())),
        (CaseKind.RENEWAL, lambda: {}),
        (CaseKind.PROCUREMENT, lambda: procurement_facts(procurement())),
        (CaseKind.ACCESS, lambda: access_facts(access())),
    ],
    ids=["renewal", "no-facts-at-all", "procurement", "access"],
)
def test_every_rule_yields_exactly_one_finding_in_policy_order(kind, facts):
    p = policy(kind)
    evaluation = evaluate(p, facts(), [])
    assert [f.rule_id for f in evaluation.findings] == [r.id for r in p.rules]
    assert evaluation.policy == p.ref


def test_findings_carry_the_rule_description_for_the_trace():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal()), [])
    assert _finding(evaluation, "DISC-4").description == "A discount above 40% needs the CFO"


# --- thresholds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("pct", "fires"), [("15", False), ("15.00", False), ("15.01", True), ("14.99", False)])
def test_threshold_rule_fires_above_the_threshold_and_not_at_it(pct, fires):
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal(pct)), precedents=3), APPROVED)
    finding = _finding(evaluation, "DISC-2")
    assert finding.requires_human is fires
    assert finding.reason_code == (ReasonCode.THRESHOLD_BREACH if fires else None)
    assert finding.detail == ("condition met" if fires else "condition not met")


def test_finding_records_the_facts_it_tested():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("28"))), [])
    assert _finding(evaluation, "DISC-2").facts_used == {"request.requested_discount_pct": "28"}


# --- missing and ambiguous data --------------------------------------------------------------


def test_missing_fact_for_a_condition_sends_the_case_to_a_human_naming_the_fact():
    facts = renewal_facts(renewal())
    del facts["request.requested_discount_pct"]
    evaluation = evaluate(DISCOUNT, facts, [])
    finding = _finding(evaluation, "DISC-2")
    assert finding.requires_human is True
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert "request.requested_discount_pct" in finding.detail
    assert evaluation.requires_human is True
    assert ReasonCode.AMBIGUOUS_OR_MISSING_DATA in evaluation.reason_codes


def test_fact_present_but_null_counts_as_missing():
    facts = {**renewal_facts(renewal()), "request.requested_discount_pct": None}
    assert _finding(evaluate(DISCOUNT, facts, []), "DISC-2").reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA


def test_required_facts_that_are_missing_are_listed():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), context({})), [])
    finding = _finding(evaluation, "DISC-1")
    assert finding.requires_human is True
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert finding.detail == "missing: crm.enterprise_arr, crm.tier"


@pytest.mark.parametrize("blank", ["", [], {}])
def test_blank_required_fact_counts_as_missing(blank):
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), context({**CRM_FULL, "crm.tier": blank})), [])
    assert _finding(evaluation, "DISC-1").detail == "missing: crm.tier"


def test_required_facts_all_known_pass_the_rule():
    finding = _finding(evaluate(DISCOUNT, renewal_facts(renewal()), []), "DISC-1")
    assert finding.requires_human is False
    assert finding.detail == "all required facts known"


@pytest.mark.parametrize("value", ["lots", "twenty", "28%", [28], {"pct": 28}])
def test_non_number_where_a_number_is_expected_is_ambiguous_not_an_error(value):
    facts = {**renewal_facts(renewal()), "request.requested_discount_pct": value}
    finding = _finding(evaluate(DISCOUNT, facts, []), "DISC-2")
    assert finding.requires_human is True
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert finding.detail == "cannot evaluate: request.requested_discount_pct is missing or not comparable"


@pytest.mark.parametrize("value", ["NaN", float("nan"), True])
def test_nan_or_boolean_where_a_number_is_expected_is_ambiguous_not_an_error(value):
    facts = {**renewal_facts(renewal()), "request.requested_discount_pct": value}
    finding = _finding(evaluate(DISCOUNT, facts, []), "DISC-2")
    assert finding.requires_human is True
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA


def test_numeric_string_is_compared_as_a_number():
    # Pydantic serializes Decimal payload fields as strings; "28" must still compare as 28.
    facts = {**renewal_facts(renewal()), "request.requested_discount_pct": "28"}
    assert _finding(evaluate(DISCOUNT, facts, []), "DISC-2").reason_code == ReasonCode.THRESHOLD_BREACH


# --- composition -----------------------------------------------------------------------------

ALL_RULE = {
    "id": "T-1",
    "description": "big and new",
    "reason_code": "unusual_case",
    "when": {"all": [{"fact": "x.big", "op": "is_true"}, {"fact": "x.new", "op": "is_true"}]},
}
ANY_RULE = {
    "id": "T-1",
    "description": "big or new",
    "reason_code": "unusual_case",
    "when": {"any": [{"fact": "x.big", "op": "is_true"}, {"fact": "x.new", "op": "is_true"}]},
}


@pytest.mark.parametrize(
    ("big", "new", "fires"), [(True, True, True), (True, False, False), (False, True, False), (False, False, False)]
)
def test_all_of_fires_only_when_every_condition_holds(big, new, fires):
    evaluation = evaluate(_policy([ALL_RULE]), {"x.big": big, "x.new": new}, [])
    assert evaluation.requires_human is fires


@pytest.mark.parametrize(
    ("big", "new", "fires"), [(True, True, True), (True, False, True), (False, True, True), (False, False, False)]
)
def test_any_of_fires_when_one_condition_holds(big, new, fires):
    evaluation = evaluate(_policy([ANY_RULE]), {"x.big": big, "x.new": new}, [])
    assert evaluation.requires_human is fires


def test_any_of_with_no_condition_holding_and_one_fact_missing_is_ambiguous():
    finding = evaluate(_policy([ANY_RULE]), {"x.big": False}, []).findings[0]
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert "x.new" in finding.detail


def test_all_of_with_a_holding_condition_and_one_fact_missing_is_ambiguous():
    finding = evaluate(_policy([ALL_RULE]), {"x.big": True}, []).findings[0]
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert "x.new" in finding.detail


def test_nested_composition_is_evaluated():
    rule = {
        "id": "T-1",
        "description": "nested",
        "reason_code": "unusual_case",
        "when": {"all": [{"fact": "x.big", "op": "is_true"}, {"any": [{"fact": "x.tier", "op": "in", "value": ["a", "b"]}]}]},
    }
    assert evaluate(_policy([rule]), {"x.big": True, "x.tier": "b"}, []).requires_human is True
    assert evaluate(_policy([rule]), {"x.big": True, "x.tier": "c"}, []).requires_human is False


@pytest.mark.parametrize(
    ("op", "value", "fact", "fires"),
    [
        ("present", None, "thread text", True),
        ("present", None, "", False),
        ("present", None, None, False),
        ("absent", None, None, True),
        ("absent", None, "thread text", False),
        ("in", ["gold", "silver"], "gold", True),
        ("not_in", ["gold", "silver"], "gold", False),
        ("eq", "approved", "approved", True),
        ("ne", "approved", "blocked", True),
        ("is_false", None, False, True),
        ("is_true", None, "yes", False),
    ],
)
def test_condition_operators(op, value, fact, fires):
    rule = {"id": "T-1", "description": "op", "reason_code": "unusual_case", "when": {"fact": "x.v", "op": op, "value": value}}
    assert evaluate(_policy([rule]), {"x.v": fact}, []).requires_human is fires


# --- levels and reason codes -----------------------------------------------------------------


def test_gate_opens_at_the_highest_level_any_fired_rule_requires():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("45"))), [])
    assert [f.required_level for f in evaluation.findings if f.requires_human] == [0, 1, 2, 0]
    assert evaluation.start_level == 2


def test_reason_codes_are_listed_once_each_in_a_stable_order():
    facts = renewal_facts(renewal(requested_discount_pct=Decimal("45")))
    evaluation = evaluate(DISCOUNT, facts, [])
    assert evaluation.reason_codes == [ReasonCode.THRESHOLD_BREACH, ReasonCode.UNUSUAL_CASE]


def test_no_rule_firing_means_no_human_and_no_reason_codes():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("8"))), [])
    assert evaluation.requires_human is False
    assert evaluation.reason_codes == []
    assert evaluation.start_level == 0
    assert evaluation.relief_applied == []


# --- precedent relief ------------------------------------------------------------------------


def test_three_approved_precedents_lower_the_director_rule_to_a_reviewer():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=3), APPROVED)
    finding = _finding(evaluation, "DISC-3")
    assert finding.requires_human is True
    assert finding.required_level == 0
    assert finding.detail == "condition met; level lowered to 1 by 3 consistent precedents"
    assert evaluation.relief_applied == ["DISC-3"]
    assert evaluation.start_level == 0


def test_more_precedents_than_needed_still_give_relief():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=5), ["approve"] * 5)
    assert evaluation.start_level == 0


def test_fewer_precedents_than_min_cases_give_no_relief():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=2), ["approve", "approve"])
    assert _finding(evaluation, "DISC-3").required_level == 1
    assert "lowered" not in _finding(evaluation, "DISC-3").detail
    assert evaluation.relief_applied == []
    assert evaluation.start_level == 1


def test_one_dissenting_precedent_cancels_relief():
    outcomes = ["approve", "approve", "approve", "reject"]
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=4), outcomes)
    assert evaluation.start_level == 1
    assert evaluation.relief_applied == []


def test_precedents_with_the_other_outcome_give_no_relief():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=3), ["reject"] * 3)
    assert evaluation.start_level == 1


def test_precedent_never_relieves_a_missing_data_finding():
    facts = {**renewal_facts(renewal(), precedents=3), "request.requested_discount_pct": "lots"}
    evaluation = evaluate(DISCOUNT, facts, APPROVED)
    finding = _finding(evaluation, "DISC-3")
    assert finding.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
    assert finding.required_level == 1
    assert "lowered" not in finding.detail
    assert evaluation.relief_applied == []


def test_precedent_never_lowers_the_start_level_of_a_case_with_missing_data():
    rule = {
        "id": "T-1",
        "description": "big discount",
        "reason_code": "threshold_breach",
        "when": {"fact": "request.requested_discount_pct", "op": "gt", "value": 25},
        "min_level": 1,
        "precedent_relief": {"min_cases": 3, "outcome": "approve", "level": 0},
    }
    evaluation = evaluate(_policy([rule]), {}, APPROVED)
    assert evaluation.start_level == 1


def test_precedent_never_removes_the_human():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=3), APPROVED)
    assert evaluation.requires_human is True


def test_precedent_does_not_lower_rules_without_relief():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("45")), precedents=3), APPROVED)
    assert _finding(evaluation, "DISC-4").required_level == 2
    assert evaluation.start_level == 2


# --- realistic renewal cases -----------------------------------------------------------------


def test_acme_28_percent_with_three_approved_precedents_opens_at_reviewer_level():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=3), APPROVED)
    assert evaluation.requires_human is True
    assert _fired(evaluation) == ["DISC-2", "DISC-3"]
    assert evaluation.reason_codes == [ReasonCode.THRESHOLD_BREACH]
    assert evaluation.start_level == 0


def test_acme_28_percent_with_two_precedents_opens_at_director_level():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=2), ["approve", "approve"])
    assert _fired(evaluation) == ["DISC-2", "DISC-3"]
    assert evaluation.start_level == 1


def test_acme_28_percent_with_no_precedent_is_also_an_unusual_case():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(), precedents=0), [])
    assert _fired(evaluation) == ["DISC-2", "DISC-3", "DISC-6"]
    assert evaluation.reason_codes == [ReasonCode.THRESHOLD_BREACH, ReasonCode.UNUSUAL_CASE]


def test_45_percent_discount_opens_at_the_cfo():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("45")), precedents=3), APPROVED)
    assert evaluation.start_level == 2
    assert DISCOUNT.gate.levels[evaluation.start_level].title == "CFO"


def test_8_percent_with_full_data_and_no_chat_thread_is_decided_by_policy():
    evaluation = evaluate(DISCOUNT, renewal_facts(renewal(requested_discount_pct=Decimal("8"))), [])
    assert evaluation.requires_human is False
    assert all(not f.requires_human for f in evaluation.findings)


def test_missing_crm_tier_sends_even_a_small_discount_to_a_human():
    crm = {k: v for k, v in CRM_FULL.items() if k != "crm.tier"}
    facts = renewal_facts(renewal(requested_discount_pct=Decimal("8")), context(crm, missing={"crm.tier": "not found"}))
    evaluation = evaluate(DISCOUNT, facts, [])
    assert evaluation.requires_human is True
    assert evaluation.reason_codes == [ReasonCode.AMBIGUOUS_OR_MISSING_DATA]
    assert _finding(evaluation, "DISC-1").detail == "missing: crm.tier"


def test_customer_commitment_in_the_chat_thread_needs_a_human():
    request = renewal(requested_discount_pct=Decimal("8"), chat_thread="acme_renewal_fy26")
    thread = {"customer_commitment": "We told them 8% is fine", "approval_stated_by": None}
    facts = renewal_facts(request, context({**CRM_FULL, "chat.acme_renewal_fy26": thread}))
    evaluation = evaluate(DISCOUNT, facts, [])
    assert _fired(evaluation) == ["DISC-5"]
    assert evaluation.reason_codes == [ReasonCode.CUSTOMER_COMMITMENT]


def test_chat_thread_without_a_commitment_does_not_need_a_human():
    request = renewal(requested_discount_pct=Decimal("8"), chat_thread="acme_renewal_fy26")
    thread = {"customer_commitment": None, "approval_stated_by": "vera.vp"}
    facts = renewal_facts(request, context({**CRM_FULL, "chat.acme_renewal_fy26": thread}))
    assert evaluate(DISCOUNT, facts, []).requires_human is False


def test_chat_thread_that_could_not_be_fetched_sends_the_case_to_a_human():
    request = renewal(requested_discount_pct=Decimal("8"), chat_thread="acme_renewal_fy26")
    facts = renewal_facts(request, context(CRM_FULL, missing={"chat.acme_renewal_fy26": "chat unreachable"}))
    assert evaluate(DISCOUNT, facts, []).requires_human is True


# --- procurement -----------------------------------------------------------------------------


def test_purchase_under_threshold_from_an_approved_vendor_within_budget_is_decided_by_policy():
    evaluation = evaluate(PROCUREMENT, procurement_facts(procurement()), [])
    assert evaluation.requires_human is False


def test_purchase_in_another_currency_is_never_converted_and_needs_a_human():
    facts = procurement_facts(procurement(currency="EUR", amount=Decimal("20000")))
    assert facts["derived.amount_usd"] is None
    evaluation = evaluate(PROCUREMENT, facts, [])
    assert evaluation.requires_human is True
    assert evaluation.reason_codes == [ReasonCode.AMBIGUOUS_OR_MISSING_DATA]
    assert _finding(evaluation, "PROC-2").detail == "missing: derived.amount_usd"


def test_purchase_over_the_remaining_budget_needs_vp_approval():
    facts = procurement_facts(procurement(amount=Decimal("20000")), finance__budget_remaining_usd=12_000.0)
    evaluation = evaluate(PROCUREMENT, facts, [])
    assert _fired(evaluation) == ["PROC-5"]
    assert evaluation.start_level == 1
    assert PROCUREMENT.gate.levels[1].title == "VP approval"


def test_purchase_equal_to_the_remaining_budget_is_within_budget():
    facts = procurement_facts(procurement(amount=Decimal("20000")), finance__budget_remaining_usd=20_000.0)
    assert evaluate(PROCUREMENT, facts, []).requires_human is False


def test_purchase_above_buyer_threshold_needs_an_ops_reviewer():
    evaluation = evaluate(PROCUREMENT, procurement_facts(procurement(amount=Decimal("30000"))), [])
    assert _fired(evaluation) == ["PROC-3"]
    assert evaluation.start_level == 0


def test_purchase_above_100k_needs_vp_approval():
    evaluation = evaluate(PROCUREMENT, procurement_facts(procurement(amount=Decimal("150000"))), [])
    assert _fired(evaluation) == ["PROC-3", "PROC-4"]
    assert evaluation.start_level == 1


def test_purchase_from_a_blocked_vendor_is_an_unusual_case():
    facts = procurement_facts(procurement(), vendor_master__vendor_status="blocked")
    evaluation = evaluate(PROCUREMENT, facts, [])
    assert _fired(evaluation) == ["PROC-6"]
    assert evaluation.reason_codes == [ReasonCode.UNUSUAL_CASE]


def test_purchase_from_a_high_risk_vendor_is_an_unusual_case():
    facts = procurement_facts(procurement(), vendor_master__risk_rating="high")
    assert _fired(evaluate(PROCUREMENT, facts, [])) == ["PROC-6"]


def test_unknown_remaining_budget_sends_the_purchase_to_a_human():
    facts = procurement_facts(procurement(), finance__budget_remaining_usd=None)
    evaluation = evaluate(PROCUREMENT, facts, [])
    assert _finding(evaluation, "PROC-1").detail == "missing: finance.budget_remaining_usd"
    assert _finding(evaluation, "PROC-5").reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA


def test_remaining_budget_that_is_not_a_number_sends_the_purchase_to_a_human():
    facts = procurement_facts(procurement(), finance__budget_remaining_usd=float("nan"))
    evaluation = evaluate(PROCUREMENT, facts, [])
    assert evaluation.requires_human is True
    assert _finding(evaluation, "PROC-5").reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA


# --- access ----------------------------------------------------------------------------------


def test_short_non_privileged_access_for_an_active_user_is_decided_by_policy():
    assert evaluate(ACCESS, access_facts(access()), []).requires_human is False


def test_privileged_entitlement_is_a_threshold_breach():
    evaluation = evaluate(ACCESS, access_facts(access(entitlement="db_admin")), [])
    assert _fired(evaluation) == ["ACC-3"]
    assert evaluation.reason_codes == [ReasonCode.THRESHOLD_BREACH]
    assert evaluation.start_level == 0


def test_access_for_an_inactive_subject_needs_a_security_lead():
    evaluation = evaluate(ACCESS, access_facts(access(), iam__subject_active=False), [])
    assert _fired(evaluation) == ["ACC-2"]
    assert evaluation.reason_codes == [ReasonCode.UNUSUAL_CASE]
    assert evaluation.start_level == 1
    assert ACCESS.gate.levels[1].title == "Security lead"


def test_long_access_needs_a_security_lead_unless_precedent_agrees():
    facts = access_facts(access(duration_days=90))
    assert evaluate(ACCESS, facts, []).start_level == 1
    assert evaluate(ACCESS, facts, APPROVED).start_level == 0


def test_repeated_exceptions_are_an_unusual_case():
    evaluation = evaluate(ACCESS, access_facts(access(), iam__prior_exceptions=2), [])
    assert _fired(evaluation) == ["ACC-5"]


def test_unknown_entitlement_owners_send_access_to_a_human():
    evaluation = evaluate(ACCESS, access_facts(access(), iam__entitlement_owners=[]), [])
    assert _finding(evaluation, "ACC-1").detail == "missing: iam.entitlement_owners"
    assert evaluation.reason_codes == [ReasonCode.AMBIGUOUS_OR_MISSING_DATA]
