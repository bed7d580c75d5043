"""The client side of the benchmark: case payloads, waiting for the gate, deciding, watching PostgreSQL.

Everything here is the driver's work, not the product's: it runs in the bench process, and its CPU
is reported separately from the worker's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError

from activities.identity import LocalIssuer
from activities.store.traces import recorded_among
from bench.bare import BARE_WORKFLOW
from bench.stack import ACCESS_LOOKALIKE_PREFIX, ACCESS_SUBJECT
from demo.examples import FIRST_REVIEWER, example_payload
from gates.cases import REQUEST_MODELS, CaseKind, CaseRequest
from gates.gate import Decision, DecisionOutcome, DecisionReceipt
from gates.trace import CaseView
from workflows.kinds import CASE_WORKFLOWS

KINDS = [CaseKind.RENEWAL, CaseKind.PROCUREMENT, CaseKind.ACCESS]
SHORT = {CaseKind.RENEWAL: "renewal", CaseKind.PROCUREMENT: "procurement", CaseKind.ACCESS: "access"}

# The example catalogue is the tests' (examples/ files, one human and one policy-decided per kind,
# and FIRST_REVIEWER: who may decide each human example at the level it opens at). The 180,000 USD procurement opens at
# VP approval (the second level); the 28% renewal opens at the first level only thanks to consistent
# approved service-impact precedents, so the bench never lets a renewal time out or be rejected:
# one recorded rejection among the matching precedents takes that relief away.
# For the scale phase every kind must open at level 0: a 40,000 USD purchase only breaches the buyer threshold.
SCALE_CHANGES = {CaseKind.PROCUREMENT: {"amount": "40000.00"}}

TIMER_STARTED = EventType.EVENT_TYPE_TIMER_STARTED
CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


# Read once, when the run starts (the working tree may change during a run).
_EXAMPLE_DATA = {
    (kind, human): example_payload(kind, human=human)
    for kind in KINDS
    for human in (True, False)
}


def _example(kind: CaseKind, human: bool) -> dict[str, Any]:
    return dict(_EXAMPLE_DATA[(kind, human)])


@dataclass(frozen=True)
class Case:
    """One case to start: its payload, a unique workflow id, and who decides it."""

    kind: CaseKind
    human: bool
    request: CaseRequest
    workflow_id: str
    reviewer: str

    @property
    def label(self) -> str:
        return f"{SHORT[self.kind]}/{'human' if self.human else 'auto'}"


def make_case(kind: CaseKind, human: bool, tag: str, *, scale: bool = False) -> Case:
    """A case with a unique business key (a case runs under its own case ID only).

    Renewals vary the renewal period and purchases the request id (neither is a connector key);
    access requests are keyed by user/system/entitlement, which the IAM lookup uses, so each takes
    the next of the example subject's lookalikes the bench stack seeds (bench/stack.py)."""
    data = _example(kind, human)
    if scale:
        data.update(SCALE_CHANGES.get(kind, {}))
    if kind == CaseKind.RENEWAL:
        data["renewal"] = f"b-{tag}"
    elif kind == CaseKind.PROCUREMENT:
        data["request_id"] = f"pr-b-{tag}"
    else:
        assert data["subject_user"] == ACCESS_SUBJECT
        data["subject_user"] = f"{ACCESS_LOOKALIKE_PREFIX}{next(_ACCESS_SUBJECTS)}"
    request = REQUEST_MODELS[kind].model_validate(data)
    reviewer = "ops_rev_kim" if (scale and kind == CaseKind.PROCUREMENT) else FIRST_REVIEWER[kind]
    return Case(kind, human, request, request.case_id(), reviewer)


# The next lookalike of the access example's subject (bench/stack.py seeds ACCESS_LOOKALIKES of them).
_ACCESS_SUBJECTS = itertools.count()


def real_mix(n: int, tag: str, *, auto_every: int = 5) -> list[Case]:
    """Mixed kinds round robin; every `auto_every`-th case is one policy decides alone."""
    return [make_case(KINDS[i % 3], human=(i % auto_every != auto_every - 1), tag=f"{tag}-{i}") for i in range(n)]


async def start_case(client: Client, case: Case, task_queue: str) -> WorkflowHandle:
    return await client.start_workflow(
        CASE_WORKFLOWS[case.kind].run, case.request, id=case.workflow_id, task_queue=task_queue
    )


async def wait_for_gate(handle: WorkflowHandle, *, nth: int = 1) -> bool:
    """Long-poll the history until the `nth` timer starts (the gate is open and waiting), or the run closes.

    The case workflows start no timer before the gate opens, and the bare workflow's only timer is
    its deadline, so the same cheap, event-driven test serves both. Returns False if the run closed."""
    seen = 0
    async for event in handle.fetch_history_events(wait_new_event=True):
        if event.event_type == TIMER_STARTED:
            seen += 1
            if seen >= nth:
                return True
        elif event.event_type in CLOSED:
            return False
    return False


class Reviewers:
    """What a reviewer's client does before it decides: read the evidence digest the case waits on
    (the `case_state` query, as `hitl approve` does in either identity mode) and, for a worker in
    verified mode, mint a proof with the local issuer of the bench's state directory (`hitl token`).

    `asserted_queues` are the task queues whose workers run with identity off: no proof is sent there."""

    def __init__(self, state_dir: Path, asserted_queues: set[str]):
        self.issuer = LocalIssuer(state_dir)
        self.asserted_queues = asserted_queues

    def proof(self, reviewer: str, task_queue: str) -> str | None:
        return None if task_queue in self.asserted_queues else self.issuer.mint(reviewer)

    async def decision(
        self,
        handle: WorkflowHandle,
        case: Case,
        task_queue: str,
        outcome: DecisionOutcome = DecisionOutcome.APPROVE,
        reason: str = "bench: approved",
    ) -> Decision:
        return Decision(
            outcome=outcome,
            reviewer=case.reviewer,
            reason=reason,
            digest=await current_digest(handle),
            proof=self.proof(case.reviewer, task_queue),
        )


async def current_digest(handle: WorkflowHandle) -> str | None:
    """The evidence digest the case waits on (None for a case that has none: started before TRUST_PATCH)."""
    try:
        view = await handle.query("case_state", result_type=CaseView)
    except WorkflowQueryFailedError as err:
        raise RuntimeError(f"{handle.id}: case_state query failed while waiting at the gate: {err}") from None
    return view.gate.digest if view.gate is not None else None


async def decide_update(handle: WorkflowHandle, d: Decision) -> DecisionReceipt:
    return await handle.execute_update("submit_decision", d, result_type=DecisionReceipt)


async def decide_signal(handle: WorkflowHandle, d: Decision) -> None:
    await handle.signal("decide", d.model_dump(mode="json"))


async def run_case(client: Client, case: Case, task_queue: str, reviewers: Reviewers, channel: str = "update") -> str:
    """Start, wait for the gate, approve, wait for the result: one whole human case (or an auto one)."""
    handle = await start_case(client, case, task_queue)
    if case.human:
        if not await wait_for_gate(handle):
            raise RuntimeError(f"{case.workflow_id} closed before waiting")
        d = await reviewers.decision(handle, case, task_queue)
        if channel == "update":
            await decide_update(handle, d)
        else:
            await decide_signal(handle, d)
    result = await handle.result()
    return result.outcome


async def run_bare(client: Client, key: str, task_queue: str) -> str:
    handle = await client.start_workflow(BARE_WORKFLOW, key, id=f"bare:{key}", task_queue=task_queue, result_type=str)
    if not await wait_for_gate(handle):
        raise RuntimeError(f"bare:{key} closed before waiting")
    await handle.signal("decide", {"outcome": "approve", "reviewer": "bench", "reason": "bench: approved"})
    return await handle.result()


async def run_closed_loop(factories: list, concurrency: int) -> tuple[float, float, list[Any]]:
    """Run coroutine factories with at most `concurrency` in flight; (first start, last end, results)."""
    sem = asyncio.Semaphore(concurrency)
    t_first = time.perf_counter()

    async def one(factory):
        async with sem:
            return await factory()

    results = await asyncio.gather(*(one(f) for f in factories))
    return t_first, time.perf_counter(), list(results)


class TraceWatcher:
    """Tells when a case's decision row is visible in `decision_traces`, polling every `interval` seconds.

    One dedicated connection; it polls only while some case is being watched, with one indexed query
    (`case_id = ANY(...)`) for all watched cases. The gap between polls is recorded: it is the
    resolution of every latency measured with it."""

    def __init__(self, dsn: str, interval: float = 0.002):
        self._dsn = dsn
        self._interval = interval
        self._watches: dict[str, asyncio.Future[float]] = {}
        self._wake = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self.gaps: list[float] = []

    async def __aenter__(self) -> Self:
        self._conn = await asyncpg.connect(self._dsn)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task is not None and self._conn is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self._conn.close()

    def watch(self, case_id: str) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self._watches[case_id] = future
        self._wake.set()
        return future

    async def _loop(self) -> None:
        assert self._conn is not None
        last = None
        while True:
            if not self._watches:
                self._wake.clear()
                last = None
                await self._wake.wait()
            recorded = await recorded_among(self._conn, list(self._watches))
            now = time.perf_counter()
            if last is not None:
                self.gaps.append(now - last)
            last = now
            for case_id in recorded:
                future = self._watches.pop(case_id, None)
                if future is not None and not future.done():
                    future.set_result(now)
            await asyncio.sleep(self._interval)


@dataclass
class DecisionTiming:
    seen_s: float  # from the send to the decision row visible in PostgreSQL
    call_s: float  # how long the send call itself took (the update returns once the handler ran)
    sent_at: float  # wall clock (time.time()) of the send, to line up with history event times


async def decide_and_time(handle: WorkflowHandle, d: Decision, channel: str, watcher: TraceWatcher) -> DecisionTiming:
    """Send the decision `d` (digest read and proof minted before: not timed) and time it until its row is
    visible in PostgreSQL."""
    seen = watcher.watch(handle.id)
    sent_at = time.time()
    t0 = time.perf_counter()
    if channel == "update":
        await decide_update(handle, d)
    else:
        await decide_signal(handle, d)
    t_call = time.perf_counter() - t0
    t_seen = await asyncio.wait_for(seen, timeout=60)
    return DecisionTiming(seen_s=t_seen - t0, call_s=t_call, sent_at=sent_at)


def record_step_times(events: list, sent_at: float, seen_s: float) -> dict[str, float] | None:
    """Split one decision's latency with the history's event times (server clock, same machine):
    send -> record_decision scheduled (the decision's workflow task), scheduled -> started (activity
    dispatch), started -> row visible (the activity's PostgreSQL transaction, plus the poll)."""
    scheduled = started = None
    scheduled_id = None
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and (
            e.activity_task_scheduled_event_attributes.activity_type.name == "record_decision"
        ):
            scheduled, scheduled_id = e.event_time.ToDatetime().timestamp(), e.event_id
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and scheduled_id is not None and (
            e.activity_task_started_event_attributes.scheduled_event_id == scheduled_id
        ):
            started = e.event_time.ToDatetime().timestamp()
    if scheduled is None or started is None:
        return None
    seen_at = sent_at + seen_s
    return {
        "decision_task_ms": 1000 * (scheduled - sent_at),
        "activity_dispatch_ms": 1000 * (started - scheduled),
        "record_activity_ms": 1000 * (seen_at - started),
    }


@dataclass
class HistoryCost:
    """Events of one history, and the floor for the same steps."""

    events: int
    by_type: dict[str, int]
    workflow_tasks: int
    activity_tasks: int
    local_activities: int
    upserts: int
    floor: int
    floor_terms: dict[str, int] = field(default_factory=dict)
    floor_if_regular: int = 0  # the floor with every local activity counted as a sequential regular one

    @property
    def excess(self) -> int:
        return self.events - self.floor


def history_cost(events: list) -> HistoryCost:
    """Floor for the same steps: start 4; each batch of activities scheduled by one workflow task
    6 + 3 per extra activity (scheduled, started, completed; their results arriving together in one
    workflow task); each wait ended by a signal 6 (timer started, signaled, 3 workflow-task events,
    timer cancelled), by an update 7 (accepted + completed instead of signaled); each timer that
    fires 5 (started, fired, 3 workflow-task events); completion 1. Search-attribute upserts and
    workflow tasks spent on results that arrive one at a time are the excess. Local activities
    (markers) are not steps of that floor; `floor_if_regular` counts each as a sequential activity (6)."""
    names = [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in events]
    by_type = dict(Counter(names))
    batches: Counter[int] = Counter()
    current = 0
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            current = e.event_id
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            batches[current] += 1
    terms = {
        "start": 4,
        "activities": sum(6 + 3 * (k - 1) for k in batches.values()),
        "signal_waits": 6 * by_type.get("WORKFLOW_EXECUTION_SIGNALED", 0),
        "update_waits": 7 * by_type.get("WORKFLOW_EXECUTION_UPDATE_ACCEPTED", 0),
        "timers_fired": 5 * by_type.get("TIMER_FIRED", 0),
        "completion": 1,
    }
    local = sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    )
    return HistoryCost(
        events=len(events),
        by_type=by_type,
        workflow_tasks=by_type.get("WORKFLOW_TASK_COMPLETED", 0),
        activity_tasks=by_type.get("ACTIVITY_TASK_SCHEDULED", 0),
        local_activities=local,
        upserts=by_type.get("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES", 0),
        floor=sum(terms.values()),
        floor_terms=terms,
        floor_if_regular=sum(terms.values()) + 6 * local,
    )


def percentiles(values: list[float], ps=(50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles (no interpolation), in the values' unit; empty input gives NaN-free zeros."""
    if not values:
        return {f"p{p}": 0.0 for p in ps} | {"max": 0.0, "n": 0}
    ordered = sorted(values)
    out: dict[str, float] = {}
    for p in ps:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n)
        out[f"p{p}"] = ordered[rank - 1]
    out["max"] = ordered[-1]
    out["n"] = len(ordered)
    return out
