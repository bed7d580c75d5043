"""The review gate: who may decide, what a decision looks like, and what happened while waiting.

Pure domain: no Temporal imports. The workflow owns one `GateState`, hands it submissions from
the `decide` signal and the `submit_decision` update, and waits on `decision`. Every check that
decides whether a submission is accepted lives here, so the update validator, the signal handler
and the unit tests apply the same rules.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)

from gates.bounds import (
    MAX_KEPT_ATTEMPTS,
    MAX_KEPT_ERROR_CHARS,
    MAX_KEPT_PAYLOAD_CHARS,
    MAX_REQUEST_INFO_ROUNDS,
)
from gates.cases import PersonId, Text
from gates.durations import exact_duration
from gates.duties import Delegation, Seat, conflict_of, delegation_note, delegators_of, in_force
from gates.policy import GateDefinition
from gates.quorum import Quorum, is_met, still_needed, would_count
from gates.text import storable, storable_text

# A proof is a JWT: a few hundred bytes to a few KB from any provider.
MAX_PROOF_CHARS = 8192
IdentityMode = Literal["verified", "asserted"]


class DecisionOutcome(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_INFO = "request_info"


class Decision(BaseModel):
    """What a reviewer submits, through the UI, `temporal workflow signal`, or the CLI."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    outcome: DecisionOutcome
    reviewer: PersonId
    reason: Text = Field(description="Required: why, in the reviewer's words")
    digest: Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")] | None = Field(
        default=None, description="The evidence digest `hitl show` prints: the decision is bound to what was seen"
    )
    proof: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROOF_CHARS)] | None = Field(
        default=None, description="A signed token naming the reviewer (`hitl token`), required in verified mode", repr=False
    )
    ask: PersonId | None = Field(
        default=None, description="With request_info: whom to ask (default: the requester); refused with any other outcome"
    )

    @model_validator(mode="after")
    def _ask_only_with_request_info(self) -> Decision:
        if self.ask is not None and self.outcome != DecisionOutcome.REQUEST_INFO:
            raise ValueError("ask: only a request_info decision names whom to ask")
        return self


Channel = Literal["update", "signal", "policy", "timeout", "operator"]

# The failure types a sender sees when the case refuses what they sent (workers strip their stack
# traces: the Web UI shows a refused update's failure, trace included).
REFUSAL_TYPES = (
    "DecisionRejected", "OperatorActionRejected", "CaseRefused", "InvalidCase", "CaseStarting", "AnswerRejected"
)


class _OmitsEmptyTrustFields(BaseModel):
    """Leaves the trust patch's fields out of the JSON while they are empty: records of cases
    started before it keep their shape and size (the payload budget of gates/bounds.py)."""

    _trust_fields: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_empty_trust_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._trust_fields:
            if name in data and data[name] in (None, False, [], {}):
                del data[name]
        return data


class Identity(BaseModel):
    """Who acted, as the case established it: verified from a proof, or as the sender asserted it."""

    mode: IdentityMode
    person: str
    issuer: str | None = None
    subject: str | None = Field(default=None, description="The token's `sub`")
    token_id: str | None = Field(default=None, description="The token's `jti`")
    channel: str

    def describe(self) -> str:
        if self.mode == "asserted":
            return f"{self.person} (asserted, via {self.channel})"
        return f"{self.person} (verified by {self.issuer}, via {self.channel})"


class AcceptedDecision(_OmitsEmptyTrustFields):
    _trust_fields = frozenset({"identity", "acting_for", "delegation", "digest", "directory_version"})

    outcome: str  # approve, reject, request_info, or the gate's timeout outcome
    decided_by: str
    reason: str
    via: Channel
    level: int
    group: str | None = None
    at: datetime
    # Since the trust patch: who, proven how, in whose seat, on which evidence and directory.
    identity: Identity | None = None
    acting_for: str | None = Field(default=None, description="The delegator, when a delegate decided")
    delegation: str | None = None
    digest: str | None = None
    directory_version: str | None = None


class RejectedAttempt(BaseModel):
    """A submission that was not accepted; kept so the case state and the trace show it."""

    at: datetime
    via: Channel
    reviewer: str | None
    payload: Any
    error: str

    @classmethod
    def of(cls, *, at: datetime, via: Channel, reviewer: Any, payload: Any, error: str) -> RejectedAttempt:
        """Build one from untrusted input: anyone who can reach the UI can signal anything, so what
        is kept is bounded (a preview of a large payload; the whole signal stays in Temporal's
        history) and storable (no NUL or unpaired surrogate can reach the state or the trace)."""
        if isinstance(payload, dict) and isinstance(payload.get("proof"), str):
            # a proof is a bearer token: the record says one was sent, never what it was
            payload = {**payload, "proof": f"<proof, {len(payload['proof'])} characters, not kept>"}
        text = json.dumps(payload, default=str)  # ASCII-escaped: no raw control or surrogate characters
        if len(text) > MAX_KEPT_PAYLOAD_CHARS:
            payload = {"truncated": True, "chars": len(text), "preview": text[: MAX_KEPT_PAYLOAD_CHARS // 2]}
        else:
            payload = storable(payload)
        who = storable_text(reviewer) if isinstance(reviewer, str) and 0 < len(reviewer) <= 80 else None
        return cls(at=at, via=via, reviewer=who, payload=payload, error=storable_text(error[:MAX_KEPT_ERROR_CHARS]))


def keep_attempt(attempts: list[RejectedAttempt], attempt: RejectedAttempt) -> None:
    """Append, keeping the first MAX_KEPT_ATTEMPTS - 1 and the latest one."""
    if len(attempts) >= MAX_KEPT_ATTEMPTS:
        attempts.pop()
    attempts.append(attempt)


class Escalation(BaseModel):
    from_level: int
    to_level: int
    to_group: str
    at: datetime
    reason: str


class Reminder(BaseModel):
    level: int
    group: str
    at: datetime


class OperatorActionKind(StrEnum):
    ESCALATE = "escalate"  # move to the next level now
    REASSIGN = "reassign"  # give the current level to another reviewer group
    CANCEL = "cancel"  # end the case with outcome `cancelled`
    RETRY = "retry"  # note that an operator reset a failing activity or workflow task
    NOTE = "note"
    DELEGATE = "delegate"  # a one-off delegation for this case: `delegate` decides for `delegator`


class OperatorAction(BaseModel):
    """What an operator does to a case (`hitl ops ...`); every action is kept in the trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: OperatorActionKind
    operator: PersonId
    reason: Text
    group: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    proof: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROOF_CHARS)] | None = Field(
        default=None, description="A signed token naming the operator (`hitl token`), required in verified mode", repr=False
    )
    delegate: PersonId | None = Field(default=None, description="delegate: who decides for the delegator in this case")
    delegator: PersonId | None = Field(default=None, description="delegate: for whom (default: the sender)")


class OperatorRecord(_OmitsEmptyTrustFields):
    _trust_fields = frozenset({"identity"})

    action: str
    operator: str
    reason: str
    group: str | None = None
    at: datetime
    result: str = ""
    identity: Identity | None = None


class OperatorReceipt(BaseModel):
    """What the `operator_action` update returns."""

    result: str
    needs_temporal_cancel: bool = Field(
        default=False, description="A cancel found work in progress: cancel the workflow through Temporal to interrupt it"
    )


class DecisionReceipt(BaseModel):
    """What the update returns to its caller."""

    case_id: str
    accepted: bool
    outcome: str
    reviewer: str
    level: int
    message: str


def validation_problems(err: ValidationError) -> str:
    """`field: message; other.field: message`, one line for any pydantic error (payloads, decisions)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in err.errors())


def format_validation_error(err: ValidationError) -> str:
    return "invalid decision: " + validation_problems(err)


class GateOpening(BaseModel):
    """A round of the gate as it opened: what its audit event says (gates/audit_trail.py)."""

    round: int
    level: int
    group: str
    at: datetime
    digest: str | None = None
    directory_version: str | None = None
    may_decide: list[str] = Field(default_factory=list)


class GateState(_OmitsEmptyTrustFields):
    """One gate round: opened at a level, escalated by timers, closed by a decision."""

    _trust_fields = frozenset(
        {
            "trusted", "identity_mode", "subject", "digest", "directory_version", "delegations", "case_delegations",
            "inactive", "operators",
            "serving", "quorum", "approvals", "rejections", "openings", "proposal",
        }
    )

    definition: GateDefinition
    requester: str
    roster: dict[str, list[str]] = Field(description="Members of each level's group, resolved when the gate opened")
    level: int
    round: int = Field(default=1, description="1 + number of request_info round trips so far")
    opened_at: datetime
    level_started_at: datetime
    open: bool = True
    decision: AcceptedDecision | None = None
    reminders: list[Reminder] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    rejected_attempts: list[RejectedAttempt] = Field(default_factory=list)
    reassigned: dict[int, str] = Field(default_factory=dict, description="Level -> group an operator gave it to")
    attempts_received: int = Field(default=0, description="Rejected attempts ever kept here (the list holds a bounded number)")
    # Since the trust patch (`trusted`): separation of duties beyond the requester, delegation, the
    # directory's version, the operators, and the evidence digest a decision must name. Gates of
    # cases started before it keep their rules, so their histories replay as they ran.
    trusted: bool = False
    identity_mode: IdentityMode | None = None
    subject: str | None = Field(default=None, description="Whose access changes, for access cases")
    digest: str | None = Field(default=None, description="The evidence digest of this round's brief")
    directory_version: str | None = None
    delegations: list[Delegation] = Field(default_factory=list, description="The directory's, as last read")
    case_delegations: list[Delegation] = Field(default_factory=list, description="One-off, for this case (`hitl delegate`)")
    inactive: dict[str, list[str]] = Field(default_factory=dict, description="Group -> inactive members, left out")
    operators: list[str] = Field(default_factory=list, description="People with an operator role for this gate")
    serving: dict[str, list[int]] = Field(default_factory=dict, description="Group -> levels it may serve (reassign)")
    quorum: Quorum | None = Field(default=None, description="Distinct approvals this round needs (a policy rule's)")
    approvals: list[AcceptedDecision] = Field(default_factory=list, description="Approvals so far, toward the quorum")
    rejections: list[AcceptedDecision] = Field(default_factory=list, description="Rejections so far, when one does not end it")
    openings: list[GateOpening] = Field(default_factory=list, description="Each round's opening, for the audit log")
    proposal: bool = Field(default=False, description="The gate decides a policy change: its requester is the proposer")

    # -- who may decide -----------------------------------------------------------------------

    def group_at(self, level: int) -> str:
        return self.reassigned.get(level, self.definition.levels[level].group)

    @property
    def current_group(self) -> str:
        return self.group_at(self.level)

    def eligible_groups(self) -> list[str]:
        """The current level's group and every higher level's, and the groups of a quorum's seats."""
        groups = [self.group_at(index) for index in range(self.level, len(self.definition.levels))]
        seats = self.quorum.seats if self.trusted and self.quorum is not None else []
        return groups + [seat for seat in seats if seat not in groups]

    def reassign(self, group: str, members: list[str]) -> None:
        """An operator gives the current level to another group (its members resolved by the caller)."""
        self.roster[group] = members
        self.reassigned[self.level] = group

    def routing(self) -> list[str]:
        """Why each level from the current one has its group: the policy's, or an operator's reassignment."""
        lines = []
        for index in range(self.level, len(self.definition.levels)):
            level = self.definition.levels[index]
            how = "reassigned by an operator" if index in self.reassigned else "the policy's group for this level"
            lines.append(f"level {index + 1} ({level.title}): {self.group_at(index)}, {how}")
        if self.quorum is not None:
            seats = f"one each from {', '.join(self.quorum.seats)}" if self.quorum.seats else "any eligible people"
            lines.append(f"quorum: {self.quorum.needed} distinct approvers, {seats}")
        return lines

    def reassign_problem(self, group: str, serving: dict[str, list[int]]) -> str | None:
        """Why an operator may not give the current level to `group` (trusted gates), or None: only
        to a group the policy names for this level or a higher one (they may decide here already),
        or one the directory says serves this gate at this level."""
        by_policy = [level.group for level in self.definition.levels[self.level :]]
        if group in by_policy or self.level in serving.get(group, []):
            return None
        allowed = by_policy + [g for g, levels in serving.items() if self.level in levels]
        return (
            f"{group} does not serve level {self.level + 1} ({self.definition.levels[self.level].title}) of the "
            f"{self.definition.name} gate, by the policy or the directory; allowed: {', '.join(dict.fromkeys(allowed))}"
        )

    def note_opening(self, now: datetime) -> None:
        """Keep this round's opening (once the roster it opened with is read)."""
        self.openings.append(
            GateOpening(
                round=self.round,
                level=self.level,
                group=self.current_group,
                at=now,
                digest=self.digest,
                directory_version=self.directory_version,
                may_decide=self.may_decide(now),
            )
        )

    def may_decide(self, now: datetime | None = None) -> list[str]:
        """Who may decide now: the eligible groups' members, less anyone in conflict, plus the
        delegates in force of those members (trusted gates, given `now`)."""
        people: list[str] = []
        for group in self.eligible_groups():
            for person in self.roster.get(group, []):
                if person not in people and self.conflict(person, now) is None:
                    people.append(person)
        if self.trusted and now is not None:
            for d in in_force(self.all_delegations(), now):
                if d.delegate not in people and self.conflict(d.delegate, now) is None and self.seat_of(d.delegate, now):
                    people.append(d.delegate)
        return people

    def conflict(self, person: str, now: datetime | None) -> str | None:
        """Why `person` may not decide or operate this case at all (separation of duties), or None;
        toward a quorum, also who has already given their approval or rejection."""
        if self.trusted and self.quorum is not None:
            for done, what in ((self.approvals, "approved"), (self.rejections, "rejected")):
                if any(d.decided_by == person for d in done):
                    return f"{person} has already {what} this case; its quorum needs distinct people"
        if not self.trusted:
            return f"{person} requested this case and may not decide it" if person == self.requester else None
        at = now if now is not None else self.level_started_at
        delegations = self.all_delegations()
        return conflict_of(
            person, requester=self.requester, subject=self.subject, delegations=delegations, now=at, proposal=self.proposal
        )

    def all_delegations(self) -> list[Delegation]:
        return self.delegations + self.case_delegations

    def excluded(self, now: datetime) -> dict[str, str]:
        """Routing explained: each member of an eligible group who may not decide now, and why."""
        why: dict[str, str] = {}
        for group in self.eligible_groups():
            for person in self.roster.get(group, []):
                if person not in why and (problem := self.conflict(person, now)):
                    why[person] = problem
            for person in self.inactive.get(group, []):
                why.setdefault(person, f"{person} is inactive in the directory")
        for d in in_force(self.all_delegations(), now):
            if d.delegator not in why and self.level_of(d.delegator) is not None:
                why[d.delegator] = f"{d.delegator} is away ({delegation_note(d)}); {d.delegate} decides for them"
        return why

    def level_of(self, reviewer: str) -> int | None:
        """The highest eligible level the reviewer belongs to (decisions record the seat they used)."""
        for index in range(len(self.definition.levels) - 1, self.level - 1, -1):
            if reviewer in self.roster.get(self.group_at(index), []):
                return index
        return None

    def seat_of(self, person: str, now: datetime) -> Seat | None:
        """The highest seat `person` may take now: their own, or (trusted gates) a delegator's."""
        seats: list[Seat] = []
        own = self.level_of(person)
        if own is not None:
            seats.append(Seat(level=own, group=self.group_at(own)))
        if self.trusted and self.quorum is not None:  # a quorum's named groups decide at the level the case is at
            seats += [Seat(level=self.level, group=g) for g in self.quorum.seats if person in self.roster.get(g, [])]
        if self.trusted:
            for d in delegators_of(person, self.all_delegations(), now):
                level = self.level_of(d.delegator)
                if level is not None and self.conflict(d.delegator, now) is None:
                    note = delegation_note(d)
                    seats.append(Seat(level=level, group=self.group_at(level), acting_for=d.delegator, delegation=note))
        return max(seats, key=lambda seat: (seat.level, seat.acting_for is None), default=None)

    # -- deadlines ----------------------------------------------------------------------------

    def remind_at(self) -> datetime:
        return self.level_started_at + self.definition.levels[self.level].remind_after

    def escalate_at(self) -> datetime:
        return self.level_started_at + self.definition.levels[self.level].escalate_after

    def is_last_level(self) -> bool:
        return self.level == len(self.definition.levels) - 1

    # -- submissions --------------------------------------------------------------------------

    def problem_with(self, decision: Decision, now: datetime | None = None) -> str | None:
        """Why this decision cannot be accepted now, or None. Read-only: safe in an update validator.

        Trusted gates (give `now`) also apply separation of duties, delegation and the evidence digest;
        who the reviewer is (their proof) is established before, by the workflow."""
        if not self.open:
            if self.decision is not None:
                d = self.decision
                return f"case already decided: {d.outcome} by {d.decided_by} at {d.at.isoformat(timespec='seconds')}"
            return "case is not waiting for a decision"
        if decision.outcome == DecisionOutcome.REQUEST_INFO and self.round > MAX_REQUEST_INFO_ROUNDS:
            return (
                f"this case has been sent back for information {MAX_REQUEST_INFO_ROUNDS} times; "
                "approve or reject it (or an operator cancels it)"
            )
        if problem := self.conflict(decision.reviewer, now):
            return problem
        seated = self.seat_of(decision.reviewer, now) if self.trusted and now is not None else self.level_of(decision.reviewer)
        if seated is None:
            groups = ", ".join(self.eligible_groups())
            return (
                f"{decision.reviewer} may not decide at level {self.level + 1} "
                f"({self.definition.levels[self.level].title}); allowed groups: {groups}"
            )
        if self.trusted and self.quorum is not None and (problem := self._quorum_problem(decision)):
            return problem
        if self.trusted and self.digest is not None:
            if decision.digest is None and self.identity_mode == "verified":
                return f"a decision must name the evidence digest it was made on ({self.digest}): hitl show CASE prints it"
            if decision.digest is not None and decision.digest != self.digest:
                return "the evidence changed since you looked: hitl show CASE"
        return None

    # -- quorum ---------------------------------------------------------------------------------

    def approvers(self) -> list[str]:
        return [a.decided_by for a in self.approvals]

    def _quorum_problem(self, decision: Decision) -> str | None:
        assert self.quorum is not None  # who already approved or rejected is refused by `conflict`
        if decision.outcome == DecisionOutcome.APPROVE and not would_count(
            self.quorum, self.approvers(), decision.reviewer, self.roster
        ):
            needed = ", ".join(self.still_needed())
            return f"{decision.reviewer}'s approval fills no open seat of this case's quorum; still needed: {needed}"
        return None

    def still_needed(self) -> list[str]:
        return still_needed(self.quorum, self.approvers(), self.roster) if self.quorum is not None else []

    def accept(self, decision: Decision, via: Channel, now: datetime, identity: Identity | None = None) -> AcceptedDecision:
        """Take this decision. Call only after `problem_with` returned None. It closes the gate, unless
        the gate collects a quorum: then an approval (or a rejection that does not end the case) is
        kept and the gate stays open until the quorum is met."""
        seat = self.seat_of(decision.reviewer, now) if self.trusted else None
        level = seat.level if seat is not None else self.level_of(decision.reviewer)
        assert level is not None and self.open
        self.decision = AcceptedDecision(
            outcome=decision.outcome.value,
            decided_by=decision.reviewer,
            reason=decision.reason,
            via=via,
            level=level,
            group=self.group_at(level),
            at=now,
            identity=identity,
            acting_for=seat.acting_for if seat else None,
            delegation=seat.delegation if seat else None,
            digest=self.digest if self.trusted else None,
            directory_version=self.directory_version,
        )
        if self.trusted and self.quorum is not None:
            return self._toward_quorum(self.decision)
        self.open = False
        return self.decision

    def _toward_quorum(self, taken: AcceptedDecision) -> AcceptedDecision:
        """Keep an approval or a rejection; close the gate when the quorum is met, when enough
        rejections end the case, or on request_info (the next round starts over)."""
        assert self.quorum is not None
        if taken.outcome == DecisionOutcome.APPROVE.value:
            self.approvals.append(taken)
            if not is_met(self.quorum, self.approvers(), self.roster):
                self.decision = None
                return taken
            # the approval that met the quorum closes the gate; the trace keeps every approval with its reason
        elif taken.outcome == DecisionOutcome.REJECT.value:
            self.rejections.append(taken)
            if len(self.rejections) < self.quorum.rejections_to_end:
                self.decision = None
                return taken
        self.open = False
        assert self.decision is not None
        return self.decision

    def close_by_operator(self, outcome: str, operator: str, reason: str, now: datetime) -> AcceptedDecision:
        """An operator ends the wait (cancel); recorded like any decision."""
        assert self.open
        self.decision = AcceptedDecision(
            outcome=outcome,
            decided_by=f"operator:{operator}",
            reason=reason,
            via="operator",
            level=self.level,
            group=self.current_group,
            at=now,
        )
        self.open = False
        return self.decision

    def submit_raw(self, payload: Any, via: Channel, now: datetime) -> AcceptedDecision | None:
        """The signal path of untrusted gates: validate anything, never raise; a bad submission
        becomes a rejected attempt."""
        reviewer = payload.get("reviewer") if isinstance(payload, dict) else None
        try:
            decision = Decision.model_validate(payload)
        except ValidationError as err:
            self.reject(payload, via, now, format_validation_error(err), reviewer)
            return None
        return self.submit(decision, payload, via, now)

    def submit(
        self, decision: Decision, payload: Any, via: Channel, now: datetime, identity: Identity | None = None
    ) -> AcceptedDecision | None:
        """A well-formed decision from a sender whose identity the workflow established: accepted, or kept as refused."""
        problem = self.problem_with(decision, now if self.trusted else None)
        if problem:
            self.reject(payload, via, now, problem, decision.reviewer)
            return None
        return self.accept(decision, via, now, identity)

    def reject(self, payload: Any, via: Channel, now: datetime, error: str, reviewer: str | None) -> None:
        keep_attempt(self.rejected_attempts, RejectedAttempt.of(at=now, via=via, reviewer=reviewer, payload=payload, error=error))
        self.attempts_received += 1

    # -- timers -------------------------------------------------------------------------------

    def record_reminder(self, now: datetime) -> Reminder:
        reminder = Reminder(level=self.level, group=self.current_group, at=now)
        self.reminders.append(reminder)
        return reminder

    def escalate(self, now: datetime, reason: str) -> Escalation:
        assert not self.is_last_level()
        escalation = Escalation(
            from_level=self.level,
            to_level=self.level + 1,
            to_group=self.group_at(self.level + 1),
            at=now,
            reason=reason,
        )
        self.level += 1
        self.level_started_at = now
        self.escalations.append(escalation)
        if self.quorum is not None and not self.quorum.keep_on_escalation:
            self.approvals, self.rejections = [], []  # the new level's reviewers start the quorum over
        return escalation

    def time_out(self, now: datetime) -> AcceptedDecision:
        """The last level's deadline passed: the policy's timeout outcome is recorded like any decision."""
        assert self.open, "a decided gate cannot time out"
        self.decision = AcceptedDecision(
            outcome=self.definition.timeout_outcome,
            decided_by=f"timeout:{self.definition.name}",
            reason=(
                f"no decision within {exact_duration(self.definition.levels[self.level].escalate_after)} at the last level "
                f"({self.definition.levels[self.level].title}); policy outcome on timeout is {self.definition.timeout_outcome}"
            ),
            via="timeout",
            level=self.level,
            group=self.current_group,
            at=now,
        )
        self.open = False
        return self.decision
