"""`CaseClient`: what a service uses to start, read, decide and operate cases (the CLI uses it too).

    cases = await CaseClient.connect("localhost:7233")     # or CaseClient(client) on a Client of yours
    started = await cases.start_case(RenewalDiscountRequest(...))
    view = await cases.get_case(started.case_id)
    receipt = await cases.decide(started.case_id, Decision(outcome="approve", reviewer="fin_rev_ana", reason="...",
                                                           digest=view.gate.digest, proof=token))
    await cases.request_info(case_id, reviewer="fin_rev_ana", reason="Which contract?", ask="sales_rep_sam", proof=token)
    await cases.answer_info(case_id, answerer="sales_rep_sam", text="The 2025 MSA", proof=token)   # the case waits for it
    result = await cases.wait_for_decision(started.case_id)
    case_id = await cases.resolve_case_id("acme_enterprise/fy26")   # full ID, unique prefix or business key
    page = await cases.inbox(gate="finance", reviewer="fin_rev_ana", reviewer_groups=["finance_reviewers"])
    page.items, page.total                # the oldest 50 waiting, and how many wait in all
    awaiting = await cases.awaiting_info(asked="sales_rep_sam")   # cases waiting for an answer, and from whom
    await cases.escalate(case_id, operator="op_kim", reason="...", proof=token)   # and reassign, cancel, note, retry

Idempotent by business key: the case ID is derived from it, and starting a case that exists
returns the existing one (unless it ended without a recorded outcome: then it starts again).
Usable from any asyncio service. It needs Temporal only: never PostgreSQL, nor the worker's code.

With the worker in verified identity mode (HITL_IDENTITY=verified, the default) every decision and
operator action carries a `proof`, a token from the configured issuer naming the person who acts,
and a decision names the evidence `digest` it was made on (`CaseView.gate.digest`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
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
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from gates import search_attributes as sa
from gates.cases import DEFAULT_TASK_QUEUE, KIND_ALIASES, WORKFLOW_TYPES, CaseKind, CaseRequest, case_id_for
from gates.gate import Decision, DecisionOutcome, DecisionReceipt, OperatorAction, OperatorActionKind, OperatorReceipt
from gates.info_request import AnswerReceipt, InfoAnswer
from gates.presentation import static_details, static_summary
from gates.trace import CaseResult, CaseState, CaseView
from hitl_temporal.codec import KeyRing, encrypted_converter
from hitl_temporal.errors import (
    AmbiguousCase,
    AnswerRejected,
    CaseEnded,
    CaseError,
    CaseNotFound,
    DecisionRejected,
    NoWorker,
    RetryNotNoted,
    rpc_error,
)
from hitl_temporal.history import ENDED_WITHOUT_OUTCOME, why_ended
from hitl_temporal.inbox import (
    AwaitingItem,
    CutoffSearch,
    InboxItem,
    InboxPage,
    InvalidQueryValue,
    Window,
    awaiting_item,
    case_types_clause,
    inbox_item,
    inbox_query,
    oldest_first,
    quote,
)
from hitl_temporal.ops import (
    UPDATE_TIMEOUT,
    CancelOutcome,
    RetryPlan,
    RetryReceipt,
    cancel_case,
    execute_retry,
    plan_retry,
    send_operator_action,
)

_R = TypeVar("_R", bound=BaseModel)

# How many candidates an ambiguous lookup names.
MAX_CANDIDATES = 5
# Queries in flight at once for `awaiting_info` (one per listed case).
AWAITING_QUERIES = 8


@dataclass(frozen=True)
class AwaitingPage:
    """The `items` shown of the `total` cases waiting for an answer (`CaseClient.awaiting_info`)."""

    items: list[AwaitingItem]
    total: int

    @property
    def complete(self) -> bool:
        return len(self.items) >= self.total


@dataclass(frozen=True)
class StartedCase:
    """What `CaseClient.start_case` found or started."""

    case_id: str
    created: bool  # False when the case already existed (running, decided or cancelled)
    # When this start replaced a run that ended without a recorded outcome: how that run ended
    # ("terminated", "timed out", "failed", e.g. a refused start under this case's ID).
    replaced: str | None = None


def workflow_type_for(kind: CaseKind) -> str:
    """The Temporal workflow type a case of `kind` runs as (part of the public interface)."""
    return WORKFLOW_TYPES[kind]


def case_kind(text: str) -> CaseKind:
    """`renewal` or `renewal_discount_exception` -> CaseKind.RENEWAL; CaseError for anything else."""
    kind = KIND_ALIASES.get(text.strip().lower())
    if kind is None:
        raise CaseError(f"unknown kind {text!r}; one of {', '.join(sorted(KIND_ALIASES))}")
    return kind


class CaseClient:
    """Cases on one Temporal namespace and task queue: start, read, find, decide, list and operate them.

    Every method raises a `CaseError` (see `hitl_temporal.errors`) with a one-line message for what
    a user can act on; other errors (a lost connection) are the SDK's own.
    """

    def __init__(self, client: Client, task_queue: str = DEFAULT_TASK_QUEUE):
        """Wrap a connected Temporal client.

        Args:
            client: A client whose data converter is pydantic's
                (`temporalio.contrib.pydantic.pydantic_data_converter`): payloads are pydantic models;
                with the worker's payload codec when it encrypts (`hitl_temporal.codec.encrypted_converter`).
            task_queue: The task queue the case worker polls (HITL_TASK_QUEUE of the worker).
        """
        self.client = client
        self.task_queue = task_queue

    @classmethod
    async def connect(
        cls,
        target_host: str = "localhost:7233",
        *,
        namespace: str = "default",
        task_queue: str = DEFAULT_TASK_QUEUE,
        codec: PayloadCodec | KeyRing | None = None,
        **connect_options: Any,
    ) -> CaseClient:
        """Connect to Temporal with the converter cases need and return a client for them.

        Args:
            target_host: ``host:port`` of the Temporal frontend.
            namespace: The namespace the cases run in.
            task_queue: The task queue the case worker polls.
            codec: When the worker encrypts payloads (HITL_CODEC_KEYS): the same keys, as
                ``KeyRing.parse(os.environ["HITL_CODEC_KEYS"])`` or an ``EncryptionCodec`` over them
                (`hitl_temporal.codec`). Without it, cases the worker encrypted cannot be read.
            connect_options: Passed to `temporalio.client.Client.connect` (TLS, API key, interceptors...).

        Returns:
            A CaseClient on the new connection.
        """
        converter = encrypted_converter(pydantic_data_converter, codec)
        client = await Client.connect(target_host, namespace=namespace, data_converter=converter, **connect_options)
        return cls(client, task_queue)

    async def start_case(self, request: CaseRequest) -> StartedCase:
        """Start the case, or find the existing one.

        A case that runs, was decided or was cancelled is returned with ``created=False``. A run under
        this ID that ended without a recorded outcome (terminated, timed out, failed: also someone
        else's payload refused under this case's ID) would otherwise block the real case forever, so
        the case is started again over it (``replaced`` says how it ended).

        Args:
            request: The case payload (`RenewalDiscountRequest`, `ProcurementRequest`,
                `AccessEscalationRequest`); its business key gives the case ID.

        Returns:
            The case ID and whether this call started it.

        Raises:
            CaseError: Temporal refused the lookup of an existing run.
        """
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
            raise rpc_error(case_id, err) from err
        return ENDED_WITHOUT_OUTCOME.get(description.status) if description.status else None

    def handle(self, case_id: str) -> WorkflowHandle:
        """The Temporal handle of the case's workflow (its ID is the case ID)."""
        return self.client.get_workflow_handle(case_id)

    async def get_case(self, case_id: str) -> CaseView:
        """The case as `hitl show` prints it.

        Described first: a case that ended without a recorded outcome raises CaseEnded (saying why)
        rather than a view replayed from its history.

        Args:
            case_id: The full case ID (see `resolve_case_id` for prefixes and business keys).

        Returns:
            Brief, findings, proposal, gate, deadlines, who may decide, attempts and operator actions.

        Raises:
            CaseNotFound: No case has this ID.
            CaseEnded: The workflow ended without a recorded outcome.
            NoWorker: No worker answered the query.
        """
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
            raise rpc_error(case_id, err) from err

    async def decide(self, case_id: str, decision: Decision, *, timeout: float | None = None) -> DecisionReceipt:
        """Decide the case through its update: validated before anything is written.

        Args:
            case_id: The full case ID.
            decision: Outcome, reviewer and reason.
            timeout: Seconds to wait for a worker to take the update; without it the call waits for
                one. The server keeps the update, so it may still be applied when a worker starts.

        Returns:
            The receipt: the outcome accepted, by whom, at which level.

        Raises:
            DecisionRejected: The case refused the decision (the message says why) or is closed.
            NoWorker: No worker answered within `timeout`.
            CaseNotFound: No case has this ID.
        """
        return await self._update(case_id, "submit_decision", decision, DecisionReceipt, timeout=timeout, what="decision")

    async def request_info(
        self,
        case_id: str,
        *,
        reviewer: str,
        reason: str,
        ask: str | None = None,
        digest: str | None = None,
        proof: str | None = None,
        timeout: float | None = None,
    ) -> DecisionReceipt:
        """Ask a question instead of deciding: the case waits for its answer, then returns to the gate.

        Args:
            case_id: The full case ID.
            reviewer: Who asks (a reviewer who may decide the case now).
            reason: The question, in the reviewer's words.
            ask: Whom to ask, a person in the directory (default: the requester).
            digest: The evidence digest the question is about (`CaseView.gate.digest`).
            proof: A token naming `reviewer` (verified identity mode needs one).
            timeout: Seconds to wait for a worker to take the update (see `decide`).

        Returns:
            The receipt of the request_info decision.

        Raises:
            DecisionRejected: The case refused (the message says why).
            NoWorker: No worker answered within `timeout`.
            CaseNotFound: No case has this ID.
        """
        decision = Decision(
            outcome=DecisionOutcome.REQUEST_INFO, reviewer=reviewer, reason=reason, ask=ask, digest=digest, proof=proof
        )
        return await self.decide(case_id, decision, timeout=timeout)

    async def answer_info(
        self,
        case_id: str,
        *,
        answerer: str,
        text: str,
        attachment: tuple[str, str] | None = None,
        proof: str | None = None,
        timeout: float | None = None,
    ) -> AnswerReceipt:
        """Answer the question the case waits on (`CaseView.info_request`), through its `answer_info` update.

        Args:
            case_id: The full case ID.
            answerer: The person asked, or an operator of the case's gate.
            text: The answer, in the answerer's words.
            attachment: (file name, its UTF-8 text) sent with the answer, at most 16,000 characters.
            proof: A token naming `answerer` (verified identity mode needs one).
            timeout: Seconds to wait for a worker to take the update; without it the call waits for one.

        Returns:
            The receipt: accepted, the round answered, and what the case does next.

        Raises:
            pydantic.ValidationError: A blank or overlong answer, a malformed attachment (nothing is sent).
            AnswerRejected: The case refused the answer (nothing asked, not the person asked, closed).
            NoWorker: No worker answered within `timeout`.
            CaseNotFound: No case has this ID.
        """
        name, body = attachment if attachment is not None else (None, None)
        answer = InfoAnswer(answerer=answerer, text=text, attachment_name=name, attachment_text=body, proof=proof)
        return await self._update(case_id, "answer_info", answer, AnswerReceipt, timeout=timeout, what="answer")

    async def _update(
        self, case_id: str, name: str, arg: BaseModel, result_type: type[_R], *, timeout: float | None, what: str
    ) -> _R:
        """Send update `name` and return its result; a refusal raises DecisionRejected (a decision) or
        AnswerRejected (an answer) with the case's one-line reason."""
        refused: type[CaseError] = AnswerRejected if what == "answer" else DecisionRejected
        update = self.handle(case_id).execute_update(name, arg, result_type=result_type)
        try:
            # the SDK keeps polling an update no worker has taken: bound the whole call, not one RPC
            return await (asyncio.wait_for(update, timeout) if timeout is not None else update)
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if timeout is None:
                raise
            raise NoWorker(
                f"no worker answered for {case_id} within {timeout:g}s; is a worker (`hitl worker` or `hitl dev`) "
                f"running on its task queue? The {what} may still apply when one starts: check with `hitl show`"
            ) from None
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            raise refused(message) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                # "already completed", or "update was aborted by closing workflow" when the update
                # races the case's completion: ask Temporal whether the case exists before saying it doesn't.
                closed = await self._closed(case_id)
                if isinstance(closed, DecisionRejected) and refused is AnswerRejected:
                    closed = AnswerRejected(str(closed).replace("takes no decision", "takes no answer"))
                raise closed from err
            raise rpc_error(case_id, err) from err

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

        Order: the exact ID (strongly consistent); then visibility (`WorkflowId STARTS_WITH` or
        `HitlBusinessKey` equal to / starting with the text, an exact business key winning over
        prefixes); then, for a case too new to be visible yet, `<kind>:<business key>` for each kind.

        Args:
            text: What the user typed.

        Returns:
            The full case ID.

        Raises:
            CaseNotFound: Nothing matches ("no case matching X").
            AmbiguousCase: Several cases match (the message names up to 5).
        """
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
            raise rpc_error(case_id, err) from err
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
        """The oldest cases waiting for a decision, oldest gate first, and how many wait in all.

        Visibility counts and one listing, no per-case calls. Visibility is eventually consistent: a
        gate opened a moment ago may be missing, and a case decided while the page is read is left out.

        Args:
            gate: Only this gate (finance, ops, security).
            kind: Only this kind (a CaseKind, or `renewal`, `procurement`, `access`).
            reviewer: Only what this reviewer may decide now: cases whose eligible groups include one
                of `reviewer_groups` and that they did not request.
            reviewer_groups: The groups `reviewer` sits in (the directory's: `hitl inbox --reviewer`
                reads them with `activities.store.directory.reviewer_groups`).
            limit: At most this many cases; None for every waiting case.
            now: The time ages and deadlines are measured from (default: now).

        Returns:
            The page of cases and the total waiting.

        Raises:
            ValueError: `reviewer` without `reviewer_groups`, or `limit` below 1.
            CaseError: An unknown kind, a value no case ID has, or a listing Temporal refused.
        """
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
                eligible_groups=list(reviewer_groups or []) if reviewer is not None else None,
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

    async def awaiting_info(
        self,
        *,
        gate: str | None = None,
        kind: CaseKind | str | None = None,
        asked: str | None = None,
        limit: int | None = 50,
        now: datetime | None = None,
    ) -> AwaitingPage:
        """The cases waiting for the answer to a reviewer's question, the longest-waiting first, and who is asked.

        One visibility listing, then each listed case's open question from the case itself (no search
        attribute names the person asked; a handful of queries at a time, needing a worker).

        Args:
            gate: Only this gate (finance, ops, security).
            kind: Only this kind (a CaseKind, or `renewal`, `procurement`, `access`).
            asked: Only the questions this person is asked.
            limit: At most this many cases; None for all.
            now: The time ages and deadlines are measured from (default: now).

        Returns:
            The page of cases and how many wait for an answer in all.

        Raises:
            ValueError: `limit` below 1.
            CaseError: An unknown kind, a value no case ID has, or a listing Temporal refused.
        """
        if limit is not None and limit < 1:
            raise ValueError("awaiting_info(limit=...) must be at least 1, or None for every case")
        kind_value = (kind.value if isinstance(kind, CaseKind) else case_kind(kind).value) if kind else None
        try:
            query = inbox_query(task_queue=self.task_queue, state=CaseState.AWAITING_INFO.value, gate=gate, kind=kind_value)
        except InvalidQueryValue as err:
            raise CaseError(str(err)) from err
        now = now or datetime.now(UTC)
        try:
            listed = oldest_first([inbox_item(info, now) async for info in self._list_raw(query)])
        except RPCError as err:
            raise CaseError(f"cannot list the cases awaiting an answer: {err.message}") from err
        gate_keeper = asyncio.Semaphore(AWAITING_QUERIES)

        async def question(item: InboxItem) -> AwaitingItem:
            async with gate_keeper:
                try:
                    view = await self.handle(item.case_id).query("case_state", result_type=CaseView)
                except (RPCError, WorkflowQueryFailedError):
                    view = None
            return awaiting_item(item, view.info_request if view is not None else None, now)

        total = len(listed)
        if asked is None and limit is not None:  # ask only the cases shown (the oldest gates first)
            listed = listed[:limit]
        items = list(await asyncio.gather(*(question(item) for item in listed)))
        if asked is not None:
            items = [item for item in items if item.asked == asked]
            total = len(items)
        items.sort(key=lambda i: (i.asked_at or i.due_at or now, i.case_id))
        return AwaitingPage(items=items[:limit], total=total)

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
        """`ListWorkflowExecutions` pages, undecoded: `hitl_temporal.inbox.inbox_item` reads only what it shows."""
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
        """Wait until the case is decided (or times out, or is cancelled) and return its result.

        Args:
            case_id: The full case ID.

        Returns:
            The outcome, who decided, and the recorded trace's ID.

        Raises:
            CaseNotFound: No case has this ID.
        """
        try:
            return await self.client.get_workflow_handle(case_id, result_type=CaseResult).result()
        except RPCError as err:
            raise rpc_error(case_id, err) from err

    # -- operator actions --------------------------------------------------------------------------

    async def escalate(self, case_id: str, *, operator: str, reason: str, proof: str | None = None) -> OperatorReceipt:
        """Move the case's gate to its next level now (reminders and deadlines restart there).

        Args:
            case_id: The full case ID.
            operator: Who acts; kept with the reason in the case and its trace.
            reason: Why.
            proof: A token naming `operator` (verified identity mode needs one).

        Returns:
            The case's receipt (`result` says what it did).

        Raises:
            ActionRefused: The case refused (not waiting, already at the last level, closed).
            CaseNotFound: No case has this ID.
            CaseError: The case did not answer in time.
        """
        action = OperatorAction(action=OperatorActionKind.ESCALATE, operator=operator, reason=reason, proof=proof)
        return await self._act(case_id, action)

    async def reassign(
        self, case_id: str, *, group: str, operator: str, reason: str, proof: str | None = None
    ) -> OperatorReceipt:
        """Give the current level of the case's gate to another reviewer group.

        Args:
            case_id: The full case ID.
            group: The reviewer group that takes over the current level.
            operator: Who acts.
            reason: Why.
            proof: A token naming `operator` (verified identity mode needs one).

        Returns:
            The case's receipt.

        Raises:
            ActionRefused: The case refused (not waiting, an unknown group, closed).
            CaseNotFound: No case has this ID.
        """
        action = OperatorAction(action=OperatorActionKind.REASSIGN, operator=operator, reason=reason, group=group, proof=proof)
        return await self._act(case_id, action)

    async def cancel(self, case_id: str, *, operator: str, reason: str, proof: str | None = None) -> CancelOutcome:
        """End the case with outcome ``cancelled``, recorded in its trace.

        The cancel goes through the case's update first; when work is in progress the workflow is
        also cancelled through Temporal to interrupt it (``interrupted``).

        Args:
            case_id: The full case ID.
            operator: Who acts.
            reason: Why.
            proof: A token naming `operator` (verified identity mode needs one).

        Returns:
            The case's answer and whether Temporal cancellation was sent.

        Raises:
            ActionRefused: The case refused (already decided or closed).
            CaseNotFound: No case has this ID.
        """
        action = OperatorAction(action=OperatorActionKind.CANCEL, operator=operator, reason=reason, proof=proof)
        return await cancel_case(self.client, case_id, action)

    async def note(self, case_id: str, *, operator: str, reason: str, proof: str | None = None) -> OperatorReceipt:
        """Add an operator's note to the case and its trace; nothing else changes.

        Args:
            case_id: The full case ID.
            operator: Who writes.
            reason: The note.
            proof: A token naming `operator` (verified identity mode needs one).

        Returns:
            The case's receipt.

        Raises:
            ActionRefused: The case refused (closed).
            CaseNotFound: No case has this ID.
        """
        action = OperatorAction(action=OperatorActionKind.NOTE, operator=operator, reason=reason, proof=proof)
        return await self._act(case_id, action)

    async def delegate(
        self,
        case_id: str,
        *,
        delegate: str,
        operator: str,
        reason: str,
        delegator: str | None = None,
        proof: str | None = None,
    ) -> OperatorReceipt:
        """Let `delegate` decide for `delegator` in this case only (a one-off delegation, kept in the trace).

        Args:
            case_id: The full case ID.
            delegate: Who decides instead.
            operator: Who sends it: the delegator themselves, or an operator.
            reason: Why (out of office, say).
            delegator: For whom (default: `operator`); they must sit at the case's gate.
            proof: A token naming `operator` (verified identity mode needs one).

        Raises:
            ActionRefused: The case refused (the delegate may not decide it, say, or the delegator has no seat).
            CaseNotFound: No case has this ID.
        """
        action = OperatorAction(
            action=OperatorActionKind.DELEGATE,
            operator=operator,
            reason=reason,
            delegate=delegate,
            delegator=delegator,
            proof=proof,
        )
        return await self._act(case_id, action)

    async def plan_retry(self, case_id: str) -> RetryPlan:
        """What `retry` would do now: reset a failing workflow task, or failing activities.

        Args:
            case_id: The full case ID.

        Returns:
            The plan; `describe()` says it in words (for a confirmation).

        Raises:
            ActionRefused: Nothing is failing, the case is not running, or its first workflow task
                never completed (no good point to reset to).
            CaseNotFound: No case has this ID.
        """
        return await plan_retry(self.client, case_id)

    async def retry(self, plan: RetryPlan, *, operator: str, reason: str, proof: str | None = None) -> RetryReceipt:
        """Carry out a retry plan, then note it in the case (and its trace) with what was reset.

        Failing activities go back to attempt 1; a failing workflow task is reset to the last
        completed one (a new run).

        Args:
            plan: From `plan_retry`.
            operator: Who acts.
            reason: Why; the note records it with what was reset.
            proof: A token naming `operator` (verified identity mode needs one). The reset is
                Temporal's and needs none: an operator the case does not accept gets RetryNotNoted.

        Returns:
            What was done, one line (``reset activity 3``, ``reset to event 12; new run ...``), and
            the note's receipt.

        Raises:
            RetryNotNoted: The reset was done but the note was not recorded (`done` says what was reset).
            CaseError: Temporal refused the reset.
        """
        done = await execute_retry(self.client, plan, operator=operator, reason=reason)
        note = OperatorAction(action=OperatorActionKind.RETRY, operator=operator, reason=f"{reason} ({done})", proof=proof)
        try:
            noted = await self._act(plan.case_id, note)
        except CaseError as err:
            raise RetryNotNoted(str(err), done=done) from err
        return RetryReceipt(done=done, note=noted)

    async def _act(self, case_id: str, action: OperatorAction) -> OperatorReceipt:
        return await send_operator_action(self.client, case_id, action, timeout=UPDATE_TIMEOUT)
