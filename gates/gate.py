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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gates.bounds import (
    MAX_KEPT_ATTEMPTS,
    MAX_KEPT_ERROR_CHARS,
    MAX_KEPT_PAYLOAD_CHARS,
    MAX_REQUEST_INFO_ROUNDS,
)
from gates.cases import PersonId, Text
from gates.durations import exact_duration
from gates.policy import GateDefinition
from gates.text import storable, storable_text


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


Channel = Literal["update", "signal", "policy", "timeout", "operator"]

# The failure types a sender sees when the case refuses what they sent (workers strip their stack
# traces: the Web UI shows a refused update's failure, trace included).
REFUSAL_TYPES = ("DecisionRejected", "OperatorActionRejected", "CaseRefused", "InvalidCase", "CaseStarting")


class AcceptedDecision(BaseModel):
    outcome: str  # approve, reject, request_info, or the gate's timeout outcome
    decided_by: str
    reason: str
    via: Channel
    level: int
    group: str | None = None
    at: datetime


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


class OperatorAction(BaseModel):
    """What an operator does to a case (`hitl ops ...`); every action is kept in the trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    action: OperatorActionKind
    operator: PersonId
    reason: Text
    group: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")] | None = None


class OperatorRecord(BaseModel):
    action: str
    operator: str
    reason: str
    group: str | None = None
    at: datetime
    result: str = ""


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


class GateState(BaseModel):
    """One gate round: opened at a level, escalated by timers, closed by a decision."""

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

    # -- who may decide -----------------------------------------------------------------------

    def group_at(self, level: int) -> str:
        return self.reassigned.get(level, self.definition.levels[level].group)

    @property
    def current_group(self) -> str:
        return self.group_at(self.level)

    def eligible_groups(self) -> list[str]:
        """The current level's group and every higher level's."""
        return [self.group_at(index) for index in range(self.level, len(self.definition.levels))]

    def reassign(self, group: str, members: list[str]) -> None:
        """An operator gives the current level to another group (its members resolved by the caller)."""
        self.roster[group] = members
        self.reassigned[self.level] = group

    def may_decide(self) -> list[str]:
        people: list[str] = []
        for group in self.eligible_groups():
            for person in self.roster.get(group, []):
                if person not in people and person != self.requester:
                    people.append(person)
        return people

    def level_of(self, reviewer: str) -> int | None:
        """The highest eligible level the reviewer belongs to (decisions record the seat they used)."""
        for index in range(len(self.definition.levels) - 1, self.level - 1, -1):
            if reviewer in self.roster.get(self.group_at(index), []):
                return index
        return None

    # -- deadlines ----------------------------------------------------------------------------

    def remind_at(self) -> datetime:
        return self.level_started_at + self.definition.levels[self.level].remind_after

    def escalate_at(self) -> datetime:
        return self.level_started_at + self.definition.levels[self.level].escalate_after

    def is_last_level(self) -> bool:
        return self.level == len(self.definition.levels) - 1

    # -- submissions --------------------------------------------------------------------------

    def problem_with(self, decision: Decision) -> str | None:
        """Why this decision cannot be accepted now, or None. Read-only: safe in an update validator."""
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
        if decision.reviewer == self.requester:
            return f"{decision.reviewer} requested this case and may not decide it"
        if self.level_of(decision.reviewer) is None:
            groups = ", ".join(self.eligible_groups())
            return (
                f"{decision.reviewer} may not decide at level {self.level + 1} "
                f"({self.definition.levels[self.level].title}); allowed groups: {groups}"
            )
        return None

    def accept(self, decision: Decision, via: Channel, now: datetime) -> AcceptedDecision:
        """Close the gate with this decision. Call only after `problem_with` returned None."""
        level = self.level_of(decision.reviewer)
        assert level is not None and self.open
        self.decision = AcceptedDecision(
            outcome=decision.outcome.value,
            decided_by=decision.reviewer,
            reason=decision.reason,
            via=via,
            level=level,
            group=self.group_at(level),
            at=now,
        )
        self.open = False
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
        """The signal path: validate anything, never raise; a bad submission becomes a rejected attempt."""
        reviewer = payload.get("reviewer") if isinstance(payload, dict) else None
        try:
            decision = Decision.model_validate(payload)
        except ValidationError as err:
            self.reject(payload, via, now, format_validation_error(err), reviewer)
            return None
        problem = self.problem_with(decision)
        if problem:
            self.reject(payload, via, now, problem, decision.reviewer)
            return None
        return self.accept(decision, via, now)

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
