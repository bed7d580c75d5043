"""Which of a case's gate events its audit log does not hold yet, as `AuditEvent`s (gates/audit.py).

Pure. The case file already keeps everything that happened at the gate (openings, reminders,
escalations, decisions, refused attempts, operator actions); the workflow asks this module for what
is new since its last write, passes the events to an activity it runs anyway (the gate's first read,
a notification, the recording of the decision) and, once that activity has returned, takes the new
mark. An activity that fails leaves the events pending for the next one, and the event keys make a
second write of the same event a no-op, so nothing is lost and nothing is written twice.

Keys are the run ID (unique across Temporal), the kind and a count: after `temporal workflow reset`
the new run's events are new rows beside the old run's (the chain shows both), never mistaken for them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gates.audit import AuditEvent, AuditKind
from gates.gate import AcceptedDecision, Identity, OperatorRecord, RejectedAttempt
from gates.text import storable

if TYPE_CHECKING:  # gates.case_file carries the mark over continue-as-new (gates.trace): no import cycle
    from gates.case_file import CaseFile
    from gates.info_request import InfoRequest


class AuditMark(BaseModel):
    """How much of the case its audit log holds: counts of what has been written (carried over continue-as-new)."""

    opened: bool = False
    gate_rounds: int = 0
    reminders: int = 0
    escalations: int = 0
    questions: int = 0  # request_info decisions
    answers: int = 0  # questions to a person closed: answered, or unanswered by their deadline
    attempts: int = 0  # refused attempts, early and at the gate (the counts, not the bounded lists)
    operator_actions: int = 0
    outcome: bool = False


def pending_events(
    case: CaseFile, mark: AuditMark, *, case_id: str, run_id: str, started_at: datetime
) -> tuple[list[AuditEvent], AuditMark]:
    """The events not written yet, oldest kind first, and the mark once they are written.
    `started_at`: when the case started (its opening's time)."""
    request, gate = case.request, case.gate
    events: list[AuditEvent] = []

    def add(kind: AuditKind, n: int, at: datetime, body: dict[str, Any]) -> None:
        # storable: a sender's text (a claimed reviewer, a reason) may hold what canonical JSON and
        # PostgreSQL cannot (an unpaired surrogate, NUL); an event that failed to build would fail the
        # workflow task on every retry and wedge the case.
        event = AuditEvent(event_key=f"{run_id}/{kind.value}/{n}", case_id=case_id, kind=kind, at=at, body=storable(body))
        events.append(event)

    new = mark.model_copy()
    if not mark.opened and request is not None and case.policy is not None:
        add(
            AuditKind.CASE_OPENED,
            1,
            started_at,
            {
                "kind": case.policy.kind.value,
                "business_key": request.business_key(),
                "requester": request.requester,
                "subject": request.subject(),
                "policy": case.policy.ref,
            },
        )
        new.opened = True
    if gate is not None:
        for opening in gate.openings[mark.gate_rounds :]:
            add(
                AuditKind.GATE_OPENED,
                opening.round,
                opening.at,
                {
                    "gate": gate.definition.name,
                    "round": opening.round,
                    "level": opening.level + 1,
                    "group": opening.group,
                    "digest": opening.digest,
                    "directory_version": opening.directory_version,
                    "may_decide": opening.may_decide,
                },
            )
        new.gate_rounds = len(gate.openings)
        for n, reminder in enumerate(gate.reminders[mark.reminders :], start=mark.reminders + 1):
            add(AuditKind.REMINDED, n, reminder.at, {"level": reminder.level + 1, "group": reminder.group})
        new.reminders = len(gate.reminders)
        for n, escalation in enumerate(gate.escalations[mark.escalations :], start=mark.escalations + 1):
            add(
                AuditKind.ESCALATED,
                n,
                escalation.at,
                {
                    "from_level": escalation.from_level + 1,
                    "to_level": escalation.to_level + 1,
                    "to_group": escalation.to_group,
                    "reason": escalation.reason,
                },
            )
        new.escalations = len(gate.escalations)
    sent = {info.round: info for info in case.info_rounds}
    for n, asked in enumerate(case.rounds[mark.questions :], start=mark.questions + 1):
        body = _decision_body(asked)
        if (info := sent.get(n)) is not None:  # since questions go to a person: to whom, and by when
            body |= {"asked": info.asked, "due_at": info.due_at.isoformat()}
        add(AuditKind.INFO_ASKED, n, asked.at, body)
    new.questions = len(case.rounds)
    closed = [info for info in case.info_rounds if not info.waiting]
    for n, info in enumerate(closed[mark.answers :], start=mark.answers + 1):
        if info.outcome == "answered" and info.answered_at is not None:
            add(AuditKind.INFO_ANSWERED, n, info.answered_at, _answer_body(info))
        else:
            add(_UNANSWERED, n, info.due_at, {"round": info.round, "asked": info.asked, "asked_by": info.asked_by})
    new.answers = len(closed)
    received = case.early_received + (gate.attempts_received if gate is not None else 0)
    if received > mark.attempts:
        kept = case.early_attempts + (gate.rejected_attempts if gate is not None else [])
        kept.sort(key=lambda attempt: attempt.at)
        fresh = kept[-(received - mark.attempts) :]
        lost = received - mark.attempts - len(fresh)  # beyond what the bounded lists keep
        for n, attempt in enumerate(fresh, start=mark.attempts + lost + 1):
            first = n == mark.attempts + lost + 1
            add(AuditKind.DECISION_REFUSED, n, attempt.at, _attempt_body(attempt, unkept_before=lost if first else 0))
        new.attempts = received
    for n, action in enumerate(case.operator_actions[mark.operator_actions :], start=mark.operator_actions + 1):
        add(AuditKind.OPERATOR_ACTION, n, action.at, _operator_body(action))
    new.operator_actions = len(case.operator_actions)
    if not mark.outcome and case.decision is not None:
        add(_outcome_kind(case.decision), 1, case.decision.at, _decision_body(case.decision))
        new.outcome = True
    return events, new


# `info_unanswered` (gates/audit.py); until that kind exists, an unanswered question is logged as an
# `info_answered` event whose body has no answer.
_UNANSWERED: AuditKind = getattr(AuditKind, "INFO_UNANSWERED", AuditKind.INFO_ANSWERED)


def _answer_body(info: InfoRequest) -> dict[str, Any]:
    return {
        "round": info.round,
        "asked": info.asked,
        "answered_by": info.answered_by,
        "answer": info.answer,
        "attachment_name": info.attachment_name,
        "attachment_chars": len(info.attachment_text) if info.attachment_text is not None else None,
        "identity": _identity(info.answered_identity),
    }


def _outcome_kind(decision: AcceptedDecision) -> AuditKind:
    if decision.via == "policy":
        return AuditKind.DECIDED_BY_POLICY
    if decision.via == "timeout":
        return AuditKind.TIMED_OUT
    if decision.outcome == "cancelled":
        return AuditKind.CANCELLED
    return AuditKind.DECISION_ACCEPTED


def _identity(identity: Identity | None) -> dict[str, Any] | None:
    return identity.model_dump(mode="json") if identity is not None else None


def _decision_body(decision: AcceptedDecision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "via": decision.via,
        "level": decision.level + 1,
        "group": decision.group,
        "identity": _identity(decision.identity),
        "acting_for": decision.acting_for,
        "digest": decision.digest,
        "directory_version": decision.directory_version,
    }


def _attempt_body(attempt: RejectedAttempt, *, unkept_before: int) -> dict[str, Any]:
    body: dict[str, Any] = {"via": attempt.via, "reviewer": attempt.reviewer, "error": attempt.error}
    if unkept_before:
        body["refused_before_and_not_kept"] = unkept_before
    return body


def _operator_body(action: OperatorRecord) -> dict[str, Any]:
    return {
        "action": action.action,
        "operator": action.operator,
        "reason": action.reason,
        "group": action.group,
        "result": action.result,
        "identity": _identity(action.identity),
    }
