"""Who is acting, proven inside the case workflow (since TRUST_PATCH).

Workflow code. A decision or an operator action names a person; in `verified` mode it carries a
proof (a signed token) that the workflow verifies against the issuers' public keys, deterministically,
with the workflow's clock (gates/identity.py). The keys come from the `resolve_trust` local activity,
so they are recorded in history and a replay verifies against the same keys: at each gate opening,
when a sender acts before any gate opened (a case decided by policy never fetches them), and again
when a token names a key id the case has not seen (key rotation), at most once per
KEY_REFRESH_INTERVAL so that junk tokens cannot make a case fetch keys without end.

The directory is read again (`load_reviewer_roster`) when a sender whose identity holds acts, so a
person removed from a group or made inactive after the gate opened can no longer decide, and an
operator's role is the directory's of now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import count

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.directory import DirectoryActivities
    from activities.identity import IdentityActivities
    from gates.case_file import CaseFile
    from gates.gate import GateState, Identity
    from gates.identity import ProofRefused, TrustRequest, TrustSnapshot, how_to_get_proof, verify_proof
    from gates.messages import Roster, RosterRequest
    from workflows.activity_calls import LOCAL_ATTEMPT_TIMEOUT, LOCAL_RETRY, local_read

TRUST_PATCH = "verified-identity-separation-of-duties-evidence-digest"
KEY_REFRESH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class KeysNeeded:
    """The case must fetch the issuers' keys before it can judge a proof: none yet, or this key id is new."""

    key_id: str | None


class DirectoryUnavailable(Exception):
    """The directory or the issuer keys could not be read while a sender waited; the message says so."""


class CaseTrust:
    """The case's issuer keys and its reads of the directory, for the handlers and the loop."""

    def __init__(self, case: CaseFile, *, lean: bool) -> None:
        self._case, self._lean = case, lean
        self._reads = count(1)

    async def resolve(self) -> TrustSnapshot:
        """The keys at each gate opening (a waiting case judges with the keys of its round). The
        first read, when no keys are known yet, is retried until it succeeds (the case waits for
        it, `hitl ops stuck` shows it); later, when the issuer is unreachable, the case keeps the
        keys it has."""
        activity_id, summary = f"resolve-trust-{next(self._reads)}", "resolve the identity issuers' public keys"
        if self._case.trust is None:
            snapshot = await local_read(
                IdentityActivities.resolve_trust, TrustRequest(), lean=self._lean, activity_id=activity_id, summary=summary
            )
        else:
            try:
                snapshot = await self._read_keys(TrustRequest(), activity_id=activity_id, summary=summary)
            except DirectoryUnavailable as unavailable:
                workflow.logger.warning("keeping the issuers' keys resolved before: %s", unavailable)
                return self._case.trust
        self._case.trust = snapshot
        return snapshot

    def adopt(self, snapshot: TrustSnapshot) -> None:
        """Keys read with the gate's roster (COMBINED_PATCH): what `resolve` would have read."""
        self._case.trust = snapshot

    def identity(self, person: str, proof: str | None, *, channel: str) -> Identity | KeysNeeded:
        """The sender's identity if their proof holds now, or the keys to fetch before it can be
        judged (none known yet: a sender before the gate opened; or a key id not seen yet); raises
        ProofRefused with the reason otherwise. Read-only: for validators."""
        trust = self._case.trust
        if trust is None:
            return KeysNeeded(key_id=None)
        if trust.mode == "asserted":
            return Identity(mode="asserted", person=person, channel=channel)
        if proof is None:
            raise ProofRefused(f"{channel} needs a proof that you are {person}: {how_to_get_proof(trust.issuers, person)}")
        try:
            verified = verify_proof(proof, trust, person=person, now=workflow.now())
        except ProofRefused as refused:
            if refused.unknown_key_id is not None and self._may_refresh():
                return KeysNeeded(key_id=refused.unknown_key_id)
            raise
        return Identity(
            mode="verified",
            person=verified.person,
            issuer=verified.issuer,
            subject=verified.subject,
            token_id=verified.token_id,
            channel=channel,
        )

    async def verified(self, person: str, proof: str | None, *, channel: str) -> Identity:
        """`identity`, fetching the issuers' keys first when none are known yet or the token names a key id not seen."""
        found = self.identity(person, proof, channel=channel)
        if isinstance(found, Identity):
            return found
        if found.key_id is None:
            request, why = TrustRequest(), "resolve the identity issuers' public keys"
        else:
            self._case.keys_refreshed_at = workflow.now()
            request = TrustRequest(refresh=True, unknown_key_id=found.key_id)
            why = "fetch the issuers' keys again (a proof names a key id not seen yet)"
        self._case.trust = await self._read_keys(request, activity_id=f"refresh-trust-{next(self._reads)}", summary=why)
        verified = self.identity(person, proof, channel=channel)  # an unknown key id now is refused: fetched once
        assert isinstance(verified, Identity)
        return verified

    async def _read_keys(self, request: TrustRequest, *, activity_id: str, summary: str) -> TrustSnapshot:
        """The keys, for a sender who is waiting: DirectoryUnavailable (not retried) when they cannot be fetched."""
        try:
            return await workflow.execute_local_activity_method(
                IdentityActivities.resolve_trust,
                request,
                activity_id=activity_id,
                start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=LOCAL_RETRY,
                summary=summary,
            )
        except FailureError as err:
            raise DirectoryUnavailable(f"the issuers' keys could not be fetched ({err}); try again in a moment") from None

    def _may_refresh(self) -> bool:
        last = self._case.keys_refreshed_at
        return last is None or workflow.now() - last >= KEY_REFRESH_INTERVAL

    async def roster(self, gate_name: str, groups: list[str], people: list[str]) -> Roster:
        """The directory as it is now, for a sender who is waiting: refused (not retried) when it cannot be read."""
        try:
            return await workflow.execute_local_activity_method(
                DirectoryActivities.load_reviewer_roster,
                RosterRequest(groups=groups, people=people, gate=gate_name),
                activity_id=f"reread-directory-{next(self._reads)}",
                start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=LOCAL_RETRY,
                summary=f"who sits in {', '.join(groups) or gate_name} now",
            )
        except FailureError as err:
            raise DirectoryUnavailable(f"the directory could not be read ({err}); try again in a moment") from None

    async def refresh_gate(self, gate: GateState) -> None:
        """Re-read the gate's groups (the policy's, any an operator reassigned to, a quorum's) into the gate.

        When the directory cannot be read (PostgreSQL down), the gate keeps the roster it last read,
        and the decision records that directory version: an outage must not stop decisions."""
        seats = gate.quorum.seats if gate.quorum is not None else []
        groups = list(dict.fromkeys([level.group for level in gate.definition.levels] + list(gate.reassigned.values()) + seats))
        try:
            apply_roster(gate, await self.roster(gate.definition.name, groups, _involved(gate)))
        except DirectoryUnavailable as unavailable:
            workflow.logger.warning("deciding on the roster read before: %s", unavailable)


def apply_roster(gate: GateState, roster: Roster) -> None:
    """The directory's answer, as the gate keeps it (members, delegations, operators, routing)."""
    gate.roster = {**gate.roster, **roster.members}
    gate.directory_version = roster.directory_version
    gate.delegations = roster.delegations
    gate.inactive = roster.inactive
    gate.operators = roster.operators
    gate.serving = roster.serving


def _involved(gate: GateState) -> list[str]:
    return [person for person in (gate.requester, gate.subject) if person]
