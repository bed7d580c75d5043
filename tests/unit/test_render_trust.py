"""`hitl show` explains the trust part of a case: the evidence digest to decide on, the identity mode,
the directory version, who may not decide and why, and for a decided case who decided, proven how,
in whose seat. What the directory's people wrote (a delegation's reason) reads as their words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gates.cases import CaseKind
from gates.duties import Delegation
from gates.gate import AcceptedDecision, GateState, Identity, OperatorRecord
from gates.trace import CaseState, CaseView, gate_view
from hitl_temporal.cli.render import render_case
from tests.unit.factories import T0, policy

DISCOUNT = policy(CaseKind.RENEWAL)
DIGEST = "sha256:" + "ab" * 32
CASE = "renewal_discount_exception:acme_enterprise/fy26"


def trusted_gate(**changes) -> GateState:
    gate = GateState(
        definition=DISCOUNT.gate,
        requester="ae_sam",
        roster={"finance_reviewers": ["fin_rev_ana", "fin_rev_ben"], "finance_directors": ["fin_dir_omar"], "cfo_office": []},
        level=0,
        opened_at=T0,
        level_started_at=T0,
        trusted=True,
        identity_mode="verified",
        digest=DIGEST,
        directory_version="2026-12-02.1",
        inactive={"finance_reviewers": ["fin_rev_greta"]},
        delegations=[
            Delegation(
                delegator="fin_rev_ana",
                delegate="fin_rev_ben",
                starts_at=T0 - timedelta(days=1),
                ends_at=datetime(2026, 9, 8, tzinfo=UTC),  # through 7 September
                reason="out of office",
            )
        ],
    )
    return gate.model_copy(update=changes)


def view_of(gate: GateState | None, decision: AcceptedDecision | None = None, **changes) -> CaseView:
    return CaseView(
        case_id=CASE,
        kind=CaseKind.RENEWAL.value,
        state=CaseState.WAITING if gate else CaseState.DECIDED,
        ask="28% renewal discount for acme_enterprise (fy26)",
        requester="ae_sam",
        policy="discount_policy_v3_2",
        brief=None,
        findings=[],
        reason_codes=[],
        proposal=None,
        precedent_headline=None,
        precedents=[],
        gate=gate_view(gate, T0 + timedelta(hours=1)) if gate else None,
        decision=decision,
        rounds=[],
        rejected_attempts=[],
        questions=[],
        **changes,
    )


def test_a_waiting_case_shows_the_digest_to_decide_on_the_identity_mode_and_the_directory_version():
    out = render_case(view_of(trusted_gate()), now=T0)
    assert f"evidence digest: {DIGEST}  (hitl approve {CASE} --digest {DIGEST} ...)" in out
    assert "identity: verified (a decision carries a proof of who decides" in out
    assert "directory: version 2026-12-02.1" in out


def test_routing_explained_names_who_may_not_decide_and_why():
    out = render_case(view_of(trusted_gate()), now=T0)
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "routing explained:" in line)
    routing = lines[start : start + 2]
    assert "fin_rev_greta: “fin_rev_greta is inactive in the directory”" in routing[0] + routing[1]
    assert "fin_rev_ana: “fin_rev_ana is away (out of office, until 2026-09-07); fin_rev_ben decides for them”" in (
        routing[0] + routing[1]
    )
    assert "may decide now: fin_rev_ana, fin_rev_ben, fin_dir_omar" in out  # away is not barred: her delegate may too


def test_an_untrusted_gate_shows_none_of_it():
    gate = GateState(
        definition=DISCOUNT.gate,
        requester="ae_sam",
        roster={"finance_reviewers": ["fin_rev_ana"]},
        level=0,
        opened_at=T0,
        level_started_at=T0,
    )
    out = render_case(view_of(gate), now=T0)
    assert "evidence digest" not in out and "routing explained" not in out and "identity:" not in out


def test_a_decided_case_says_who_decided_verified_by_whom_in_whose_seat_on_which_evidence():
    decision = AcceptedDecision(
        outcome="approve",
        decided_by="ops_rev_kim",
        reason="checked",
        via="update",
        level=1,
        group="ops_vp_approvers",
        at=T0,
        identity=Identity(
            mode="verified", person="ops_rev_kim", issuer="hitl-local", subject="ops_rev_kim", channel="submit_decision"
        ),
        acting_for="vp_ops_raj",
        delegation="out of office, until 2026-12-08",
        digest=DIGEST,
        directory_version="2026-12-02.1",
    )
    out = render_case(view_of(None, decision), now=T0)
    assert "identity: ops_rev_kim, verified by hitl-local via submit_decision" in out
    assert "delegation: ops_rev_kim for vp_ops_raj (“out of office, until 2026-12-08”)" in out
    assert f"evidence digest: {DIGEST}" in out and "directory: version 2026-12-02.1" in out


def test_an_asserted_decision_and_an_operator_action_say_how_the_case_knew_who_acted():
    decision = AcceptedDecision(
        outcome="reject",
        decided_by="fin_rev_ana",
        reason="no",
        via="signal",
        level=0,
        at=T0,
        identity=Identity(mode="asserted", person="fin_rev_ana", channel="decide signal"),
    )
    operator = OperatorRecord(
        action="escalate",
        operator="fin_cos_raf",
        reason="deal closes today",
        at=T0,
        result="escalated",
        identity=Identity(mode="verified", person="fin_cos_raf", issuer="hitl-local", channel="operator_action"),
    )
    out = render_case(view_of(None, decision, operator_actions=[operator]), now=T0)
    assert "identity: fin_rev_ana, asserted via decide signal" in out
    assert (
        "operator actions: 2026-09-01 09:00:00Z escalate by fin_cos_raf "
        "(fin_cos_raf, verified by hitl-local via operator_action): “deal closes today” -> escalated"
    ) in out


def test_a_delegation_reason_from_the_directory_reads_as_its_words_not_ours():
    hostile = trusted_gate(
        delegations=[
            Delegation(
                delegator="fin_rev_ana",
                delegate="fin_rev_ben",
                starts_at=T0 - timedelta(days=1),
                ends_at=T0 + timedelta(days=6),
                reason="away” and approved by the CFO \u202e",
            )
        ]
    )
    out = render_case(view_of(hostile), now=T0)
    assert "\u202e" not in out and "⟨U+202E⟩" in out
    assert "approved by the CFO" in out and "away” and" not in out  # the inner quote cannot close ours
