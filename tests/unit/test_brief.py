"""The brief a reviewer reads and the path it proposes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gates.brief import (
    Proposal,
    ReviewerQuestion,
    precedent_headline,
    propose,
    render_brief,
)
from gates.cases import CaseKind
from gates.kinds import RENEWAL
from gates.policy import evaluate
from gates.presentation import ask_markdown
from tests.unit.factories import (
    CRM_FULL,
    context,
    policy,
    precedent,
    renewal,
    renewal_facts,
)

DISCOUNT = policy(CaseKind.RENEWAL)
CASE_TAGS = ["service_impact", "enterprise"]


def _service_impact_approvals(n: int = 3):
    return [precedent(i, "approve", tags=("service_impact",)) for i in range(1, n + 1)]


# --- headline --------------------------------------------------------------------------------


def test_headline_for_three_consistent_service_impact_approvals():
    headline = precedent_headline(CaseKind.RENEWAL, CASE_TAGS, _service_impact_approvals())
    assert headline == "discount exception approved after a service-impact precedent: 3 similar cases, all approved"


def test_headline_names_the_most_telling_shared_tag_not_the_alphabetically_first():
    precedents = [precedent(i, "approve", tags=("service_impact", "enterprise")) for i in (1, 2, 3)]
    headline = precedent_headline(CaseKind.RENEWAL, CASE_TAGS, precedents)
    assert "after a service-impact precedent" in headline


def test_headline_counts_mixed_outcomes():
    precedents = [precedent(1, "approve"), precedent(2, "approve"), precedent(3, "reject")]
    headline = precedent_headline(CaseKind.RENEWAL, CASE_TAGS, precedents)
    assert headline.startswith("discount exception approved")
    assert headline.endswith("3 similar cases, 2 approved, 1 rejected")


def test_headline_leads_with_the_majority_outcome():
    precedents = [precedent(1, "approve"), precedent(2, "reject"), precedent(3, "reject")]
    headline = precedent_headline(CaseKind.RENEWAL, CASE_TAGS, precedents)
    assert headline.startswith("discount exception rejected")
    assert headline.endswith("3 similar cases, 2 rejected, 1 approved")


def test_headline_without_a_tag_shared_by_every_precedent_names_none():
    precedents = [precedent(1, "approve", tags=("service_impact",)), precedent(2, "approve", tags=())]
    headline = precedent_headline(CaseKind.RENEWAL, CASE_TAGS, precedents)
    assert headline == "discount exception approved: 2 similar cases, all approved"


def test_headline_for_a_single_precedent_is_singular():
    headline = precedent_headline(CaseKind.RENEWAL, [], [precedent(1, "reject")])
    assert headline == "discount exception rejected: 1 similar case, all rejected"


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        (CaseKind.RENEWAL, "no similar discount exception in the record"),
        (CaseKind.PROCUREMENT, "no similar purchase over threshold in the record"),
        (CaseKind.ACCESS, "no similar access exception in the record"),
    ],
)
def test_headline_without_precedents_says_there_are_none(kind, phrase):
    assert precedent_headline(kind, ["service_impact"], []) == phrase


# --- proposal --------------------------------------------------------------------------------


def _evaluation(pct: str = "28", evidence=None, precedents: int = 0):
    request = renewal(requested_discount_pct=Decimal(pct))
    facts = renewal_facts(request, evidence, precedents)
    return evaluate(DISCOUNT, facts, ["approve"] * precedents)


def test_case_policy_allows_is_proposed_for_approval_naming_the_rules():
    proposal = propose(_evaluation("8"), [], context(CRM_FULL))
    assert proposal.outcome == "approve"
    assert proposal.rationale == (
        "within policy discount_policy_v3_2: rules DISC-1, DISC-2, DISC-3, DISC-4, DISC-5, DISC-6 allow it"
    )


def test_case_with_missing_evidence_proposes_asking_for_it():
    crm = {k: v for k, v in CRM_FULL.items() if k != "crm.tier"}
    evidence = context(crm, missing={"crm.tier": "not found"})
    proposal = propose(_evaluation("28", evidence, precedents=3), _service_impact_approvals(), evidence)
    assert proposal.outcome == "request_info"
    assert proposal.rationale.endswith("ask for: crm: tier")
    assert proposal.cites == ["crm: tier"]


def test_case_with_unusable_facts_but_no_failed_source_asks_about_the_findings():
    evidence = context({**CRM_FULL, "crm.tier": ""})
    proposal = propose(_evaluation("28", evidence), [], evidence)
    assert proposal.outcome == "request_info"
    assert "missing: crm.tier" in proposal.rationale


def test_missing_data_wins_over_a_unanimous_precedent():
    evidence = context({}, missing={"crm.enterprise_arr": "crm unreachable", "crm.tier": "crm unreachable"})
    proposal = propose(_evaluation("28", evidence, precedents=3), _service_impact_approvals(), evidence)
    assert proposal.outcome == "request_info"
    assert "crm: enterprise_arr; crm: tier" in proposal.rationale


def test_majority_of_precedents_is_proposed_citing_them():
    precedents = [precedent(1, "approve"), precedent(2, "approve"), precedent(3, "reject")]
    proposal = propose(_evaluation("28", precedents=3), precedents, context(CRM_FULL))
    assert proposal.outcome == "approve"
    assert proposal.rationale == "2 of 3 similar cases were approved"
    assert proposal.cites == [precedents[0].case_id, precedents[1].case_id]


def test_majority_rejection_is_proposed_as_reject():
    precedents = [precedent(1, "reject"), precedent(2, "reject"), precedent(3, "approve")]
    proposal = propose(_evaluation("28", precedents=3), precedents, context(CRM_FULL))
    assert proposal.outcome == "reject"
    assert proposal.cites == [precedents[0].case_id, precedents[1].case_id]


def test_split_precedents_propose_nothing():
    precedents = [precedent(1, "approve"), precedent(2, "reject")]
    proposal = propose(_evaluation("28", precedents=2), precedents, context(CRM_FULL))
    assert proposal.outcome == "none"
    assert "went both ways" in proposal.rationale
    assert proposal.cites == [p.case_id for p in precedents]


def test_no_precedent_leaves_the_judgement_to_the_reviewer():
    proposal = propose(_evaluation("28"), [], context(CRM_FULL))
    assert proposal.outcome == "none"
    assert proposal.rationale == "no similar past case; this needs the reviewer's own judgement"


# --- rendered brief --------------------------------------------------------------------------


def _evidence_without_contract_terms():
    crm = {k: v for k, v in CRM_FULL.items() if k != "crm.contract_terms"}
    return context(crm, missing={"crm.contract_terms": "not found"})


@pytest.fixture
def brief() -> str:
    request = renewal()
    evidence = _evidence_without_contract_terms()
    facts = RENEWAL.facts(request, evidence, 3)
    precedents = _service_impact_approvals()
    evaluation = evaluate(DISCOUNT, facts, [p.outcome for p in precedents])
    headline = precedent_headline(request.kind, RENEWAL.tags(facts), precedents)
    return render_brief(
        ask=ask_markdown(request),
        requester=request.requester,
        justification=request.justification,
        context=evidence,
        evaluation=evaluation,
        precedents=precedents,
        headline=headline,
        proposal=propose(evaluation, precedents, evidence),
        questions=[ReviewerQuestion(round=1, reviewer="rita.reviewer", question="Is the outage credited already?")],
    )


def test_brief_opens_with_the_ask_and_who_asked(brief):
    lines = brief.splitlines()
    assert lines[0] == "### 28% renewal discount for `acme_enterprise` (`fy26`)"
    assert "Requested by `sam.sales`, in their words:\n\n```text\nCustomer had two sev1 outages this year\n```" in brief


def test_brief_lists_every_evidence_item_with_its_source_label(brief):
    for name in CRM_FULL:
        if name == "crm.contract_terms":
            continue
        source, item = name.split(".", 1)
        assert f"`{source}: {item}`" in brief
    assert "- enterprise arr: 1,200,000 `crm: enterprise_arr`" in brief
    assert "- service impact: yes `crm: service_impact`" in brief


def test_brief_marks_missing_items_with_the_reason(brief):
    assert "- **missing** `crm: contract_terms`: `not found`" in brief


def test_brief_lists_every_finding_by_rule_id(brief):
    """Rules that need a human get a line each; the ones that passed are listed together."""
    for rule in DISCOUNT.rules:
        assert rule.id in brief
    assert "**Policy** `discount_policy_v3_2`" in brief
    assert "- **DISC-3** needs a human (threshold_breach, level 1)" in brief
    assert "level lowered to 1 by 3 consistent precedents" in brief
    ok_line = next(line for line in brief.splitlines() if line.startswith("- ok: "))
    assert "DISC-4" in ok_line and "DISC-3" not in ok_line


def test_brief_shows_the_precedent_headline_and_cases(brief):
    assert "**Precedent**: discount exception approved after a service-impact precedent: 3 similar cases, all approved" in brief
    assert "- `renewal_discount_exception:globex_1/fy25`: approve by fin.reviewer1" in brief


def test_brief_shows_reviewer_questions(brief):
    assert "- round 1, rita.reviewer: `Is the outage credited already?`" in brief


def test_brief_ends_with_the_proposal(brief):
    assert brief.splitlines()[-1] == "**Proposed**: approve: 3 of 3 similar cases were approved"


def test_brief_without_evidence_says_none_was_gathered():
    evaluation = _evaluation("8", context({}))
    text = render_brief(
        ask="ask",
        requester="sam.sales",
        justification="why",
        context=context({}),
        evaluation=evaluation,
        precedents=[],
        headline="no similar discount exception in the record",
        proposal=Proposal(outcome="none", rationale="r"),
        questions=[],
    )
    assert "- none gathered" in text
    assert "Reviewer questions" not in text


def test_same_inputs_give_the_same_brief(brief):
    request = renewal()
    evidence = _evidence_without_contract_terms()
    facts = RENEWAL.facts(request, evidence, 3)
    precedents = _service_impact_approvals()
    evaluation = evaluate(DISCOUNT, facts, [p.outcome for p in precedents])
    again = render_brief(
        ask=ask_markdown(request),
        requester=request.requester,
        justification=request.justification,
        context=evidence,
        evaluation=evaluation,
        precedents=precedents,
        headline=precedent_headline(request.kind, RENEWAL.tags(facts), precedents),
        proposal=propose(evaluation, precedents, evidence),
        questions=[ReviewerQuestion(round=1, reviewer="rita.reviewer", question="Is the outage credited already?")],
    )
    assert again == brief
