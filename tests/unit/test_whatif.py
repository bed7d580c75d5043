"""What-if over past traces: traces built here as the workflow builds them (evaluate, propose, the
consulted evidence), then re-evaluated under a changed policy."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from gates.brief import propose
from gates.cases import CaseKind, CaseRequest
from gates.evidence import ContextBundle
from gates.kinds import SPECS
from gates.policy import Policy, evaluate
from gates.precedent import Precedent, PrecedentFeatures
from gates.trace import AgentNote, DecisionTrace
from gates.whatif import what_if, what_if_case
from tests.unit.factories import CRM_FULL, T0, context, policy, precedent, renewal

DISCOUNT = policy(CaseKind.RENEWAL)


def recorded(
    request: CaseRequest,
    evidence: ContextBundle,
    *,
    outcome: str,
    via: str = "update",
    precedents: list[Precedent] | None = None,
    under: Policy = DISCOUNT,
) -> DecisionTrace:
    """The trace of a case decided `outcome` through `via`, as gates/composition.py records it."""
    spec, precedents = SPECS[request.kind], precedents or []
    evaluation = evaluate(under, spec.facts(request, evidence, len(precedents)), [p.outcome for p in precedents])
    proposal = propose(evaluation, precedents, evidence)
    human = evaluation.requires_human
    case_id = request.case_id()
    return DecisionTrace(
        decision_trace=request.kind.value, entities={"policy": under.ref}, inputs=evidence.consulted(),
        human_gate=under.gate.name if human else None, case_id=case_id, business_key=request.business_key(),
        workflow_id=case_id, run_id="run-1", request=request.model_dump(mode="json"), brief="", findings=evaluation.findings,
        reason_codes=[c.value for c in evaluation.reason_codes], proposal=proposal, agent=AgentNote(used=False),
        precedent_headline="", precedents_cited=[p.case_id for p in precedents],
        features=PrecedentFeatures(kind=request.kind, policy=under.ref, amount_band=spec.band(request)),
        outcome=outcome, decided_by="fin_rev_ana" if human else f"policy:{under.ref}", decided_via=via if human else "policy",
        reason="decided", decided_level=evaluation.start_level if human else None, opened_at=T0,
        gate_opened_at=T0 if human else None, decided_at=T0 + timedelta(hours=3),
    )  # fmt: skip


def variant(base: Policy = DISCOUNT, *, rules: dict[str, dict[str, Any] | None] | None = None, **top: Any) -> Policy:
    """`base` as version 3.3 with some rules changed (None drops a rule), added, or top-level fields replaced."""
    data = base.model_dump(mode="json", exclude_none=True)
    data["version"] = "3.3"
    changes = dict(rules or {})
    kept = []
    for rule in data["rules"]:
        if rule["id"] in changes:
            change = changes.pop(rule["id"])
            if change is None:
                continue
            rule = {**rule, **change}
        kept.append(rule)
    data["rules"] = kept + list(changes.values())
    data.update(top)
    return Policy.model_validate(data)


def cited_rows(precedents: list[Precedent]) -> dict[str, list[Precedent]]:
    return {p.case_id: [p] for p in precedents}


def gt(fact: str, value: Any) -> dict[str, Any]:
    return {"fact": fact, "op": "gt", "value": value}


APPROVING = [precedent(n) for n in (1, 2, 3)]


def test_the_policy_a_case_was_decided_under_changes_nothing():
    traces = [
        recorded(renewal(requested_discount_pct=Decimal("8")), context(CRM_FULL), outcome="approve"),
        recorded(renewal(renewal="fy27"), context(CRM_FULL), outcome="approve", precedents=APPROVING),  # 28%: relief
        recorded(renewal(renewal="fy28", requested_discount_pct=Decimal("18")), context(CRM_FULL), outcome="reject"),
    ]
    cited = cited_rows(APPROVING)
    report = what_if(DISCOUNT, traces, cited)
    assert [c.status for c in report.cases] == ["unchanged"] * 3
    assert traces[1].findings[2].required_level == 0, "the relief the case had is reproduced, so nothing moves"
    assert (report.totals.cases, report.totals.unchanged, report.totals.rejected_would_pass) == (3, 3, 0)


def test_a_stricter_threshold_turns_a_case_policy_decided_into_one_for_a_human():
    auto = recorded(renewal(requested_discount_pct=Decimal("8")), context(CRM_FULL), outcome="approve")
    assert auto.decided_via == "policy"
    stricter = variant(rules={"DISC-2": {"when": gt("request.requested_discount_pct", 5)}})

    case = what_if_case(stricter, auto, {})

    assert case.status == "changed"
    assert case.before is not None and case.after is not None
    assert (case.before.human, case.after.human, case.after.gate, case.after.rules) == (False, True, "finance", ["DISC-2"])
    assert "human not needed -> needed" in case.changes
    assert "proposal approve -> none" in case.changes, "no precedent cited: the reviewer's own judgement"
    totals = what_if(stricter, [auto], {}).totals
    assert (totals.none_to_human, totals.path_changed, totals.human_to_none) == (1, 1, 0)


def test_a_looser_threshold_flags_a_case_a_human_rejected_that_would_now_pass():
    rejected = recorded(
        renewal(requested_discount_pct=Decimal("18")), context(CRM_FULL), outcome="reject", precedents=APPROVING[:1]
    )
    approved = recorded(
        renewal(renewal="fy27", requested_discount_pct=Decimal("18")),
        context(CRM_FULL),
        outcome="approve",
        precedents=APPROVING[:1],
    )
    looser = variant(rules={"DISC-2": {"when": gt("request.requested_discount_pct", 20)}})

    report = what_if(looser, [rejected, approved], cited_rows(APPROVING))

    assert report.rejected_would_pass == [rejected.case_id]
    by_case = {c.case_id: c for c in report.cases}
    assert by_case[rejected.case_id].rejected_would_pass and not by_case[approved.case_id].rejected_would_pass
    assert by_case[rejected.case_id].changes == ["human needed -> not needed"], "the proposal was approve already"
    assert (report.totals.human_to_none, report.totals.rejected_would_pass, report.totals.changed) == (2, 1, 2)


def test_a_rule_raising_the_minimum_level_and_another_gate_are_named():
    relieved = recorded(renewal(), context(CRM_FULL), outcome="approve", precedents=APPROVING)
    no_relief = variant(rules={"DISC-3": {"precedent_relief": None}})
    case = what_if_case(no_relief, relieved, cited_rows(APPROVING))
    assert case.changes == ["minimum level 1 -> 2"]

    ops = variant(gate={**DISCOUNT.gate.model_dump(mode="json"), "name": "ops"})
    assert what_if_case(ops, relieved, cited_rows(APPROVING)).changes == ["gate finance -> ops"]


def test_a_proposal_that_would_change_is_named():
    rejecting = [precedent(n, outcome="reject") for n in (4, 5)]
    case18 = recorded(renewal(requested_discount_pct=Decimal("18")), context(CRM_FULL), outcome="reject", precedents=rejecting)
    assert case18.proposal.outcome == "reject"
    # A rule asking for a fact the request lacks: still Finance at the same level, but the brief would
    # now ask for information instead of proposing reject.
    stricter = variant(rules={"DISC-7": {"id": "DISC-7", "description": "d", "reason_code": "ambiguous_or_missing_data",
                                         "require": ["request.chat_thread"]}})  # fmt: skip
    case = what_if_case(stricter, case18, cited_rows(rejecting))
    assert case.changes == ["proposal reject -> request_info"]
    assert case.after is not None and case.after.rules == ["DISC-2", "DISC-7"]


def test_a_fact_consulted_but_not_recorded_makes_the_case_cannot_tell():
    trace = recorded(renewal(requested_discount_pct=Decimal("8")), context(CRM_FULL), outcome="approve")
    incidents = variant(rules={"DISC-7": {"id": "DISC-7", "description": "d", "reason_code": "unusual_case",
                                          "when": gt("crm.open_incidents", 3)}})  # fmt: skip

    case = what_if_case(incidents, trace, {})

    assert case.status == "cannot_tell" and case.after is None
    assert any("crm.open_incidents" in u for u in case.unknown)
    assert what_if(incidents, [trace], {}).totals.cannot_tell == 1


def test_a_fact_the_workflow_never_gathers_is_missing_as_it_would_be_live():
    trace = recorded(renewal(requested_discount_pct=Decimal("8")), context(CRM_FULL), outcome="approve")
    churn = variant(rules={"DISC-7": {"id": "DISC-7", "description": "d", "reason_code": "unusual_case",
                                      "when": gt("crm.churn_score", 0.5)}})  # fmt: skip
    case = what_if_case(churn, trace, {})
    assert case.status == "changed"
    assert case.after is not None and case.after.rules == ["DISC-7"] and case.after.proposal == "request_info"


def test_precedent_relief_without_the_cited_precedents_outcomes_cannot_tell():
    relieved = recorded(renewal(), context(CRM_FULL), outcome="approve", precedents=APPROVING)
    case = what_if_case(variant(), relieved, {})
    assert case.status == "cannot_tell"
    assert [u for u in case.unknown if "precedent" in u] == [f"outcome of cited precedent {p.case_id}" for p in APPROVING]


def test_a_trace_with_no_evaluation_cannot_tell_and_other_kinds_are_left_out():
    cancelled = recorded(renewal(), context(CRM_FULL), outcome="cancelled", via="operator").model_copy(update={"findings": []})
    assert what_if_case(variant(), cancelled, {}).unknown == ["no policy evaluation recorded"]
    access_policy = policy(CaseKind.ACCESS)
    assert what_if(access_policy, [cancelled], {}).totals.cases == 0


THREAD = {"title": "Acme renewal", "approval_stated_by": "vp_sales", "customer_commitment": "30% promised on the call"}


def test_a_case_citing_a_chat_thread_is_re_evaluated_from_what_its_rules_recorded():
    with_thread = recorded(
        renewal(chat_thread="vp_thread"), context({**CRM_FULL, "chat.vp_thread": THREAD}), outcome="approve", precedents=APPROVING
    )
    assert what_if_case(DISCOUNT, with_thread, cited_rows(APPROVING)).status == "unchanged"
    no_commitment_rule = variant(rules={"DISC-5": None})
    case = what_if_case(no_commitment_rule, with_thread, cited_rows(APPROVING))
    assert case.status == "unchanged", "DISC-2 and DISC-3 still send it to Finance, at the relieved level"
    # The thread itself is not in the trace, so neither is anything else derivation could have made of it.
    churn = variant(rules={"DISC-7": {"id": "DISC-7", "description": "d", "reason_code": "unusual_case",
                                      "when": {"fact": "chat.sentiment", "op": "present"}}})  # fmt: skip
    assert what_if_case(churn, with_thread, cited_rows(APPROVING)).status == "cannot_tell"


def test_a_trace_that_recorded_its_facts_is_re_evaluated_on_them():
    """Traces since `DecisionTrace.facts` carry every fact the evaluation could test, so a rule on a fact no
    finding recorded can still be judged (the same case above is "cannot tell" without them)."""
    request, evidence = renewal(requested_discount_pct=Decimal("8")), context(CRM_FULL)
    trace = recorded(request, evidence, outcome="approve")
    trace = trace.model_copy(update={"facts": SPECS[request.kind].facts(request, evidence, 0)})
    assert trace.facts["crm.open_incidents"] is not None
    threshold = int(trace.facts["crm.open_incidents"]) - 1  # the recorded count exceeds it: a human is needed now
    incidents = variant(rules={"DISC-7": {"id": "DISC-7", "description": "d", "reason_code": "unusual_case",
                                          "when": gt("crm.open_incidents", threshold)}})  # fmt: skip

    case = what_if_case(incidents, trace, {})

    assert case.status != "cannot_tell" and case.after is not None and case.after.human
    assert "DISC-7" in case.after.rules
