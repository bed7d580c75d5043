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
returns the existing one. Usable from any asyncio service.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator, Sequence

from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
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
from gates.kinds import SPECS
from gates.trace import CaseResult, CaseView
from workers.config import DEFAULT_TASK_QUEUE
from workers.inbox import (
    CutoffSearch,
    InboxPage,
    InvalidQueryValue,
    Window,
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


# How many candidates an ambiguous lookup names.
MAX_CANDIDATES = 5


@dataclass(frozen=True)
class StartedCase:
    case_id: str
    created: bool  # False when the case already existed (running or decided)


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
        spec = SPECS[request.kind]
        case_id = request.case_id()
        try:
            await self.client.start_workflow(
                workflow_type_for(request.kind),
                request,
                id=case_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                # a decided case stays decided: the same business key does not reopen it
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                static_summary=f"{spec.gate_title}: {spec.ask(request)}",
                static_details=_static_details(request),
            )
        except WorkflowAlreadyStartedError:
            return StartedCase(case_id=case_id, created=False)
        return StartedCase(case_id=case_id, created=True)

    def handle(self, case_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(case_id)

    async def get_case(self, case_id: str) -> CaseView:
        try:
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
        except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
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
        types = ", ".join(quote(workflow_type_for(kind)) for kind in CaseKind)
        literal = quote(text)
        query = (
            f"WorkflowType IN ({types}) AND "
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
                gate=gate,
                kind=kind_value,
                eligible_groups=list(reviewer_groups) if reviewer is not None else None,  # type: ignore[arg-type]
                exclude_requester=reviewer,
            )
        except InvalidQueryValue as err:
            raise CaseError(str(err)) from err
        now = now or datetime.now(timezone.utc)
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


def _static_details(request: CaseRequest) -> str:
    spec = SPECS[request.kind]
    fields = "\n".join(f"- **{k}**: {v}" for k, v in request.model_dump(mode="json").items())
    return (
        f"**{request.kind.value}** at the {spec.gate_title} gate\n\n"
        f"Business key `{request.business_key()}`\n\n{fields}\n\n"
        "Live state, who may decide and the exact `decide` signal are under **Current Details**."
    )
