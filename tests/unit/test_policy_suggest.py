"""`hitl policy suggest`: consistent verified approvals relax a rule in a proposed file; anything less suggests nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import PurePath

import yaml

from activities.policy_files import bundled_policy_dir
from gates.gate import Identity
from gates.policy import evaluate, parse_policy_file
from gates.suggest import next_version, suggest
from gates.trace import DecisionTrace
from tests.unit.factories import CRM_FULL, context, renewal, renewal_facts
from tests.unit.test_whatif import APPROVING, DISCOUNT, recorded, variant

TEXT = (bundled_policy_dir() / "discount_policy_v3_2.yaml").read_text()


def decided(n: int, pct: str, outcome: str = "approve", *, verified: bool = True) -> DecisionTrace:
    """A renewal at `pct`% decided `outcome` by a Finance reviewer (verified or only asserted)."""
    trace = recorded(
        renewal(renewal=f"fy{n}", requested_discount_pct=Decimal(pct)), context(CRM_FULL), outcome=outcome, precedents=APPROVING
    )
    identity = Identity(mode="verified" if verified else "asserted", person="fin_rev_ana", channel="update")
    return trace.model_copy(update={"decided_identity": identity})


def band(count: int, low: float = 25.5, high: float = 30.0) -> list[str]:
    step = (high - low) / (count - 1)
    return [f"{low + i * step:.2f}" for i in range(count)]


def test_forty_approvals_between_25_and_30_relax_the_director_rule_to_30_in_a_valid_next_version():
    traces = [decided(n, pct) for n, pct in enumerate(band(40))]
    result = suggest(DISCOUNT, TEXT, traces, min_cases=20)
    assert result.ref == "discount_policy_v3_3" and result.based_on == "discount_policy_v3_2"
    (change,) = result.suggestions
    assert (change.rule_id, change.change) == ("DISC-3", "threshold gt 25 -> gt 30")
    assert change.why.startswith("40 of 40 verified decisions where DISC-3 fired were approved")
    assert "request.requested_discount_pct between 25.5 and 30" in change.why
    # DISC-2 fired too, but nobody decided a discount between 15% and 25.5%: not relaxed on others' strength
    assert any(n.startswith("DISC-2:") and "not covered" in n for n in result.not_suggested)
    assert result.text is not None and result.text.startswith("# Suggested by `hitl policy suggest`")
    proposed = parse_policy_file(result.text.encode(), PurePath("discount_policy_v3_3.yaml"))
    assert proposed.version == "3.3" and proposed.owners == DISCOUNT.owners
    # under it, a 28% discount still goes to a Finance reviewer (DISC-2), no longer to a director (DISC-3)
    evaluation = evaluate(proposed, renewal_facts(renewal(requested_discount_pct=Decimal("28")), precedents=3), [])
    assert [f.rule_id for f in evaluation.findings if f.requires_human] == ["DISC-2"] and evaluation.start_level == 0


def test_one_rejection_or_too_few_cases_or_unverified_reviewers_suggest_nothing():
    mixed = [decided(n, pct) for n, pct in enumerate(band(30))] + [decided(99, "27", "reject")]
    assert suggest(DISCOUNT, TEXT, mixed).text is None
    assert any("not consistent (30 approve, 1 reject)" in n for n in suggest(DISCOUNT, TEXT, mixed).not_suggested)
    few = suggest(DISCOUNT, TEXT, [decided(n, pct) for n, pct in enumerate(band(10))], min_cases=20)
    assert few.ref is None and any("10 consistent cases, fewer than the 20 needed" in n for n in few.not_suggested)
    asserted = suggest(DISCOUNT, TEXT, [decided(n, pct, verified=False) for n, pct in enumerate(band(40))])
    assert asserted.ref is None and asserted.not_suggested == []


def test_a_rule_in_shadow_moves_to_assist_and_a_non_threshold_rule_to_auto_never_a_commitment():
    shadow = variant(rules={"DISC-3": {"automation": "shadow"}})
    shadow_text = yaml.safe_dump(shadow.model_dump(mode="json", exclude_none=True), sort_keys=False)
    traces = [decided(n, pct) for n, pct in enumerate(band(25))]
    result = suggest(shadow, shadow_text, traces, min_cases=20)
    assert [(s.rule_id, s.change) for s in result.suggestions] == [("DISC-3", "automation shadow -> assist")]
    # a rule with a compound condition moves one level up: assist -> auto
    compound = variant(rules={"DISC-3": {"when": {"all": [{"fact": "request.requested_discount_pct", "op": "gt", "value": 25}]}}})
    text = yaml.safe_dump(compound.model_dump(mode="json", exclude_none=True), sort_keys=False)
    result = suggest(compound, text, traces, min_cases=20)
    assert ("DISC-3", "automation assist -> auto") in [(s.rule_id, s.change) for s in result.suggestions]
    # the customer-commitment rule, consistent or not, is never suggested at auto
    committed = [t.model_copy(update={"findings": [*t.findings[:4], t.findings[4].model_copy(update={
        "requires_human": True, "reason_code": "customer_commitment", "facts_used": {"chat.customer_commitment": "yes"}})]
        + t.findings[5:]}) for t in traces]  # fmt: skip
    result = suggest(DISCOUNT, TEXT, committed, min_cases=20)
    assert "DISC-5" not in [s.rule_id for s in result.suggestions]
    assert any(n.startswith("DISC-5:") and "never raised to auto" in n for n in result.not_suggested)


def test_the_next_version_skips_versions_already_proposed():
    assert next_version(DISCOUNT) == "3.3"
    assert next_version(DISCOUNT, ["3.3", "3.9", "4.0", "3.10"]) == "3.11"
