"""The typed client services use to start and decide cases (and the CLI uses too).

    cases = CaseClient(await connect_client(Settings()))
    started = await cases.start_case(RenewalDiscountRequest(...))
    view = await cases.get_case(started.case_id)
    receipt = await cases.decide(started.case_id, Decision(outcome="approve", reviewer="fin_rev_ana", reason="..."))
    result = await cases.wait_for_decision(started.case_id)
    case_id = await cases.resolve_case_id("acme_enterprise/fy26")   # full ID, unique prefix or business key
    page = await cases.inbox(gate="finance", reviewer="fin_rev_ana", reviewer_groups=["finance_reviewers"])
    page.items, page.total                # the oldest 50 waiting, and how many wait in all

Idempotent by business key: the case ID is derived from it, and starting a case that exists
returns the existing one (unless it ended without a recorded outcome: then it starts again).
Usable from any asyncio service.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, HistoryEventFilterType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import WorkflowExecutionConfig, WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    GetWorkflowExecutionHistoryRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gates.cases import KIND_ALIASES, WORKFLOW_TYPES, CaseKind, CaseRequest, case_id_for
from gates.gate import Decision, DecisionReceipt
from gates.presentation import static_details, static_summary
from gates.trace import CaseResult, CaseView
from workers.config import DEFAULT_TASK_QUEUE
from workers.inbox import (
    CutoffSearch,
    InboxPage,
    InvalidQueryValue,
    Window,
    case_types_clause,
    inbox_item,
    inbox_query,
    oldest_first,
    quote,
)
from workflows import search_attributes as sa


class CaseError(RuntimeError):
    """A case operation a user can act on (unknown case, rejected decision, ...): one-line message."""


class CaseNotFound(CaseError):
    pass


class AmbiguousCase(CaseError):
    """A prefix or business key that matches more than one case; `candidates` holds their IDs."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


class DecisionRejected(CaseError):
    pass


class NoWorker(CaseError):
    """Nobody answered: no worker polls the case's task queue (or it is overloaded)."""


class CaseEnded(CaseError):
    """The case's workflow ended without a recorded outcome (terminated, timed out or failed, e.g. a
    refused start): a query would replay its history and show it as it was, so it is refused instead.
    `status` is "terminated", "timed out" or "failed"; `why` what its closing event says."""

    def __init__(self, message: str, *, status: str, why: str):
        super().__init__(message)
        self.status = status
        self.why = why


# Closed without the workflow returning a result, so the case recorded no outcome. (A cancelled case
# records 'cancelled' before it stops; a completed one its decision.) Also the runs `start_case`
# may replace: what ID reuse policy ALLOW_DUPLICATE_FAILED_ONLY allows, minus cancelled.
ENDED_WITHOUT_OUTCOME: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.FAILED: "failed",
}


# How many candidates an ambiguous lookup names.
MAX_CANDIDATES = 5


@dataclass(frozen=True)
class StartedCase:
    case_id: str
    created: bool  # False when the case already existed (running, decided or cancelled)
    # When this start replaced a run that ended without a recorded outcome: how that run ended
    # ("terminated", "timed out", "failed", e.g. a refused start under this case's ID).
    replaced: str | None = None


def workflow_type_for(kind: CaseKind) -> str:
    return WORKFLOW_TYPES[kind]


def case_kind(text: str) -> CaseKind:
    """`renewal` or `renewal_discount_exception` -> CaseKind.RENEWAL; CaseError for anything else."""
    kind = KIND_ALIASES.get(text.strip().lower())
    if kind is None:
        raise CaseError(f"unknown kind {text!r}; one of {', '.join(sorted(KIND_ALIASES))}")
    return kind


class CaseClient:
    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE):
        self.client = client
        self.task_queue = task_queue

    async def start_case(self, request: CaseRequest) -> StartedCase:
        """Start the case, or return the existing one (created=False) when it runs, was decided or was
        cancelled. A run under this ID that ended without a recorded outcome (terminated, timed out,
        failed: also someone else's payload refused under this case's ID) would otherwise block the
        real case forever, so the case is started again over it (`replaced` says how it ended)."""
        case_id = request.case_id()
        try:
            # a decided case stays decided: the same business key does not reopen it
            await self._start(request, WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            ended = await self._ended_status(case_id)
            if ended is None:
                return StartedCase(case_id=case_id, created=False)
            try:
                # the server checks the latest run again: a run started or decided meanwhile wins
                await self._start(request, WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
            except WorkflowAlreadyStartedError:
                return StartedCase(case_id=case_id, created=False)
            return StartedCase(case_id=case_id, created=True, replaced=ended)
        return StartedCase(case_id=case_id, created=True)

    async def _start(self, request: CaseRequest, reuse: WorkflowIDReusePolicy) -> None:
        # the case's own UI text (gates/presentation.py): the case refuses a start that shows any other
        await self.client.start_workflow(
            workflow_type_for(request.kind),
            request,
            id=request.case_id(),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=reuse,
            static_summary=static_summary(request),
            static_details=static_details(request),
        )

    async def _ended_status(self, case_id: str) -> str | None:
        """How the latest run under `case_id` ended, if it ended without a recorded outcome."""
        try:
            description = await self.handle(case_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise _translate(case_id, err) from err
        return ENDED_WITHOUT_OUTCOME.get(description.status) if description.status else None

    def handle(self, case_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(case_id)

    async def get_case(self, case_id: str) -> CaseView:
        """The case as `hitl show` prints it. Described first: a case that ended without a recorded
        outcome raises CaseEnded (saying why) rather than a view replayed from its history."""
        try:
            description = await self.handle(case_id).describe()
            status = ENDED_WITHOUT_OUTCOME.get(description.status) if description.status else None
            if status is not None:
                why = await why_ended(
                    self.client, case_id, description.run_id, execution_config=description.raw_description.execution_config
                )
                raise CaseEnded(f"case {case_id} ended without a recorded outcome: {why}", status=status, why=why)
            return await self.handle(case_id).query("case_state", result_type=CaseView)
        except WorkflowQueryFailedError as err:  # e.g. "case is starting; ask again in a moment"
            raise CaseError(f"{case_id}: {err.message or err}") from err
        except RPCError as err:
            raise _translate(case_id, err) from err

    async def decide(self, case_id: str, decision: Decision, *, timeout: float | None = None) -> DecisionReceipt:
        """Decide through the update: validated before anything is written; raises DecisionRejected with the reason.

        Without a running worker the update waits; `timeout` (seconds) turns that into NoWorker. The
        server keeps the update, so it may still be applied when a worker starts."""
        update = self.handle(case_id).execute_update("submit_decision", decision, result_type=DecisionReceipt)
        try:
            # the SDK keeps polling an update no worker has taken: bound the whole call, not one RPC
            return await (asyncio.wait_for(update, timeout) if timeout is not None else update)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if timeout is None:
                raise
            raise NoWorker(
                f"no worker answered for {case_id} within {timeout:g}s; is a worker (`hitl worker` or `hitl dev`) "
                "running on its task queue? The decision may still apply when one starts: check with `hitl show`"
            ) from None
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise DecisionRejected(message) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                # "already completed", or "update was aborted by closing workflow" when the decision
                # races the case's completion: ask Temporal whether the case exists before saying it doesn't.
                raise await self._closed(case_id) from err
            raise _translate(case_id, err) from err

    async def _closed(self, case_id: str) -> CaseError:
        """Why a case takes no decision after a NOT_FOUND: decided (with the outcome), ended some other
        way, or really unknown."""
        try:
            description = await self.handle(case_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return CaseNotFound(f"no case {case_id}")
            return CaseError(f"{case_id}: {err.message}")
        if description.status == WorkflowExecutionStatus.COMPLETED:
            outcome = description.typed_search_attributes.get(sa.OUTCOME)
            return DecisionRejected(f"case {case_id} is already decided" + (f": {outcome}" if outcome else ""))
        status = description.status.name.lower().replace("_", " ") if description.status else "closed"
        return DecisionRejected(f"case {case_id} is closed ({status}) and takes no decision")

    # -- finding cases ---------------------------------------------------------------------------

    async def resolve_case_id(self, text: str) -> str:
        """The case ID for a full case ID, a unique case ID prefix, or a business key (`acme_enterprise/fy26`).

        Raises CaseNotFound ("no case matching X") or AmbiguousCase (naming up to 5 candidates).
        Order: the exact ID (strongly consistent); then visibility (`WorkflowId STARTS_WITH` or
        `HitlBusinessKey` equal to / starting with the text, an exact business key winning over
        prefixes); then, for a case too new to be visible yet, `<kind>:<business key>` for each kind."""
        text = text.strip()
        if not text:
            raise CaseNotFound("no case matching an empty case ID")
        if await self._exists(text):
            return text
        candidates: list[str] = []
        try:
            exact_keys, prefixed = await self._visible_matches(text)
            candidates = exact_keys or prefixed
        except InvalidQueryValue:
            pass  # cannot be a case ID, prefix or business key: characters no case ID has
        if not candidates and ":" not in text:
            candidates = [cid for kind in CaseKind if (cid := case_id_for(kind, text)) != text and await self._exists(cid)]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            full_id = text.split(":", 1)[0] in {kind.value for kind in CaseKind}
            raise CaseNotFound(f"no case {text}" if full_id else f"no case matching {text}")
        shown = ", ".join(candidates[:MAX_CANDIDATES]) + (", ..." if len(candidates) > MAX_CANDIDATES else "")
        raise AmbiguousCase(f"{text} matches {len(candidates)} cases: {shown}", candidates)

    async def _exists(self, case_id: str) -> bool:
        try:
            await self.handle(case_id).describe()
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                return False
            raise _translate(case_id, err) from err
        return True

    async def _visible_matches(self, text: str) -> tuple[list[str], list[str]]:
        """(IDs whose business key is `text`, IDs whose case ID or business key starts with it), sorted."""
        literal = quote(text)
        # our types on our task queue: a workflow posing as a case (any ID and attributes its starter
        # chose) on a queue our worker never polls is not one
        query = (
            f"{case_types_clause()} AND TaskQueue = {quote(self.task_queue)} AND "
            f"(WorkflowId STARTS_WITH {literal} OR {sa.BUSINESS_KEY.name} STARTS_WITH {literal})"
        )
        exact: set[str] = set()
        prefixed: set[str] = set()
        try:
            async for execution in self.client.list_workflows(query, limit=200):
                prefixed.add(execution.id)
                if execution.typed_search_attributes.get(sa.BUSINESS_KEY) == text:
                    exact.add(execution.id)
        except RPCError as err:
            raise CaseError(f"cannot search cases: {err.message}") from err
        return sorted(exact), sorted(prefixed)

    async def inbox(
        self,
        *,
        gate: str | None = None,
        kind: CaseKind | str | None = None,
        reviewer: str | None = None,
        reviewer_groups: Sequence[str] | None = None,
        limit: int | None = 50,
        now: datetime | None = None,
    ) -> InboxPage:
        """The oldest `limit` cases waiting for a decision (all with `limit=None`), oldest gate first,
        and how many wait in all: visibility counts and one listing, no per-case calls.

        With `reviewer`, only what they may decide now: cases whose eligible groups include one of
        `reviewer_groups` (their directory groups, see `workers.inbox.reviewer_groups`) and that they
        did not request. Visibility is eventually consistent: a gate opened a moment ago may be missing,
        and a case decided while the page is read is just left out."""
        if reviewer is not None and reviewer_groups is None:
            raise ValueError("inbox(reviewer=...) needs reviewer_groups: the groups the reviewer sits in")
        if limit is not None and limit < 1:
            raise ValueError("inbox(limit=...) must be at least 1, or None for every case")
        if reviewer is not None and not reviewer_groups:
            return InboxPage(items=[], total=0)  # in no reviewer group: nothing to decide
        kind_value = (kind.value if isinstance(kind, CaseKind) else case_kind(kind).value) if kind else None
        try:
            query = inbox_query(
                task_queue=self.task_queue,
                gate=gate,
                kind=kind_value,
                eligible_groups=list(reviewer_groups) if reviewer is not None else None,  # type: ignore[arg-type]
                exclude_requester=reviewer,
            )
        except InvalidQueryValue as err:
            raise CaseError(str(err)) from err
        now = now or datetime.now(UTC)
        total, window = 0, None
        try:
            if limit is not None:
                total = await self._count(query)
                if total > limit:
                    window = await self._oldest_window(query, limit, now)
            listing = query if window is None else window.query(query)
            items = oldest_first([inbox_item(info, now) async for info in self._list_raw(listing)])
        except RPCError as err:
            raise CaseError(f"cannot list the inbox: {err.message}") from err
        if window is None:  # everything was listed: its length is the freshest total
            total = len(items)
        return InboxPage(items=items[:limit], total=total)

    async def _oldest_window(self, query: str, limit: int, now: datetime) -> Window | None:
        """A window of HitlGateOpenedAt holding the oldest `limit` cases of `query` (see CutoffSearch)."""
        search = CutoffSearch(limit, now)
        while windows := search.probes():
            counts = await asyncio.gather(*(self._count(window.query(query)) for window in windows))
            for window, count in zip(windows, counts):
                search.record(window, count)
        return search.listing()

    async def _count(self, query: str) -> int:
        return (await self.client.count_workflows(query)).count

    async def _list_raw(self, query: str) -> AsyncIterator[WorkflowExecutionInfo]:
        """`ListWorkflowExecutions` pages, undecoded: `workers.inbox.inbox_item` reads only what it shows."""
        token = b""
        while True:
            page = await self.client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=self.client.namespace, query=query, page_size=1000, next_page_token=token
                ),
                retry=True,
            )
            for info in page.executions:
                yield info
            token = page.next_page_token
            if not token:
                return

    async def wait_for_decision(self, case_id: str) -> CaseResult:
        try:
            return await self.client.get_workflow_handle(case_id, result_type=CaseResult).result()
        except RPCError as err:
            raise _translate(case_id, err) from err


def _translate(case_id: str, err: RPCError) -> CaseError:
    if err.status == RPCStatusCode.NOT_FOUND:
        if "already completed" in err.message or "completed" in err.message.lower():
            return DecisionRejected(f"case {case_id} is already decided")
        return CaseNotFound(f"no case {case_id}")
    if err.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED) or "before a worker" in err.message:
        return NoWorker(
            f"no worker answered for {case_id} ({err.message}); is a worker (`hitl worker` or `hitl dev`) running on its task queue?"
        )
    return CaseError(f"{case_id}: {err.message}")


def failure_text(failure) -> str:
    """'Type: message' of a temporal.api.failure.v1.Failure (innermost cause kept short)."""
    kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
    text = f"{kind}: {failure.message}" if kind else failure.message
    if failure.HasField("cause") and failure.cause.message and failure.cause.message not in text:
        text += f" (cause: {failure_text(failure.cause)})"
    return text


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts[:2]) or "0s"


def _payload_texts(payloads) -> list[str]:
    """Terminate details as text (JSON strings unquoted); undecodable ones are skipped."""
    texts = []
    for payload in payloads:
        try:
            value = json.loads(payload.data)
        except ValueError:
            continue
        texts.append(value if isinstance(value, str) else json.dumps(value))
    return texts


def ended_reason(event: HistoryEvent, execution_config: WorkflowExecutionConfig | None = None) -> str:
    """Why a run ended without an outcome, from its closing history event, one line: who terminated
    it and why, which timeout passed (its starter chose it), or the failure (a refused start's reason)."""
    closed = event.event_time.ToDatetime(tzinfo=UTC)
    at = f" at {closed:%Y-%m-%d %H:%M}Z"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        attrs = event.workflow_execution_terminated_event_attributes
        details = "; ".join(_payload_texts(attrs.details.payloads))
        reason = attrs.reason or "no reason given"
        return f"terminated{at} by {attrs.identity or 'unknown'}: {reason}" + (f" ({details})" if details else "")
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        timeouts = []
        if execution_config is not None:
            execution = execution_config.workflow_execution_timeout.seconds
            run = execution_config.workflow_run_timeout.seconds
            if execution:
                timeouts.append(f"execution timeout {_duration(execution)}")
            if run and run != execution:  # the server sets the run timeout to the execution timeout
                timeouts.append(f"run timeout {_duration(run)}")
        chosen = ", ".join(timeouts) or "a timeout"
        return f"timed out{at} ({chosen}, set by whoever started it)"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        return f"failed{at}: {failure_text(event.workflow_execution_failed_event_attributes.failure)}"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return f"cancelled{at}"
    return f"closed{at} ({EventType.Name(event.event_type).removeprefix('EVENT_TYPE_').lower()})"


async def why_ended(
    client: Client, workflow_id: str, run_id: str, *, execution_config: WorkflowExecutionConfig | None = None
) -> str:
    """`ended_reason` of the run's closing event (one history call; a describe for a timeout's length
    when `execution_config` is not given)."""
    answer = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
        ),
        retry=True,
    )
    if not answer.history.events:
        return "no closing event in its history"
    event = answer.history.events[-1]
    if execution_config is None and event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        execution_config = description.raw_description.execution_config
    return ended_reason(event, execution_config)

