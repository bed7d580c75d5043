"""Who decided is proven, on every path (verified identity mode, the fast tier).

The fake world trusts a real local issuer (an Ed25519 key in the test's temporary state directory);
the workflow verifies each proof itself, with its own clock, against the keys it resolved. Every
refusal leaves the case waiting and healthy, and the trace says who, verified by whom, on which digest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from activities.identity import LocalIssuer
from demo.examples import example
from gates.cases import CaseKind
from gates.duties import Delegation
from gates.gate import Decision, OperatorAction
from gates.identity import TrustSnapshot
from gates.quorum import Quorum
from tests.case_helpers import case_view, wait_until_waiting
from tests.helpers import assert_eventually
from tests.unit.factories import policy
from tests.unit.workflow.fakes import FakeWorld
from tests.unit.workflow.harness import finished, skip_time


class ClockedIssuer(LocalIssuer):
    """The local issuer, minting on the test server's clock (it skips ahead while cases wait)."""

    clock: datetime
    env: WorkflowEnvironment

    async def sync(self) -> None:
        self.clock = await self.env.get_current_time()

    def mint(self, person: str, *, ttl: timedelta = timedelta(days=7), audience=None, now=None) -> str:
        return super().mint(person, ttl=ttl, audience=audience, now=now or self.clock)


@pytest_asyncio.fixture
async def issuer(tmp_path, workflow_env) -> ClockedIssuer:
    minting = ClockedIssuer(tmp_path / "state")
    minting.env = workflow_env
    await minting.sync()
    return minting


@pytest.fixture
def verified(world: FakeWorld, issuer: ClockedIssuer) -> ClockedIssuer:
    """The world in verified mode, trusting `issuer`."""
    world.trust = TrustSnapshot(mode="verified", issuers=[issuer.issuer_keys(fetched_at=datetime.now(UTC))])
    world.directory_version = "2026-12-02.1"
    world.operators = ["ops_cos_ivy", "sec_cos_ada", "fin_cos_raf"]
    return issuer


async def refusal(handle: WorkflowHandle, name: str, payload) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(name, payload)
    cause = refused.value.cause
    assert not getattr(cause, "failure", None) or not cause.failure.stack_trace, "a refusal carries no stack trace"
    return str(cause)


async def waiting(handle: WorkflowHandle, issuer: ClockedIssuer) -> str:
    """The case's digest, once it waits at its gate (and the issuer's clock set to the server's)."""
    view = await wait_until_waiting(handle)
    await issuer.sync()
    assert view.gate.digest and view.gate.digest.startswith("sha256:") and view.gate.identity == "verified"
    return view.gate.digest


def decision(issuer: LocalIssuer, reviewer: str, digest: str | None, *, as_person: str | None = None, **changes) -> dict:
    proof = issuer.mint(as_person or reviewer, ttl=timedelta(hours=2))
    fields = {"outcome": "approve", "reviewer": reviewer, "reason": "checked", "digest": digest, "proof": proof} | changes
    return Decision(**fields).model_dump(mode="json", exclude_none=True)


async def test_a_decision_needs_its_reviewers_own_valid_proof_and_the_digest_then_the_trace_says_who_verified_by_whom(
    world, verified, start
):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    # no proof: anyone can type vp_ops_raj
    message = await refusal(handle, "submit_decision", {"outcome": "approve", "reviewer": "vp_ops_raj", "reason": "ok"})
    assert "needs a proof that you are vp_ops_raj" in message and "hitl token" in message
    # someone else's proof
    message = await refusal(handle, "submit_decision", decision(verified, "vp_ops_raj", digest, as_person="buyer_pat"))
    assert "this proof is buyer_pat's, not vp_ops_raj's" in message
    # expired (the workflow's clock decides)
    old = verified.mint("vp_ops_raj", ttl=timedelta(minutes=5), now=verified.clock - timedelta(hours=1))
    expired = {"outcome": "approve", "reviewer": "vp_ops_raj", "reason": "ok", "digest": digest, "proof": old}
    assert "proof expired at" in await refusal(handle, "submit_decision", expired)
    # forged: signed by another issuer's key
    forger = LocalIssuer(verified.path.parent.parent.parent / "forger")
    forged = {**expired, "proof": forger.mint("vp_ops_raj", now=verified.clock)}
    # an unknown key id: the case fetches the keys again, and still does not find it
    assert "which issuer 'hitl-local' does not list" in await refusal(handle, "submit_decision", forged)
    # no digest, then a stale one
    assert "must name the evidence digest" in await refusal(handle, "submit_decision", decision(verified, "vp_ops_raj", None))
    stale = decision(verified, "vp_ops_raj", "sha256:" + "0" * 64)
    assert "the evidence changed since you looked: hitl show CASE" in await refusal(handle, "submit_decision", stale)
    assert (await case_view(handle)).state == "waiting"

    receipt = await handle.execute_update("submit_decision", decision(verified, "vp_ops_raj", digest))
    assert receipt["accepted"] is True
    await finished(handle)
    trace = world.trace(handle)
    assert trace.decided_by == "vp_ops_raj" and trace.identity == "verified"
    assert trace.decided_identity.issuer == "hitl-local" and trace.decided_identity.subject == "vp_ops_raj"
    assert trace.decided_identity.token_id and trace.decided_identity.channel == "submit_decision"
    assert trace.evidence_digest == digest and trace.directory_version == "2026-12-02.1"
    assert all("proof" not in str(a.payload) or "not kept" in str(a.payload) for a in trace.rejected_attempts)


async def test_a_forged_proof_is_refused_as_forged(world, verified, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    forger = LocalIssuer(verified.path.parent.parent.parent / "forger")
    header_kid = verified.kid
    forged = forger.mint("vp_ops_raj", now=verified.clock)
    # same kid as the trusted key, other key: the signature does not verify
    import jwt

    claims = jwt.decode(forged, options={"verify_signature": False})
    forged = jwt.encode(claims, forger._private_key(), algorithm="EdDSA", headers={"kid": header_kid})
    payload = {"outcome": "approve", "reviewer": "vp_ops_raj", "reason": "ok", "digest": digest, "proof": forged}
    assert "does not verify" in await refusal(handle, "submit_decision", payload)


async def test_the_signal_path_verifies_too_and_keeps_a_refused_attempt_without_its_token(world, verified, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    await handle.signal("decide", {"outcome": "approve", "reviewer": "vp_ops_raj", "reason": "no proof"})
    await handle.signal("decide", decision(verified, "vp_ops_raj", digest, as_person="ops_rev_kim"))

    async def two_refused():
        attempts = (await case_view(handle)).rejected_attempts
        assert len(attempts) == 2
        return attempts

    attempts = await assert_eventually(two_refused)
    assert "needs a proof" in attempts[0].error and "this proof is ops_rev_kim's" in attempts[1].error
    assert "eyJ" not in str(attempts[1].payload), "the token itself is not kept"
    await handle.signal("decide", decision(verified, "vp_ops_raj", digest))
    result = await finished(handle)
    assert result.decided_by == "vp_ops_raj" and result.decided_via == "signal"
    assert world.trace(handle).decided_identity.mode == "verified"


async def test_the_subject_of_an_access_case_may_not_decide_it_on_any_path(world, verified, start):
    handle = await start(example(CaseKind.ACCESS, human=True, subject_user="sec_rev_eli"))
    digest = await waiting(handle, verified)
    view = await case_view(handle)
    assert "sec_rev_eli" not in view.gate.may_decide and "subject of this case" in view.gate.excluded["sec_rev_eli"]
    message = await refusal(handle, "submit_decision", decision(verified, "sec_rev_eli", digest))
    assert "sec_rev_eli is the subject of this case" in message
    await handle.signal("decide", decision(verified, "sec_rev_eli", digest))

    async def refused_signal():
        attempts = (await case_view(handle)).rejected_attempts
        assert attempts and "is the subject of this case" in attempts[-1].error

    await assert_eventually(refused_signal)
    await handle.execute_update("submit_decision", decision(verified, "sec_rev_zoe", digest))
    assert (await finished(handle)).decided_by == "sec_rev_zoe"


async def test_a_delegate_decides_for_their_delegator_and_a_delegate_of_the_requester_may_not(world, verified, start):
    now = verified.clock
    world.delegations = [
        # the requester (buyer_pat) is away and left vp_proc_dana in charge of their work
        Delegation(
            delegator="buyer_pat",
            delegate="vp_proc_dana",
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=60),
            reason="out of office",
        ),
        # vp_ops_raj is away: coo_mia (not an ops VP approver herself at level 2) decides for him
        Delegation(
            delegator="vp_ops_raj",
            delegate="ops_rev_kim",
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=60),
            reason="out of office",
        ),
    ]
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    view = await case_view(handle)
    assert "vp_proc_dana" not in view.gate.may_decide and "delegate of buyer_pat" in view.gate.excluded["vp_proc_dana"]
    message = await refusal(handle, "submit_decision", decision(verified, "vp_proc_dana", digest))
    assert "vp_proc_dana is a delegate of buyer_pat, the requester of this case" in message
    await handle.execute_update("submit_decision", decision(verified, "ops_rev_kim", digest))
    await finished(handle)
    trace = world.trace(handle)
    assert trace.decided_by == "ops_rev_kim" and trace.acting_for == "vp_ops_raj"
    assert trace.delegation.startswith("out of office, until ")
    assert trace.decided_level == 1  # the delegator's seat (ops VP approvers), not the delegate's own


async def test_a_reviewer_removed_from_the_group_after_the_gate_opened_can_no_longer_decide(world, verified, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    world.roster["ops_vp_approvers"] = ["vp_proc_dana"]  # the directory changes mid-wait
    message = await refusal(handle, "submit_decision", decision(verified, "vp_ops_raj", digest))
    assert "vp_ops_raj may not decide" in message
    assert (await case_view(handle)).state == "waiting"
    await handle.execute_update("submit_decision", decision(verified, "vp_proc_dana", digest))
    assert (await finished(handle)).decided_by == "vp_proc_dana"


async def test_operators_need_a_proof_a_role_and_no_stake_in_the_case(world, verified, start):
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await waiting(handle, verified)

    def action(operator: str, *, as_person: str | None = None, **changes) -> dict:
        proof = verified.mint(as_person or operator)
        fields = {"action": "escalate", "operator": operator, "reason": "deal closes today", "proof": proof} | changes
        return OperatorAction(**fields).model_dump(mode="json", exclude_none=True)

    assert "needs a proof" in await refusal(
        handle, "operator_action", {"action": "note", "operator": "fin_cos_raf", "reason": "x"}
    )
    assert "ae_sam requested this case and may not operate it" in await refusal(handle, "operator_action", action("ae_sam"))
    assert "fin_rev_ben has no operator role" in await refusal(handle, "operator_action", action("fin_rev_ben"))
    # the procurement reviewers do not serve the finance gate: the requester's trick of the issue
    reassign = action("fin_cos_raf", action="reassign", group="ops_reviewers")
    assert "ops_reviewers does not serve level 1" in await refusal(handle, "operator_action", reassign)
    receipt = await handle.execute_update("operator_action", action("fin_cos_raf"))
    assert receipt["result"].startswith("escalated from level 1 to level 2")
    world.operators = []  # the role is taken away: the next action is refused
    assert "fin_cos_raf has no operator role" in await refusal(handle, "operator_action", action("fin_cos_raf", action="note"))
    await handle.execute_update("submit_decision", decision(verified, "fin_dir_omar", (await case_view(handle)).gate.digest))
    await finished(handle)
    trace = world.trace(handle)
    assert [(a.action, a.identity.mode, a.identity.person) for a in trace.operator_actions] == [
        ("escalate", "verified", "fin_cos_raf")
    ]


async def test_a_proof_signed_with_a_rotated_key_is_accepted_once_the_case_fetches_the_keys_again(
    world, verified, start, tmp_path
):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    rotated = ClockedIssuer(tmp_path / "rotated")  # the issuer's new key, published after the gate opened
    rotated.env = verified.env
    await rotated.sync()
    world.trust = TrustSnapshot(
        mode="verified",
        issuers=[rotated.issuer_keys(fetched_at=datetime.now(UTC))],
    )
    await handle.execute_update("submit_decision", decision(rotated, "vp_ops_raj", digest))
    assert (await finished(handle)).decided_by == "vp_ops_raj"
    assert world.calls.count("resolve_trust") == 2  # when the gate opened, and again for the unknown key id


def with_quorum(kind: CaseKind, rule_id: str, quorum: Quorum):
    """The bundled policy of `kind`, with `quorum` on one of its rules."""
    bundled = policy(kind)
    rules = [rule.model_copy(update={"quorum": quorum}) if rule.id == rule_id else rule for rule in bundled.rules]
    return bundled.model_copy(update={"rules": rules})


async def test_a_quorum_case_needs_its_distinct_approvers_and_the_gate_says_who_is_still_needed(world, verified, start):
    # a discount above 25% needs a Finance director and the Deal Desk (a finance reviewer)
    world.policies[CaseKind.RENEWAL] = with_quorum(
        CaseKind.RENEWAL, "DISC-3", Quorum(seats=["finance_directors", "finance_reviewers"])
    )
    world.precedents = []  # no relief: the gate opens at the directors' level
    handle = await start(example(CaseKind.RENEWAL, human=True))
    digest = await waiting(handle, verified)
    gate = (await case_view(handle)).gate
    assert gate.still_needed == ["a member of finance_directors", "a member of finance_reviewers"]
    assert gate.routing == [
        "level 2 (Finance director): finance_directors, the policy's group for this level",
        "level 3 (CFO): cfo_office, the policy's group for this level",
        "quorum: 2 distinct approvers, one each from finance_directors, finance_reviewers",
    ]

    receipt = await handle.execute_update("submit_decision", decision(verified, "fin_dir_omar", digest))
    assert "still needed: a member of finance_reviewers" in receipt["message"]
    gate = (await case_view(handle)).gate
    assert gate.approvals == ["fin_dir_omar"] and gate.still_needed == ["a member of finance_reviewers"]
    # the same person cannot fill two seats; another director fills no open seat
    assert "already approved" in await refusal(handle, "submit_decision", decision(verified, "fin_dir_omar", digest))
    assert "fills no open seat" in await refusal(handle, "submit_decision", decision(verified, "fin_dir_lina", digest))

    await handle.execute_update("submit_decision", decision(verified, "fin_rev_ben", digest))
    result = await finished(handle)
    assert result.outcome == "approve" and result.decided_by == "fin_rev_ben"
    trace = world.trace(handle)
    assert [a.decided_by for a in trace.approvals] == ["fin_dir_omar", "fin_rev_ben"]
    assert all(a.identity.mode == "verified" for a in trace.approvals)


async def test_one_rejection_ends_a_quorum_case(world, verified, start):
    world.policies[CaseKind.RENEWAL] = with_quorum(CaseKind.RENEWAL, "DISC-2", Quorum(approvals=2))
    handle = await start(example(CaseKind.RENEWAL, human=True))
    digest = await waiting(handle, verified)
    await handle.execute_update("submit_decision", decision(verified, "fin_rev_ana", digest))
    await handle.execute_update("submit_decision", decision(verified, "fin_rev_ben", digest, outcome="reject"))
    result = await finished(handle)
    assert result.outcome == "reject" and result.decided_by == "fin_rev_ben"
    assert [a.decided_by for a in world.trace(handle).approvals] == ["fin_rev_ana"]


async def test_a_one_off_delegation_lets_the_delegate_decide_for_this_case_and_the_trace_names_both(world, verified, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)

    def delegate(sender: str, **fields) -> dict:
        payload = {"action": "delegate", "operator": sender, "reason": "at the offsite all week", "proof": verified.mint(sender)}
        return OperatorAction(**(payload | fields)).model_dump(mode="json", exclude_none=True)

    # the delegator needs a seat; a delegate of the requester's side is refused; nobody else may delegate for them
    no_seat = delegate("ops_rev_tom", delegate="ops_rev_kim")
    assert "has no seat at this gate" in await refusal(handle, "operator_action", no_seat)
    to_requester = delegate("vp_ops_raj", delegate="buyer_pat")
    assert "buyer_pat requested this case" in await refusal(handle, "operator_action", to_requester)
    assert "ops_rev_tom has no operator role" in await refusal(
        handle, "operator_action", delegate("ops_rev_tom", delegate="ops_rev_kim", delegator="vp_ops_raj")
    )
    receipt = await handle.execute_update("operator_action", delegate("vp_ops_raj", delegate="ops_rev_kim"))
    assert receipt["result"] == "ops_rev_kim may decide for vp_ops_raj in this case"
    assert "ops_rev_kim" in (await case_view(handle)).gate.may_decide
    await handle.execute_update("submit_decision", decision(verified, "ops_rev_kim", digest))
    await finished(handle)
    trace = world.trace(handle)
    assert trace.decided_by == "ops_rev_kim" and trace.acting_for == "vp_ops_raj"
    assert trace.delegation == "delegated by vp_ops_raj, for this case only"


async def test_a_reviewer_added_to_the_group_mid_wait_may_decide_after_the_next_reminder(world, verified, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    digest = await waiting(handle, verified)
    assert "ops_rev_tom may not decide" in await refusal(handle, "submit_decision", decision(verified, "ops_rev_tom", digest))
    world.roster["ops_vp_approvers"] = ["vp_ops_raj", "vp_proc_dana", "ops_rev_tom"]  # the directory changes

    async def reminded():
        view = await case_view(handle)
        assert view.gate.reminders and "ops_rev_tom" in view.gate.may_decide

    await workflow_env_sleep(verified, timedelta(hours=9))  # past the level's 8 h reminder
    await assert_eventually(reminded)
    await verified.sync()
    await handle.execute_update("submit_decision", decision(verified, "ops_rev_tom", digest))
    assert (await finished(handle)).decided_by == "ops_rev_tom"


async def workflow_env_sleep(issuer: ClockedIssuer, duration: timedelta) -> None:
    await skip_time(issuer.env, duration)


async def test_a_case_decided_by_policy_is_not_held_up_by_issuer_keys_it_never_needs(world, verified, start):
    """The first round reads the keys with its precedents, before it knows whether a gate opens; when
    they cannot be fetched, a case its policy decides goes ahead all the same."""
    world.issuer_down = "the identity provider is unreachable"
    handle = await start(example(CaseKind.RENEWAL, human=False))
    assert (await finished(handle)).decided_via == "policy"
    assert "resolve_trust" in world.calls


async def test_an_operator_acting_while_the_case_gathers_is_verified_against_keys_fetched_then(world, verified, start):
    world.stalled = {"crm"}  # gathering waits on the CRM: no gate has opened, no keys fetched yet
    handle = await start(example(CaseKind.RENEWAL, human=True))

    async def gathering():
        assert (await case_view(handle)).state == "gathering"

    await assert_eventually(gathering)
    unproven = {"action": "note", "operator": "fin_cos_raf", "reason": "CRM is down, on it"}
    assert "needs a proof that you are fin_cos_raf" in await refusal(handle, "operator_action", unproven)
    await verified.sync()
    note = OperatorAction(action="note", operator="fin_cos_raf", reason="CRM is down, on it", proof=verified.mint("fin_cos_raf"))
    receipt = await handle.execute_update("operator_action", note.model_dump(mode="json", exclude_none=True))
    assert receipt["result"] == "noted"
    assert "ae_sam requested this case and may not operate it" in await refusal(
        handle, "operator_action", {**unproven, "operator": "ae_sam", "proof": verified.mint("ae_sam")}
    )
