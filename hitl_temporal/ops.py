"""Operating cases through Temporal alone: stuck cases, cases that ended without an outcome, operator
actions, retries and history export. The library behind `hitl ops` and `CaseClient`'s operator methods.

    stuck = await find_stuck(client, criteria=StuckCriteria(activity_attempts=3))
    ended = await find_ended(client, since=now - timedelta(days=7))    # closed without an outcome
    plan = await plan_retry(client, case_id); await execute_retry(client, plan, operator=..., reason=...)
    receipt = await send_operator_action(client, case_id, OperatorAction(action="escalate", ...))

Temporal has no high-level SDK call for resetting an activity or a workflow, nor for a task
queue's pollers: those go through the raw workflow service (`client.workflow_service`), with the
request messages of `temporalio.api.workflowservice.v1` as installed (temporalio 1.35). Whether
PostgreSQL holds a trace for an ended case is asked by the CLI (`activities/store/traces.py`), and
replaying histories needs the workflow code (`workers/replay.py`): neither is here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    EventType,
    PendingActivityState,
    TaskQueueType,
    WorkflowTaskFailedCause,
)
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    DescribeWorkflowExecutionResponse,
    GetWorkflowExecutionHistoryReverseRequest,
    ResetActivityRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from gates import search_attributes as sa
from gates.cases import WORKFLOW_TYPES, CaseKind
from gates.durations import format_duration
from gates.gate import OperatorAction, OperatorReceipt
from gates.report import EndedStats
from hitl_temporal.errors import ActionRefused, CaseError, rpc_error
from hitl_temporal.history import ENDED_WITHOUT_OUTCOME, failure_text, why_ended
from hitl_temporal.inbox import InvalidQueryValue

CASE_WORKFLOW_TYPES: tuple[str, ...] = tuple(WORKFLOW_TYPES[kind] for kind in CaseKind)
# How long an operator action waits for the case to answer its update.
UPDATE_TIMEOUT = timedelta(seconds=30)


def human_age(delta: timedelta) -> str:
    """How long ago or how late, `2d3h` style (a negative delta reads as 0s)."""
    return format_duration(max(int(delta.total_seconds()), 0))


# -- stuck cases: classification (pure) -----------------------------------------------------------


class StuckKind(StrEnum):
    WORKFLOW_TASK_FAILING = "workflow_task_failing"
    ACTIVITY_RETRYING = "activity_retrying"
    PAST_DEADLINE = "past_deadline"
    NO_WORKER = "no_worker"


class StuckReason(BaseModel):
    kind: StuckKind
    detail: str


class StuckCase(BaseModel):
    case_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    state: str | None
    started_at: datetime | None
    reasons: list[StuckReason]


@dataclass(frozen=True)
class StuckCriteria:
    activity_attempts: int = 3  # an activity on attempt N+1 or later has failed N times
    deadline_grace: timedelta = timedelta(minutes=5)
    # The server lists a worker's pollers for minutes after it stopped; a live worker re-polls
    # at least every ~70 s (long polls), so an older last access means nobody is polling.
    poller_stale: timedelta = timedelta(minutes=2)


@dataclass(frozen=True)
class CaseSnapshot:
    """What `classify` looks at: the raw describe answer plus what was fetched around it."""

    description: DescribeWorkflowExecutionResponse
    case_state: str | None = None  # HitlCaseState
    next_deadline: datetime | None = None  # HitlNextDeadline
    last_task_failure: str | None = None  # from the newest WorkflowTaskFailed/TimedOut event
    workflow_pollers: Sequence[datetime] | None = None  # last access per poller; None = not checked
    activity_pollers: Sequence[datetime] | None = None

    @property
    def task_queue(self) -> str:
        d = self.description
        return d.execution_config.task_queue.name or d.workflow_execution_info.task_queue


def classify(snapshot: CaseSnapshot, criteria: StuckCriteria, now: datetime) -> list[StuckReason]:
    """Why this running case needs an operator; empty when it does not."""
    d = snapshot.description
    reasons: list[StuckReason] = []
    if d.HasField("pending_workflow_task") and d.pending_workflow_task.attempt > 1:
        cause = snapshot.last_task_failure or "no failure recorded in recent history"
        reasons.append(
            StuckReason(
                kind=StuckKind.WORKFLOW_TASK_FAILING,
                detail=f"workflow task failing (attempt {d.pending_workflow_task.attempt}): {cause}",
            )
        )
    for activity in d.pending_activities:
        if activity.attempt <= criteria.activity_attempts:
            continue
        of = f"/{activity.maximum_attempts}" if activity.maximum_attempts else ""
        error = failure_text(activity.last_failure) if activity.HasField("last_failure") else "no failure recorded"
        paused = " (paused)" if activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED else ""
        reasons.append(
            StuckReason(
                kind=StuckKind.ACTIVITY_RETRYING,
                detail=f"activity {activity.activity_id} ({activity.activity_type.name}) "
                f"on attempt {activity.attempt}{of}{paused}: {error}",
            )
        )
    if snapshot.case_state == "waiting" and snapshot.next_deadline is not None:
        overdue = now - snapshot.next_deadline
        if overdue > criteria.deadline_grace:
            reasons.append(
                StuckReason(
                    kind=StuckKind.PAST_DEADLINE,
                    detail=f"waiting {human_age(overdue)} past its deadline ({snapshot.next_deadline:%Y-%m-%d %H:%M}Z): "
                    "the escalation or timeout timer has not fired",
                )
            )
    for pollers, what in ((snapshot.workflow_pollers, "workflow tasks"), (snapshot.activity_pollers, "activities")):
        if pollers is None:
            continue
        latest = max(pollers, default=None)
        if latest is None or now - latest > criteria.poller_stale:
            seen = f"last poll {human_age(now - latest)} ago" if latest else "none seen"
            reasons.append(
                StuckReason(
                    kind=StuckKind.NO_WORKER, detail=f"no worker polling task queue {snapshot.task_queue} for {what} ({seen})"
                )
            )
    return reasons


# -- stuck cases: fetching -----------------------------------------------------------------------


def candidates_query(*, now: datetime, older_than: timedelta | None = None, task_queue: str | None = None) -> str:
    """Running case workflows (a case whose first task never completed has no HitlCaseKind yet, hence the types)."""
    types = ", ".join(f"'{t}'" for t in CASE_WORKFLOW_TYPES)
    query = f"ExecutionStatus = 'Running' AND ({sa.CASE_KIND.name} IS NOT NULL OR WorkflowType IN ({types}))"
    if older_than is not None:
        query += f" AND StartTime < '{(now - older_than).astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}'"
    if task_queue is not None:
        if "'" in task_queue or '"' in task_queue:
            raise InvalidQueryValue(f"task queue name {task_queue!r} contains a quote")
        query += f" AND TaskQueue = '{task_queue}'"
    return query


async def _events_newest_first(client: Client, workflow_id: str, run_id: str, *, limit: int = 500) -> AsyncIterator[HistoryEvent]:
    token = b""
    seen = 0
    while seen < limit:
        page = await client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                maximum_page_size=100,
                next_page_token=token,
            )
        )
        for event in page.history.events:
            seen += 1
            yield event
        token = page.next_page_token
        if not token:
            return


def _short_cause(cause: WorkflowTaskFailedCause.ValueType) -> str:
    """`WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR` -> `non_deterministic_error`."""
    return WorkflowTaskFailedCause.Name(cause).removeprefix("WORKFLOW_TASK_FAILED_CAUSE_").lower()


async def last_workflow_task_failure(client: Client, workflow_id: str, run_id: str) -> str | None:
    """The newest WorkflowTaskFailed/TimedOut since the last completed workflow task, as one line."""
    async for event in _events_newest_first(client, workflow_id, run_id):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return None
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = event.workflow_task_failed_event_attributes
            return f"{failure_text(attrs.failure)} [{_short_cause(attrs.cause)}, event {event.event_id}]"
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            return f"workflow task timed out (a worker took it and did not answer) [event {event.event_id}]"
    return None


async def last_completed_workflow_task(client: Client, workflow_id: str, run_id: str) -> int | None:
    async for event in _events_newest_first(client, workflow_id, run_id, limit=100_000):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return event.event_id
    return None


class TaskQueuePollers:
    """Last access times of a task queue's pollers, asked once per queue and type (raw DescribeTaskQueue)."""

    def __init__(self, client: Client):
        self._client = client
        self._answers: dict[tuple[str, TaskQueueType.ValueType], asyncio.Task[list[datetime]]] = {}

    async def get(self, queue: str, queue_type: TaskQueueType.ValueType) -> list[datetime]:
        """The last access time of each poller of `queue` for `queue_type` tasks."""
        key = (queue, queue_type)
        if key not in self._answers:
            self._answers[key] = asyncio.ensure_future(self._describe(queue, queue_type))
        return await self._answers[key]

    async def _describe(self, queue: str, queue_type: TaskQueueType.ValueType) -> list[datetime]:
        answer = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self._client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=queue_type
            )
        )
        return [p.last_access_time.ToDatetime(tzinfo=UTC) for p in answer.pollers]


async def snapshot_case(client: Client, workflow_id: str, run_id: str | None, pollers: TaskQueuePollers) -> CaseSnapshot | None:
    """Describe one case (and fetch what classification needs); None if it is no longer running."""
    description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        return None
    raw = description.raw_description
    attributes = description.typed_search_attributes
    failure = None
    if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt > 1:
        failure = await last_workflow_task_failure(client, workflow_id, description.run_id)
    queue = raw.execution_config.task_queue.name or raw.workflow_execution_info.task_queue
    return CaseSnapshot(
        description=raw,
        case_state=attributes.get(sa.CASE_STATE),
        next_deadline=attributes.get(sa.NEXT_DEADLINE),
        last_task_failure=failure,
        workflow_pollers=await pollers.get(queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        activity_pollers=await pollers.get(queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY) if raw.pending_activities else None,
    )


@dataclass
class StuckReport:
    checked: int
    stuck: list[StuckCase] = field(default_factory=list)
    query: str = ""


async def find_stuck(
    client: Client,
    *,
    criteria: StuckCriteria = StuckCriteria(),
    older_than: timedelta | None = None,
    task_queue: str | None = None,
    concurrency: int = 8,
    now: datetime | None = None,
) -> StuckReport:
    """Every running case that needs an operator, with the reasons; candidates are described `concurrency` at a time."""
    now = now or datetime.now(UTC)
    query = candidates_query(now=now, older_than=older_than, task_queue=task_queue)
    candidates = [w async for w in client.list_workflows(query)]
    limit = asyncio.Semaphore(concurrency)
    pollers = TaskQueuePollers(client)

    async def inspect(execution) -> StuckCase | None:
        async with limit:
            try:
                snapshot = await snapshot_case(client, execution.id, execution.run_id, pollers)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return None  # gone between the list and the describe
                raise
        if snapshot is None:
            return None
        reasons = classify(snapshot, criteria, now)
        if not reasons:
            return None
        return StuckCase(
            case_id=execution.id,
            run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            task_queue=snapshot.task_queue,
            state=snapshot.case_state,
            started_at=execution.start_time,
            reasons=reasons,
        )

    found = await asyncio.gather(*(inspect(e) for e in candidates))
    stuck = sorted((c for c in found if c is not None), key=lambda c: (c.started_at or now, c.case_id))
    return StuckReport(checked=len(candidates), stuck=stuck, query=query)


# -- cases that ended without a recorded outcome ---------------------------------------------------

# Visibility's names for the statuses in ENDED_WITHOUT_OUTCOME: Terminated, TimedOut, Failed.
_ENDED_VISIBILITY = tuple(status.name.title().replace("_", "") for status in ENDED_WITHOUT_OUTCOME)
# HitlCaseState of a start the case refused (a workflow ID that is not its case ID, options it cannot honour).
REFUSED_STATE = "refused"


class EndedCase(BaseModel):
    """A case workflow that closed without returning an outcome, and why (from its closing event)."""

    case_id: str
    run_id: str
    first_run_id: str  # of its chain: a case that continued as new records its decision under it
    workflow_type: str
    task_queue: str
    status: str  # terminated, timed out, failed
    refused_start: bool  # failed because the case refused its start (HitlCaseState 'refused')
    started_at: datetime | None
    closed_at: datetime | None
    why: str
    trace_recorded: bool | None = None  # PostgreSQL holds a decision trace for it; None: not checked

    @property
    def status_text(self) -> str:
        return "refused start" if self.refused_start else self.status


@dataclass
class EndedReport:
    since: datetime
    ended: list[EndedCase] = field(default_factory=list)
    query: str = ""
    retention: timedelta | None = None  # how long the namespace keeps closed workflows
    database_problem: str | None = None  # why traces were not checked


# -- notification channels failing (rows from activities/channels/deliveries.py, read by the CLI) ---


class FailingChannel(BaseModel):
    """A notification channel (email, slack) that has delivered nothing since it began failing."""

    channel: str
    notifications: int  # not delivered on it since its last success
    last_error: str
    since: datetime  # its first failure among those
    last_failed_at: datetime


@dataclass
class FailingChannelsReport:
    since: datetime  # the window: channels that failed within it
    failing: list[FailingChannel] = field(default_factory=list)
    database_problem: str | None = None  # why the deliveries were not read


def ended_query(*, since: datetime, task_queue: str | None = None) -> str:
    """Case workflows (our types: a refused start never published HitlCaseKind) closed without an
    outcome after `since`."""
    types = ", ".join(f"'{t}'" for t in CASE_WORKFLOW_TYPES)
    statuses = ", ".join(f"'{s}'" for s in _ENDED_VISIBILITY)
    query = (
        f"WorkflowType IN ({types}) AND ExecutionStatus IN ({statuses}) "
        f"AND CloseTime > '{since.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z'"
    )
    if task_queue is not None:
        if "'" in task_queue or '"' in task_queue:
            raise InvalidQueryValue(f"task queue name {task_queue!r} contains a quote")
        query += f" AND TaskQueue = '{task_queue}'"
    return query


async def namespace_retention(client: Client) -> timedelta | None:
    """How long the namespace keeps closed workflows (the dev server: 1 day); None if it cannot be read."""
    try:
        answer = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    except RPCError:
        return None
    ttl = answer.config.workflow_execution_retention_ttl
    return timedelta(seconds=ttl.seconds) if ttl.seconds else None


async def find_ended(
    client: Client, *, since: datetime, task_queue: str | None = None, concurrency: int = 8
) -> EndedReport:
    """Every case workflow that ended without a recorded outcome after `since`, newest first, with why
    (one closing-event read each, `concurrency` at a time). Traces are checked by `check_traces`."""
    query = ended_query(since=since, task_queue=task_queue)
    executions = [w async for w in client.list_workflows(query)]
    limit = asyncio.Semaphore(concurrency)

    async def inspect(execution) -> EndedCase | None:
        async with limit:
            try:
                why = await why_ended(client, execution.id, execution.run_id)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return None  # past retention between the list and the read
                why = f"closing event not readable: {err.message}"
        status = ENDED_WITHOUT_OUTCOME.get(execution.status, "closed") if execution.status else "closed"
        return EndedCase(
            case_id=execution.id,
            run_id=execution.run_id,
            first_run_id=execution.raw_info.first_run_id or execution.run_id,
            workflow_type=execution.workflow_type,
            task_queue=execution.task_queue,
            status=status,
            refused_start=execution.typed_search_attributes.get(sa.CASE_STATE) == REFUSED_STATE,
            started_at=execution.start_time,
            closed_at=execution.close_time,
            why=why,
        )

    inspected, retention = await asyncio.gather(asyncio.gather(*(inspect(e) for e in executions)), namespace_retention(client))
    far = datetime.min.replace(tzinfo=UTC)
    ended = sorted((c for c in inspected if c is not None), key=lambda c: (c.closed_at or far, c.case_id), reverse=True)
    return EndedReport(since=since, ended=ended, query=query, retention=retention)


def retention_note(since: timedelta, retention: timedelta | None) -> str:
    """Said when the window reaches further back than the namespace keeps closed workflows."""
    if retention is None or retention >= since:
        return ""
    return f" (this namespace keeps closed workflows {human_age(retention)}: older ones are gone)"


# Visibility's names of the statuses that close a case without an outcome, and EndedStats' fields.
_ENDED_FIELDS = {"Terminated": "terminated", "TimedOut": "timed_out", "Failed": "failed"}


async def count_ended(client: Client, *, since: datetime | None, gate_of: Mapping[CaseKind, str]) -> list[EndedStats]:
    """Per kind, case workflows that closed without an outcome after `since`: one visibility count per
    workflow type grouped by status, and one of its refused starts (a refused start has no HitlCaseKind,
    hence the type). `gate_of` names each kind's gate, as the policies in use say (the client reads no files)."""
    statuses = ", ".join(f"'{s}'" for s in _ENDED_FIELDS)
    window = f" AND CloseTime > '{since.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z'" if since else ""

    async def of_kind(kind: CaseKind) -> EndedStats:
        query = f"WorkflowType = '{WORKFLOW_TYPES[kind]}' AND ExecutionStatus IN ({statuses}){window}"
        by_status, refused = await asyncio.gather(
            client.count_workflows(f"{query} GROUP BY ExecutionStatus"),
            client.count_workflows(f"{query} AND ExecutionStatus = 'Failed' AND {sa.CASE_STATE.name} = 'refused'"),
        )
        counts = {_ENDED_FIELDS[str(group.group_values[0])]: group.count for group in by_status.groups}
        return EndedStats(kind=kind.value, gate=gate_of[kind], refused_starts=refused.count, **counts)

    return list(await asyncio.gather(*(of_kind(kind) for kind in WORKFLOW_TYPES)))


# -- history export -----------------------------------------------------------------------------


async def fetch_case_history(client: Client, case_id: str) -> WorkflowHistory:
    """The case's full history, as `hitl ops export` writes it and `hitl ops replay` replays it."""
    try:
        return await client.get_workflow_handle(case_id).fetch_history()
    except RPCError as err:
        raise rpc_error(case_id, err, operator=True) from err


def export_file_name(case_id: str) -> str:
    """'renewal_discount_exception:acme/fy26' -> 'renewal_discount_exception--acme--fy26.json' (the fixtures' style)."""
    return re.sub(r"[:/#\\\s]+", "--", case_id).strip("-") + ".json"


# -- operator actions ----------------------------------------------------------------------------


async def send_operator_action(
    client: Client, case_id: str, action: OperatorAction, *, timeout: timedelta = UPDATE_TIMEOUT
) -> OperatorReceipt:
    """The `operator_action` update's receipt, or ActionRefused with the case's reason."""
    handle = client.get_workflow_handle(case_id)
    try:
        return await asyncio.wait_for(
            handle.execute_update("operator_action", action, result_type=OperatorReceipt), timeout=timeout.total_seconds()
        )
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        raise ActionRefused(cause.message if isinstance(cause, ApplicationError) else str(cause or err)) from err
    except RPCError as err:
        raise rpc_error(case_id, err, operator=True) from err
    except TimeoutError as err:
        raise CaseError(
            f"{case_id} did not answer within {int(timeout.total_seconds())}s: is its workflow task failing, "
            "or no worker polling its task queue? (hitl ops stuck)"
        ) from err


@dataclass(frozen=True)
class CancelOutcome:
    result: str
    interrupted: bool  # Temporal cancellation was sent because work was in progress


async def cancel_case(client: Client, case_id: str, action: OperatorAction) -> CancelOutcome:
    """Record the cancel through the update; if work is in progress, interrupt it with Temporal cancellation."""
    receipt = await send_operator_action(client, case_id, action)
    if not receipt.needs_temporal_cancel:
        return CancelOutcome(result=receipt.result, interrupted=False)
    try:
        await client.get_workflow_handle(case_id).cancel()
    except RPCError as err:
        raise rpc_error(case_id, err, operator=True) from err
    return CancelOutcome(result=receipt.result, interrupted=True)


# -- retry ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailingActivity:
    activity_id: str
    activity_type: str
    attempt: int
    last_error: str
    running: bool = False  # an attempt is in flight: after a reset it restarts when that attempt times out


@dataclass(frozen=True)
class RetryPlan:
    """What `hitl ops retry` will do: reset a failing workflow task, or reset failing activities."""

    case_id: str
    run_id: str
    activities: tuple[FailingActivity, ...] = ()
    reset_to_event: int | None = None  # the last WorkflowTaskCompleted event
    task_failure: str | None = None

    def describe(self) -> str:
        if self.reset_to_event is not None:
            return (
                f"{self.case_id}: workflow task failing ({self.task_failure}); reset the workflow to event "
                f"{self.reset_to_event} (its last completed workflow task), starting a new run"
            )
        return "\n".join(
            f"{self.case_id}: reset activity {a.activity_id} ({a.activity_type}, attempt {a.attempt}: {a.last_error}) "
            "to attempt 1, "
            + ("once its running attempt times out" if a.running else "now")
            for a in self.activities
        )


@dataclass(frozen=True)
class RetryReceipt:
    """What `CaseClient.retry` did: the reset (one line) and the receipt of the note recording it."""

    done: str
    note: OperatorReceipt


async def plan_retry(client: Client, case_id: str) -> RetryPlan:
    """Find what is failing; ActionRefused when nothing is (there is nothing to retry)."""
    try:
        description = await client.get_workflow_handle(case_id).describe()
    except RPCError as err:
        raise rpc_error(case_id, err, operator=True) from err
    if description.status != WorkflowExecutionStatus.RUNNING:
        status = description.status.name.lower() if description.status else "unknown"
        raise ActionRefused(f"case {case_id} is not running ({status})")
    raw = description.raw_description
    run_id = description.run_id
    if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt > 1:
        failure = await last_workflow_task_failure(client, case_id, run_id) or f"attempt {raw.pending_workflow_task.attempt}"
        event_id = await last_completed_workflow_task(client, case_id, run_id)
        if event_id is None:
            raise ActionRefused(
                f"{case_id}: its first workflow task never completed ({failure}); there is no good point to reset to: "
                "deploy a fix (the task retries by itself) or cancel the case"
            )
        return RetryPlan(case_id=case_id, run_id=run_id, reset_to_event=event_id, task_failure=failure)
    failing = tuple(
        FailingActivity(
            activity_id=a.activity_id,
            activity_type=a.activity_type.name,
            attempt=a.attempt,
            last_error=failure_text(a.last_failure) if a.HasField("last_failure") else "no failure recorded",
            running=a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
        )
        for a in raw.pending_activities
        if a.attempt > 1 or a.HasField("last_failure")
    )
    if not failing:
        raise ActionRefused(f"{case_id}: nothing to retry: no activity is failing and its workflow task is healthy")
    return RetryPlan(case_id=case_id, run_id=run_id, activities=failing)


async def execute_retry(client: Client, plan: RetryPlan, *, operator: str, reason: str) -> str:
    """Do the plan through the raw workflow service; returns what was done, one line."""
    identity = f"hitl-ops/{operator}"
    execution = WorkflowExecution(workflow_id=plan.case_id, run_id=plan.run_id)
    try:
        if plan.reset_to_event is not None:
            answer = await client.workflow_service.reset_workflow_execution(
                ResetWorkflowExecutionRequest(
                    namespace=client.namespace,
                    workflow_execution=execution,
                    reason=f"hitl ops retry by {operator}: {reason}",
                    workflow_task_finish_event_id=plan.reset_to_event,
                    request_id=str(uuid.uuid4()),
                    identity=identity,
                )
            )
            return f"reset to event {plan.reset_to_event}; new run {answer.run_id}"
        for activity in plan.activities:
            await client.workflow_service.reset_activity(
                ResetActivityRequest(namespace=client.namespace, execution=execution, id=activity.activity_id, identity=identity)
            )
        return "reset " + ", ".join(f"activity {a.activity_id}" for a in plan.activities)
    except RPCError as err:
        raise rpc_error(plan.case_id, err, operator=True) from err
