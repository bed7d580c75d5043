"""How the case workflow calls its activities: by method reference, so that each input and result
type is checked, with the options (timeouts, retries, heartbeats, local or regular) each call needs.

Workflow code (it runs inside the case workflow's sandbox and only schedules activities). The
activity type names, and whether a call is local or regular, are in every stored history: a change
to either breaks replay (tests/unit/test_replay.py) unless it is behind `workflow.patched`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.case_activities import CaseActivities
    from activities.gather import GatherActivities
    from activities.notify import NotifyActivities
    from gates.audit import AuditEvent
    from gates.evidence import ConnectorResult, MissingContext, SourceRequest
    from gates.gate import GateState
    from gates.messages import (
        AdviseInput,
        LateAdditions,
        Notification,
        NotificationKind,
        Quote,
        RecordDecisionInput,
        RecordReceipt,
    )
    from gates.trace import AgentNote

QUICK = timedelta(seconds=30)
# Sources: retry transient failures (timeouts, 5xx) a few times, then treat the source as missing.
GATHER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=4)
# Notifications are best effort after a few tries: a dead webhook must not hold up a decision.
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=5)
# Recording retries until it succeeds (PostgreSQL down is waited out), and writes once by key.
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Reads of our own files and database (the policy, precedents, the roster; the deterministic brief
# before LOCAL_GATHERS_PATCH, which writes it in the workflow) run as local activities in lean runs
# (LEAN_PATCH in workflows/case.py): no workflow task,
# scheduled, started or completed events of their own, which the benchmark found to be most of a
# case's cost. A read still failing after LOCAL_RETRY's few quick attempts (about 3 s) runs again
# as a regular activity, so `hitl ops stuck` shows it and `hitl ops retry` can reset it. (The SDK
# does not end a local activity's retries at its schedule-to-close timeout while they run inside
# one workflow task, so attempts bound them.) Calls to other systems (the agent, notifications;
# connectors before LOCAL_GATHERS_PATCH, and after it once their local attempts failed) are
# regular activities, and so is `record_decision`: recorded locally, the decision's workflow task
# would also complete the case, and a signal arriving meanwhile fails that task (UnhandledCommand)
# and with it every update it was answering.
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=5)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1), maximum_attempts=5
)
ADVISE_TIMEOUT = timedelta(seconds=90)
# Since LOCAL_GATHERS_PATCH (workflows/case.py) a case's first round asks its connectors in its
# opening read (activities/openings.py, one attempt of 2 s each), and later rounds ask each as a
# local activity first (two quick attempts): a source that answers at once costs no activity task,
# no workflow task and no scheduled/started/completed events. A source that is slow or failing is
# then asked as the regular activity it always was, with GATHER_RETRY's attempts, so within 2–4 s it
# shows in `hitl ops stuck` as a pending activity with its last error, and `hitl ops retry` works.
GATHER_LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=2)
GATHER_LOCAL_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=2)
# Regular activities heartbeat (workers/heartbeat.py) so that after a worker crash an attempt is
# retried within this, not after its whole start-to-close timeout. Only since HARDENED_PATCH.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)

# The activity that gathers each source (gates.evidence.SOURCES; the histories name them `gather_<source>`).
GATHER: dict[str, Callable[[GatherActivities, SourceRequest], Awaitable[ConnectorResult]]] = {
    "crm": GatherActivities.gather_crm,
    "chat": GatherActivities.gather_chat,
    "vendor_master": GatherActivities.gather_vendor_master,
    "finance": GatherActivities.gather_finance,
    "procurement": GatherActivities.gather_procurement,
    "iam": GatherActivities.gather_iam,
}

In = TypeVar("In")
Out = TypeVar("Out")


def _heartbeat(hardened: bool) -> timedelta | None:
    return HEARTBEAT_TIMEOUT if hardened else None


async def local_read(
    activity: Callable[[Any, In], Awaitable[Out]],
    arg: In,
    *,
    lean: bool,
    activity_id: str,
    summary: str,
    start_to_close_timeout: timedelta = QUICK,
) -> Out:
    """A read of our own files or database: a local activity in lean runs, falling back to a
    regular one when it keeps failing; a regular one in older runs."""
    if lean:
        try:
            return await workflow.execute_local_activity_method(
                activity,
                arg,
                activity_id=activity_id,
                start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=LOCAL_RETRY,
                summary=summary,
            )
        except FailureError as err:  # temporalio 1.35 raises a local activity's own failure, not an ActivityError
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("%s failed as a local activity, running it as a regular one: %s", activity_id, err)
    return await workflow.execute_activity_method(
        activity, arg, activity_id=activity_id, start_to_close_timeout=start_to_close_timeout, summary=summary
    )


async def gather(source: SourceRequest, round_no: int, *, hardened: bool, local_first: bool = False) -> ConnectorResult:
    """What one source says; a source still failing after its retries is missing, never a failed case.

    `local_first` (since LOCAL_GATHERS_PATCH): asked as a local activity first, as a regular one when
    that fails (GATHER_LOCAL_RETRY)."""
    activity_id, summary = f"gather-{source.source}-{round_no}", f"{source.source}: {', '.join(source.items)}"
    if local_first:
        try:
            return await workflow.execute_local_activity_method(
                GATHER[source.source],
                source,
                activity_id=activity_id,
                start_to_close_timeout=GATHER_LOCAL_ATTEMPT_TIMEOUT,
                retry_policy=GATHER_LOCAL_RETRY,
                summary=summary,
            )
        except FailureError as err:  # the local attempts' own failure (see local_read)
            if is_cancelled_exception(err):
                raise
            workflow.logger.warning("%s failed as a local activity, asking it as a regular one: %s", activity_id, err)
    try:
        return await workflow.execute_activity_method(
            GATHER[source.source],
            source,
            activity_id=activity_id,
            start_to_close_timeout=QUICK,
            heartbeat_timeout=_heartbeat(hardened),
            retry_policy=GATHER_RETRY,
            summary=summary,
        )
    except ActivityError as err:
        cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
        error = f"{source.source} unavailable after retries: {cause}"
        return ConnectorResult(
            source=source.source, missing=[MissingContext(source=source.source, item=i, error=error) for i in source.items]
        )


async def advise(question: AdviseInput, round_no: int, *, hardened: bool) -> AgentNote:
    """The configured agent's advice on a written brief: an external call, so a regular activity."""
    return await workflow.execute_activity_method(
        CaseActivities.advise_case,
        question,
        activity_id=f"advise-{round_no}",
        start_to_close_timeout=ADVISE_TIMEOUT,
        heartbeat_timeout=_heartbeat(hardened),
        summary="ask the agent for advice on the brief",
    )


@dataclass(frozen=True)
class About:
    """What a notification says beside its message: the ask (for subjects), the next deadline, and
    people's own words, which every channel shows quoted as theirs (activities/channels/)."""

    ask: str | None = None
    deadline: datetime | None = None
    quotes: list[Quote] = field(default_factory=list)


async def notify(
    gate: GateState,
    kind: NotificationKind,
    message: str,
    *,
    hardened: bool,
    audit: list[AuditEvent] | None = None,
    about: About | None = None,
) -> bool:
    """Tell the gate's current reviewers, once per round, kind and level; best effort. With it go the
    gate events the audit log does not hold yet; False when the activity gave up (they stay pending)."""
    info = workflow.info()
    key = f"{info.workflow_id}/{info.first_execution_run_id}/r{gate.round}/{kind}/level-{gate.level}"
    try:
        await workflow.execute_activity_method(
            NotifyActivities.notify_reviewers,
            Notification(
                notification_key=key,
                case_id=info.workflow_id,
                kind=kind,
                gate=gate.definition.name,
                level=gate.level,
                reviewer_group=gate.current_group,
                recipients=gate.may_decide(),
                message=message,
                audit=audit or [],
                ask=about.ask if about else None,
                deadline=about.deadline if about else None,
                quotes=about.quotes if about else [],
            ),
            activity_id=f"notify-{kind}-r{gate.round}-level-{gate.level}",
            start_to_close_timeout=QUICK,
            heartbeat_timeout=_heartbeat(hardened),
            retry_policy=NOTIFY_RETRY,
            summary=f"{kind}: {gate.current_group}",
        )
    except ActivityError as err:
        workflow.logger.warning("notification %s not delivered: %s", key, err.cause or err)
        return False
    return True


async def record_decision(record: RecordDecisionInput, *, summary: str, hardened: bool) -> RecordReceipt:
    """Write the trace once (by its decision key), retrying until PostgreSQL takes it."""
    return await workflow.execute_activity_method(
        CaseActivities.record_decision,
        record,
        activity_id="record-decision",
        start_to_close_timeout=QUICK,
        heartbeat_timeout=_heartbeat(hardened),
        retry_policy=RECORD_RETRY,
        summary=summary,
    )


async def record_late_additions(late: LateAdditions, round_no: int) -> None:
    """Set the written trace's attempts and operator actions to the case's full lists (since HARDENED_PATCH)."""
    await workflow.execute_activity_method(
        CaseActivities.record_late_additions,
        late,
        activity_id=f"record-late-additions-{round_no}",
        start_to_close_timeout=QUICK,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RECORD_RETRY,
        summary="add what arrived while recording to the trace",
    )
