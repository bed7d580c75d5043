"""`hitl ops stuck | replay | export | retry | escalate | reassign | cancel` and `hitl report`: operating cases.

The functions below the click layer take a `Client` and are usable from tests and services:

    stuck = await find_stuck(client, criteria=StuckCriteria(activity_attempts=3))
    ended = await find_ended(client, since=now - timedelta(days=7))    # closed without an outcome
    await check_traces(ended, conn)                                   # ... and whether PostgreSQL has a trace
    outcomes = await replay_histories(histories)                  # against WORKFLOWS by default
    plan = await plan_retry(client, case_id); await execute_retry(client, plan, operator=..., reason=...)
    receipt = await send_operator_action(client, case_id, OperatorAction(action="escalate", ...))

Temporal has no high-level SDK call for resetting an activity or a workflow, nor for a task
queue's pollers: those go through the raw workflow service (`client.workflow_service`), with the
request messages of `temporalio.api.workflowservice.v1` as installed (temporalio 1.35).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import asyncpg
import click
from pydantic import BaseModel, ValidationError
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

from gates.cases import REQUEST_MODELS, WORKFLOW_TYPES, CaseKind
from gates.gate import (
    OperatorAction,
    OperatorActionKind,
    OperatorReceipt,
    format_validation_error,
)
from gates.json_input import JsonInputError, loads_strict
from workers.cases import (
    ENDED_WITHOUT_OUTCOME,
    CaseClient,
    CaseError,
    CaseNotFound,
    failure_text,
    why_ended,
    workflow_type_for,
)
from workers.client import connect_client
from workflows import search_attributes as sa

CASE_WORKFLOW_TYPES: tuple[str, ...] = tuple(workflow_type_for(kind) for kind in CaseKind)
# How long an operator command waits for the case to answer its update.
UPDATE_TIMEOUT = timedelta(seconds=30)


class OpsError(CaseError):
    """An operator command that cannot go ahead: one line, non-zero exit."""


class ActionRefused(OpsError):
    """The case refused the operator action (the update's validator or handler said why)."""


# -- durations ----------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '4h', '7d', '2w', or combinations such as '1h30m'."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 4h, 7d, 1h30m)")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


DURATION = DurationType()


def human_age(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{seconds // size}{unit}" + (f"{rest // smaller[1]}{smaller[0]}" if rest >= smaller[1] else "")
    return f"{seconds}s"


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
                detail=f"activity {activity.activity_id} ({activity.activity_type.name}) on attempt {activity.attempt}{of}{paused}: {error}",
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
                StuckReason(kind=StuckKind.NO_WORKER, detail=f"no worker polling task queue {snapshot.task_queue} for {what} ({seen})")
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
            raise OpsError(f"task queue name {task_queue!r} contains a quote")
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


def _short_cause(cause: int) -> str:
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
        self._answers: dict[tuple[str, int], asyncio.Task] = {}

    async def get(self, queue: str, queue_type: int) -> list[datetime]:
        key = (queue, queue_type)
        if key not in self._answers:
            self._answers[key] = asyncio.ensure_future(self._describe(queue, queue_type))
        return await self._answers[key]

    async def _describe(self, queue: str, queue_type: int) -> list[datetime]:
        answer = await self._client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=self._client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=queue_type)
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


def render_stuck(report: StuckReport, now: datetime, *, width: int = 140) -> str:
    from rich.console import Console
    from rich.table import Table

    if not report.stuck:
        return f"no stuck cases among {report.checked} running"
    table = Table(title=f"{len(report.stuck)} of {report.checked} running cases need an operator", title_justify="left")
    for name in ("case", "state", "age", "why"):
        table.add_column(name, overflow="fold")
    for case in report.stuck:
        age = human_age(now - case.started_at) if case.started_at else "?"
        table.add_row(case.case_id, case.state or "-", age, "\n".join(r.detail for r in case.reasons))
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.file.getvalue().rstrip("\n")


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
            raise OpsError(f"task queue name {task_queue!r} contains a quote")
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


async def check_traces(report: EndedReport, conn) -> None:
    """Set `trace_recorded` on each case: does `decision_traces` hold a decision of this run (or of its
    chain: a case that continued as new records under its first run)?"""
    if not report.ended:
        return
    rows = await conn.fetch(
        "SELECT case_id, run_id, decision_key FROM decision_traces WHERE case_id = ANY($1::text[])",
        sorted({c.case_id for c in report.ended}),
    )
    runs = {(r["case_id"], r["run_id"]) for r in rows}
    keys = {r["decision_key"] for r in rows}
    for case in report.ended:
        case.trace_recorded = (case.case_id, case.run_id) in runs or f"{case.case_id}#{case.first_run_id}" in keys


async def check_traces_at(report: EndedReport, dsn: str | None, source: str) -> None:
    """`check_traces` through a connection of its own; a database that cannot be read is noted, not fatal."""
    from activities.db import DatabaseUnavailable, connect

    if not report.ended:
        return
    try:
        conn = await connect(dsn, source=source)
    except DatabaseUnavailable as err:
        report.database_problem = str(err)
        return
    try:
        await check_traces(report, conn)
    except (OSError, asyncpg.PostgresError) as err:
        report.database_problem = f"cannot read decision_traces: {type(err).__name__}: {err}"
    finally:
        await conn.close()


def retention_note(since: timedelta, retention: timedelta | None) -> str:
    """Said when the window reaches further back than the namespace keeps closed workflows."""
    if retention is None or retention >= since:
        return ""
    return f" (this namespace keeps closed workflows {human_age(retention)}: older ones are gone)"


def render_ended(report: EndedReport, now: datetime, *, width: int = 140) -> str:
    from rich.console import Console
    from rich.table import Table

    window = f"in the last {human_age(now - report.since)}{retention_note(now - report.since, report.retention)}"
    lines = []
    if report.database_problem:
        lines.append(f"decision traces not checked: {report.database_problem}")
    if not report.ended:
        return "\n".join([f"no case ended without a recorded outcome {window}", *lines])
    table = Table()
    # case IDs whole (an operator copies them), the reason wraps
    table.add_column("case", no_wrap=True, min_width=max(len(c.case_id) for c in report.ended))
    for name in ("status", "closed"):
        table.add_column(name, no_wrap=True)
    table.add_column("why", overflow="fold")
    table.add_column("trace", no_wrap=True)
    for case in report.ended:
        closed = f"{human_age(now - case.closed_at)} ago" if case.closed_at else "?"
        trace = {True: "recorded", False: "none", None: "?"}[case.trace_recorded]
        table.add_row(case.case_id, case.status_text, closed, case.why, trace)
    buffer = io.StringIO()
    console = Console(width=width, file=buffer, color_system=None)
    # the heading on one line, however narrow the table: the retention note must stay readable
    console.print(f"{len(report.ended)} cases ended without a recorded outcome {window}", soft_wrap=True)
    console.print(table)
    return "\n".join([buffer.getvalue().rstrip("\n"), *lines])


# -- replay --------------------------------------------------------------------------------------


class ReplayOutcome(BaseModel):
    case_id: str
    run_id: str
    clean: bool
    event_id: int | None = None
    event_type: str | None = None
    detail: str = "replayed clean"

    def line(self) -> str:
        where = f" at event {self.event_id} ({self.event_type})" if self.event_id is not None else ""
        verdict = "replayed clean" if self.clean else f"diverged{where}: {self.detail}"
        return f"{self.case_id} (run {self.run_id}): {verdict}"


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_HISTORY_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)\)")


def replay_outcome(history: WorkflowHistory, failure: Exception | None) -> ReplayOutcome:
    try:
        run_id = history.run_id
    except RuntimeError:
        run_id = "?"
    if failure is None:
        return ReplayOutcome(case_id=history.workflow_id, run_id=run_id, clean=True)
    text = str(failure)
    inner = _CORE_MESSAGE.search(text)
    message = inner.group(1).replace('\\"', '"') if inner else text
    event = _HISTORY_EVENT.search(message)
    event_id, event_type = (int(event.group(1)), event.group(2)) if event else _patch_marker_event(history, message)
    return ReplayOutcome(
        case_id=history.workflow_id,
        run_id=run_id,
        clean=False,
        event_id=event_id,
        event_type=event_type,
        detail=message.splitlines()[0] if message else type(failure).__name__,
    )


_PATCH_MARKER = re.compile(r"patch marker encountered for change (\S+),")


def _patch_marker_event(history: WorkflowHistory, message: str) -> tuple[int | None, str | None]:
    """Core names no event when code lacks a `workflow.patched` the history has: find its marker."""
    patch = _PATCH_MARKER.search(message)
    if patch is None:
        return None, None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and any(
            patch.group(1).encode() in payload.data
            for detail in event.marker_recorded_event_attributes.details.values()
            for payload in detail.payloads
        ):
            return event.event_id, "MarkerRecorded"
    return None, None


async def _as_async(histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    if hasattr(histories, "__aiter__"):
        async for history in histories:  # type: ignore[union-attr]
            yield history
    else:
        for history in histories:  # type: ignore[union-attr]
            yield history


async def replay_histories(
    histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory],
    *,
    workflows: Sequence[type] | None = None,
    runtime=None,
) -> list[ReplayOutcome]:
    """Replay each history against the workflow code (the worker's WORKFLOWS, runner and converter by default:
    a replay must decode payloads exactly as the worker does, see CasePayloadConverter)."""
    from temporalio.worker import Replayer

    from workers.client import WORKER_DATA_CONVERTER
    from workers.worker import WORKFLOW_RUNNER, WORKFLOWS

    replayer = Replayer(
        workflows=list(workflows or WORKFLOWS),
        data_converter=WORKER_DATA_CONVERTER,
        workflow_runner=WORKFLOW_RUNNER,
        runtime=runtime,
    )
    outcomes = []
    async with replayer.workflow_replay_iterator(_as_async(histories)) as results:
        async for result in results:
            outcomes.append(replay_outcome(result.history, result.replay_failure))
    return outcomes


async def fetch_case_history(client: Client, case_id: str) -> WorkflowHistory:
    try:
        return await client.get_workflow_handle(case_id).fetch_history()
    except RPCError as err:
        raise _translate(case_id, err) from err


def load_history_file(path: Path) -> WorkflowHistory:
    """A history JSON file (`hitl ops export`, `temporal workflow show -o json`, the UI).

    The JSON holds no workflow ID, and a case refuses to run under any ID but its own (so a replay
    under the file's name would diverge): a case's history is replayed under the case ID its start
    payload names, any other under the file's stem."""
    try:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
    except (OSError, ValueError) as err:
        raise OpsError(f"{path}: not a workflow history: {str(err).splitlines()[0]}") from err
    if not history.events:
        raise OpsError(f"{path}: the history has no events")
    case_id = started_case_id(history)
    return WorkflowHistory(case_id, history.events) if case_id else history


def started_case_id(history: WorkflowHistory) -> str | None:
    """The case ID a case workflow's history was started for, from its first event, or None."""
    started = history.events[0].workflow_execution_started_event_attributes
    kinds = {name: kind for kind, name in WORKFLOW_TYPES.items()}
    kind = kinds.get(started.workflow_type.name)
    if kind is None or len(started.input.payloads) != 1:
        return None
    try:
        value = loads_strict(started.input.payloads[0].data)
    except JsonInputError:
        return None
    if isinstance(value, dict) and value.get("carried_over") is True and isinstance(value.get("workflow_id"), str):
        return value["workflow_id"]  # a run that continued a case
    try:
        return REQUEST_MODELS[kind].model_validate(value).case_id()
    except ValidationError:
        return None


def export_file_name(case_id: str) -> str:
    """'renewal_discount_exception:acme/fy26' -> 'renewal_discount_exception--acme--fy26.json' (the fixtures' style)."""
    return re.sub(r"[:/#\\\s]+", "--", case_id).strip("-") + ".json"


# -- operator actions ----------------------------------------------------------------------------


def _translate(case_id: str, err: RPCError) -> OpsError:
    if err.status == RPCStatusCode.NOT_FOUND:
        if "completed" in err.message.lower():
            return ActionRefused(f"case {case_id} is already closed")
        return CaseNotFound(f"no case {case_id}")
    return OpsError(f"{case_id}: {err.message}")


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
        raise _translate(case_id, err) from err
    except TimeoutError as err:
        raise OpsError(
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
        raise _translate(case_id, err) from err
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
            f"{self.case_id}: reset activity {a.activity_id} ({a.activity_type}, attempt {a.attempt}: {a.last_error}) to attempt 1, "
            + ("once its running attempt times out" if a.running else "now")
            for a in self.activities
        )


async def plan_retry(client: Client, case_id: str) -> RetryPlan:
    """Find what is failing; OpsError when nothing is (there is nothing to retry)."""
    try:
        description = await client.get_workflow_handle(case_id).describe()
    except RPCError as err:
        raise _translate(case_id, err) from err
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise ActionRefused(f"case {case_id} is not running ({description.status.name.lower() if description.status else 'unknown'})")
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
        raise _translate(plan.case_id, err) from err


# -- the commands --------------------------------------------------------------------------------


def _operator_option(function):
    return click.option(
        "--as",
        "operator",
        envvar="USER",
        required=True,
        help="Operator id recorded with the action [default: $USER].",
    )(function)


def _yes_option(function):
    return click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")(function)


def _confirmed(question: str, yes: bool) -> bool:
    if yes:
        return True
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # no terminal / end of input: never act without an answer
        click.echo("", err=True)
        return False


NOT_CONFIRMED = "not confirmed; nothing was done (pass --yes to skip the question)"


def register(cli: click.Group, *, load_settings, run_command, state_dir_option, fail) -> None:
    """Add `hitl ops ...` and `hitl report` to the `hitl` group."""

    def action(kind: OperatorActionKind, operator: str, reason: str, group: str | None = None) -> OperatorAction:
        try:
            return OperatorAction(action=kind, operator=operator, reason=reason, group=group)
        except ValidationError as err:
            fail(format_validation_error(err).replace("invalid decision", "invalid operator action"))
            raise  # unreachable: fail exits

    @cli.group()
    def ops() -> None:
        """Operate cases: find stuck ones, replay histories, retry, escalate, reassign, cancel."""

    @ops.command()
    @state_dir_option
    @click.option("--older-than", type=DURATION, default=None, help="Only cases started longer ago than this (e.g. 1h, 2d).")
    @click.option("--attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Flag activities that failed more than this many attempts.")
    @click.option("--grace", type=DURATION, default="5m", show_default=True, help="How far past its deadline a waiting case may be.")
    @click.option("--task-queue", default=None, help="Only cases on this task queue.")
    @click.option(
        "--since",
        type=DURATION,
        default="7d",
        show_default=True,
        help="Also list cases that ended without a recorded outcome within this window "
        "(the dev server's namespace keeps closed workflows 1 day).",
    )
    @click.option("--concurrency", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Cases described at once.")
    @click.option("--json", "as_json", is_flag=True)
    def stuck(state_dir, older_than, attempts, grace, task_queue, since, concurrency, as_json) -> None:
        """Every running case that needs an operator, and why: a failing workflow task, an activity
        retrying past --attempts, a deadline long passed, or no worker polling its task queue. Then the
        cases that ended without a recorded outcome within --since (terminated, timed out, failed,
        refused starts), why, and whether PostgreSQL holds a decision trace for them."""
        from workers.config import resolve_database_url

        settings = load_settings(state_dir)

        async def body() -> int:
            client = await connect_client(settings)
            now = datetime.now(UTC)
            report, ended = await asyncio.gather(
                find_stuck(
                    client,
                    criteria=StuckCriteria(activity_attempts=attempts, deadline_grace=grace),
                    older_than=older_than,
                    task_queue=task_queue,
                    concurrency=concurrency,
                    now=now,
                ),
                find_ended(client, since=now - since, task_queue=task_queue, concurrency=concurrency),
            )
            database = resolve_database_url(settings)
            await check_traces_at(ended, database.value, database.source)
            if as_json:
                document = {
                    "query": report.query,
                    "checked": report.checked,
                    "stuck": [c.model_dump(mode="json") for c in report.stuck],
                    "ended_query": ended.query,
                    "ended_since": ended.since.isoformat(),
                    "ended": [c.model_dump(mode="json") for c in ended.ended],
                    "database_problem": ended.database_problem,
                }
                click.echo(json.dumps(document, indent=2))
            else:
                click.echo(render_stuck(report, now))
                click.echo("")
                click.echo(render_ended(ended, now))
            return 0

        run_command(body)

    @ops.command()
    @state_dir_option
    @click.argument("case_id", required=False)
    @click.option("--query", default=None, help="Replay every workflow this visibility query lists.")
    @click.option("--file", "files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A history JSON file (repeatable).")
    @click.option("--json", "as_json", is_flag=True)
    def replay(state_dir, case_id, query, files, as_json) -> None:
        """Replay histories against the current workflow code: exit 0 when all replay clean, 1 on any divergence.

        Give a CASE_ID, a visibility --query, or history --file(s) (from `hitl ops export` or
        `temporal workflow show -o json`)."""
        if sum(bool(x) for x in (case_id, query, files)) != 1:
            fail("give exactly one of CASE_ID, --query or --file")
        settings = load_settings(state_dir)

        async def body() -> int:
            from temporalio.runtime import (
                LoggingConfig,
                Runtime,
                TelemetryConfig,
                TelemetryFilter,
            )

            # A divergence is the answer here, not an incident: keep the SDK's own failure logs quiet.
            logging.getLogger("temporalio").setLevel(logging.CRITICAL)
            runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))
            if files:
                histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory] = [load_history_file(p) for p in files]
            else:
                client = await connect_client(settings)
                if case_id:
                    histories = [await fetch_case_history(client, await CaseClient(client, settings.task_queue).resolve_case_id(case_id))]
                else:
                    histories = client.list_workflows(query).map_histories()
            try:
                outcomes = await replay_histories(histories, runtime=runtime)
            except RPCError as err:
                raise OpsError(f"cannot list or fetch histories: {err.message}") from err
            if as_json:
                click.echo(json.dumps([o.model_dump() for o in outcomes], indent=2))
            else:
                for outcome in outcomes:
                    click.echo(outcome.line())
                if not outcomes:
                    click.echo("no histories to replay")
            return 0 if all(o.clean for o in outcomes) else 1

        run_command(body)

    @ops.command()
    @state_dir_option
    @click.argument("case_id")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write ('-' for stdout) [default: named after the case].")
    def export(state_dir, case_id, output) -> None:
        """Write CASE_ID's history as JSON, for `hitl ops replay --file` and tests/histories/."""
        settings = load_settings(state_dir)

        async def body() -> int:
            client = await connect_client(settings)
            resolved = await CaseClient(client, settings.task_queue).resolve_case_id(case_id)
            history = await fetch_case_history(client, resolved)
            if output is not None and str(output) == "-":
                click.echo(history.to_json())
                return 0
            path = output or Path(export_file_name(resolved))
            path.write_text(history.to_json() + "\n")
            click.echo(f"wrote {path}: {len(history.events)} events of {resolved} (run {history.run_id})")
            return 0

        run_command(body)

    @ops.command()
    @state_dir_option
    @click.argument("case_id")
    @click.option("--reason", required=True, help="Why (kept in the trace).")
    @_operator_option
    @_yes_option
    def retry(state_dir, case_id, reason, operator, yes) -> None:
        """Retry what is failing now: reset failing activities to attempt 1, or reset a failing
        workflow task to the last good one; then note the retry in the case (and its trace)."""
        settings = load_settings(state_dir)
        note = action(OperatorActionKind.RETRY, operator, reason)

        async def body() -> int:
            client = await connect_client(settings)
            try:
                case = await CaseClient(client, settings.task_queue).resolve_case_id(case_id)
                plan = await plan_retry(client, case)
            except ActionRefused as err:
                click.echo(f"hitl: refused: {err}", err=True)
                return 1
            except CaseError as err:
                click.echo(f"hitl: {err}", err=True)
                return 1
            if not _confirmed(f"{plan.describe()}\nGo ahead as {operator}?", yes):
                click.echo(f"hitl: {NOT_CONFIRMED}", err=True)
                return 1
            done = await execute_retry(client, plan, operator=operator, reason=reason)
            click.echo(f"{case}: {done}")
            try:
                # the operator's words and what was reset, in the trace
                noted = await send_operator_action(client, case, note.model_copy(update={"reason": f"{reason} ({done})"}))
            except OpsError as err:
                click.echo(f"hitl: {done}, but the retry note was not recorded: {err}", err=True)
                return 1
            click.echo(f"{case}: {noted.result}")
            return 0

        run_command(body)

    def simple_action(name: str, kind: OperatorActionKind, question: str, help_text: str, with_group: bool = False) -> None:
        @click.option("--reason", required=True, help="Why (kept in the trace).")
        @_operator_option
        @_yes_option
        def command(state_dir, case_id, reason, operator, yes, group=None) -> None:
            settings = load_settings(state_dir)
            request = action(kind, operator, reason, group)
            if not _confirmed(question.format(case=case_id, operator=operator, reason=reason, group=group), yes):
                fail(NOT_CONFIRMED, 1)

            async def body() -> int:
                client = await connect_client(settings)
                try:
                    case = await CaseClient(client, settings.task_queue).resolve_case_id(case_id)
                    if kind == OperatorActionKind.CANCEL:
                        outcome = await cancel_case(client, case, request)
                        click.echo(f"{case}: {outcome.result}")
                        if outcome.interrupted:
                            click.echo(f"{case}: sent Temporal cancellation; the case records who and why as it stops")
                    else:
                        click.echo(f"{case}: {(await send_operator_action(client, case, request)).result}")
                except ActionRefused as err:
                    click.echo(f"hitl: refused: {err}", err=True)
                    return 1
                except CaseError as err:
                    click.echo(f"hitl: {err}", err=True)
                    return 1
                return 0

            run_command(body)

        command = click.argument("case_id")(command)
        command = state_dir_option(command)
        if with_group:
            command = click.option("--group", required=True, help="Reviewer group that takes over the current level.")(command)
        ops.command(name=name, help=help_text)(command)

    simple_action(
        "escalate",
        OperatorActionKind.ESCALATE,
        "Escalate {case} to the next level now, as {operator} (reason: {reason})?",
        "Move CASE_ID's gate to the next level now (reminders and deadlines restart there).",
    )
    simple_action(
        "reassign",
        OperatorActionKind.REASSIGN,
        "Give the current level of {case} to group {group}, as {operator} (reason: {reason})?",
        "Give the current level of CASE_ID's gate to another reviewer --group.",
        with_group=True,
    )
    simple_action(
        "cancel",
        OperatorActionKind.CANCEL,
        "Cancel {case} as {operator} (reason: {reason})? It ends with outcome 'cancelled'.",
        "End CASE_ID with outcome 'cancelled' (interrupting work in progress), recorded in the trace.",
    )

    @cli.command()
    @state_dir_option
    @click.option("--since", type=DURATION, default="30d", show_default=True, help="Decisions recorded within this window.")
    @click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a chart to this PNG file.")
    @click.option("--json", "as_json", is_flag=True)
    def report(state_dir, since, png, as_json) -> None:
        """Time to decision, escalation, timeout and override rates per gate, and the share decided by
        policy per kind, from the recorded decision traces (seeded history excluded); and per kind, the
        cases that ended without a recorded outcome (from Temporal: they have no trace)."""
        from activities.db import connect
        from workers.client import TemporalUnavailable
        from workers.config import resolve_database_url
        from workers.report import (
            compute_report,
            count_ended,
            fetch_report_rows,
            render_text,
            write_png,
        )

        settings = load_settings(state_dir)

        async def body() -> int:
            until = datetime.now(UTC)
            start = until - since
            database = resolve_database_url(settings)
            conn = await connect(database.value, source=database.source)
            try:
                rows = await fetch_report_rows(conn, since=start)
            finally:
                await conn.close()
            result = compute_report(rows, since=start, until=until)
            try:  # Temporal down: the traces still make a report
                client = await connect_client(settings)
                ended, retention = await asyncio.gather(count_ended(client, since=start), namespace_retention(client))
                result = result.model_copy(update={"ended": ended, "ended_note": retention_note(since, retention).strip(" ()") or None})
            except (TemporalUnavailable, RPCError) as err:
                result = result.model_copy(update={"ended_note": f"Temporal not reachable: {getattr(err, 'message', None) or err}"})
            if png is not None:
                write_png(result, png)
            if as_json:
                click.echo(result.model_dump_json(indent=2))
            else:
                click.echo(render_text(result))
                if png is not None:
                    click.echo(f"chart written to {png}")
            return 0

        run_command(body)
