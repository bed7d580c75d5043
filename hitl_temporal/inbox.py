"""The reviewer inbox: cases waiting for a decision, read from Temporal visibility.

One visibility query over the search attributes the case workflow publishes (see
`gates/search_attributes.py`), counted and listed, never a scan of workflows or a query per case:

    HitlCaseState = 'waiting' AND ExecutionStatus = 'Running'
      AND WorkflowType IN ('RenewalDiscountException', 'ProcurementThresholdBreach', 'AccessEscalation')
      AND TaskQueue = 'hitl-cases' AND TemporalReportedProblems IS NULL
      [AND HitlGate = 'finance'] [AND HitlCaseKind = 'renewal_discount_exception']
      [AND HitlEligibleGroups IN ('finance_reviewers', ...) AND HitlRequester != 'fin_rev_ana'
       AND HitlMayNotDecide != 'fin_rev_ana']

Only healthy cases of ours: a starter sets any search attributes it likes (temporal-notes gotcha 13),
so a workflow of another type, or one of our types on a task queue our worker never polls, could
pose as waiting forever; and a case whose workflow task keeps failing (the server sets
TemporalReportedProblems after two failures in a row, gates/bounds.py) cannot take a decision now:
`hitl ops stuck` reports it instead.

The dev server's SQLite visibility rejects `ORDER BY`, so the oldest-first order is applied here,
and a page of the oldest cases is found without listing every waiting case: counts (cheap) find a
cutoff on `HitlGateOpenedAt` at or before which slightly more than a page of cases waits, and only
those are listed (listing costs the dev server about 1 ms a row); see `CutoffSearch`.
Visibility is eventually consistent: a case that opened its gate a moment ago may not be listed yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

from gates import search_attributes as sa
from gates.cases import WORKFLOW_TYPES
from gates.durations import format_duration

# Values that may appear inside a visibility query: every id this project writes (kinds, gates,
# groups, people, case IDs, business keys) fits; anything else is refused rather than escaped.
_QUERY_VALUE = re.compile(r"^[A-Za-z0-9_.@:/#+-]+$")


class InvalidQueryValue(ValueError):
    pass


def quote(value: str) -> str:
    """A visibility-query string literal, for values that cannot need escaping."""
    if not _QUERY_VALUE.match(value):
        raise InvalidQueryValue(f"{value!r} is not a valid id (letters, digits and _ . @ : / # + - only)")
    return f"'{value}'"


class InboxItem(BaseModel):
    """One waiting case as the inbox shows it; every field comes from its search attributes."""

    case_id: str
    kind: str
    ask: str
    gate: str
    escalation_level: int = Field(description="0-based, as HitlEscalationLevel and `hitl show --json` gate.level")
    reviewer_group: str
    eligible_groups: list[str]
    requester: str
    business_key: str
    reason_codes: list[str]
    gate_opened_at: datetime | None
    next_deadline: datetime | None
    deadline_action: str = Field(description="'escalates' or 'times out' (the last level) at next_deadline")
    age_seconds: int = Field(description="Since the gate opened (or the case started), when listed")
    time_left_seconds: int | None = Field(description="Until next_deadline when listed; negative when overdue")
    workflow_type: str
    run_id: str
    started_at: datetime


# Set by the server on a workflow whose workflow task failed SERVER_REPORTED_PROBLEMS_AFTER times in a row.
REPORTED_PROBLEMS = "TemporalReportedProblems"


def case_types_clause() -> str:
    """`WorkflowType IN (<our three types>)`: a workflow of any other type is not a case."""
    return f"WorkflowType IN ({', '.join(quote(t) for t in WORKFLOW_TYPES.values())})"


def inbox_query(
    *,
    task_queue: str,
    state: str = "waiting",
    gate: str | None = None,
    kind: str | None = None,
    eligible_groups: Sequence[str] | None = None,
    exclude_requester: str | None = None,
) -> str:
    """The visibility query behind the inbox: waiting cases of our types on `task_queue` (the one our
    worker polls) whose workflow task is healthy; `state="awaiting_info"`: those waiting for the answer
    to a reviewer's question instead. `eligible_groups=[]` matches nothing: callers skip the query."""
    parts = [
        f"{sa.CASE_STATE.name} = {quote(state)}",
        "ExecutionStatus = 'Running'",
        case_types_clause(),
        f"TaskQueue = {quote(task_queue)}",
        f"{REPORTED_PROBLEMS} IS NULL",
    ]
    if gate:
        parts.append(f"{sa.GATE.name} = {quote(gate)}")
    if kind:
        parts.append(f"{sa.CASE_KIND.name} = {quote(kind)}")
    if eligible_groups is not None:
        parts.append(f"{sa.ELIGIBLE_GROUPS.name} IN ({', '.join(quote(g) for g in eligible_groups)})")
    if exclude_requester:  # never their own request, nor a case they may not decide (subject, delegate of the requester)
        parts.append(f"{sa.REQUESTER.name} != {quote(exclude_requester)}")
        parts.append(f"{sa.MAY_NOT_DECIDE.name} != {quote(exclude_requester)}")
    return " AND ".join(parts)


class InboxPage(BaseModel):
    """The oldest `items` of the `total` cases waiting (all of them when `total <= len(items)`)."""

    items: list[InboxItem]
    total: int = Field(description="Every case the inbox query matched, from one count")

    @property
    def complete(self) -> bool:
        return len(self.items) >= self.total


def _attr(info: WorkflowExecutionInfo, key: SearchAttributeKey) -> Any:
    """One search attribute straight from the listing's JSON payload, or None.

    Why not `WorkflowExecution.typed_search_attributes`: the SDK decodes all 15 attributes of a row
    twice through its generic payload converter, about 0.5 ms a row, as much as the server spends."""
    payload = info.search_attributes.indexed_fields.get(key.name)
    if payload is None:
        return None
    value = json.loads(payload.data)
    if key.indexed_value_type == SearchAttributeIndexedValueType.KEYWORD_LIST:
        return value if isinstance(value, list) else [value]
    if isinstance(value, list):  # older servers wrap single values in a list
        value = value[0] if len(value) == 1 else None
    if key.indexed_value_type == SearchAttributeIndexedValueType.DATETIME and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def inbox_item(info: WorkflowExecutionInfo, now: datetime) -> InboxItem:
    """An inbox row from a raw `ListWorkflowExecutions` entry (see `_attr` for why raw)."""
    opened = _attr(info, sa.GATE_OPENED_AT)
    deadline = _attr(info, sa.NEXT_DEADLINE)
    eligible = list(_attr(info, sa.ELIGIBLE_GROUPS) or [])
    started = info.start_time.ToDatetime().replace(tzinfo=UTC)
    since = opened or started
    return InboxItem(
        case_id=info.execution.workflow_id,
        kind=_attr(info, sa.CASE_KIND) or "",
        ask=_attr(info, sa.ASK) or "",
        gate=_attr(info, sa.GATE) or "",
        escalation_level=_attr(info, sa.ESCALATION_LEVEL) or 0,
        reviewer_group=_attr(info, sa.REVIEWER_GROUP) or "",
        eligible_groups=eligible,
        requester=_attr(info, sa.REQUESTER) or "",
        business_key=_attr(info, sa.BUSINESS_KEY) or "",
        reason_codes=list(_attr(info, sa.REASON_CODES) or []),
        gate_opened_at=opened,
        next_deadline=deadline,
        # the eligible groups are the current level's and every higher one's: one left means the last level
        deadline_action="times out" if len(eligible) <= 1 else "escalates",
        age_seconds=int((now - since).total_seconds()),
        time_left_seconds=int((deadline - now).total_seconds()) if deadline else None,
        workflow_type=info.type.name,
        run_id=info.execution.run_id,
        started_at=started,
    )


class AwaitingItem(BaseModel):
    """A case waiting for the answer to a reviewer's question: `hitl inbox --awaiting-info`.

    From its search attributes, and the open question from the case itself (a `case_state` query:
    no search attribute names the person asked); the question's fields are None when the case did
    not answer the query (no worker, or it moved on meanwhile)."""

    case_id: str
    kind: str
    ask: str
    gate: str
    requester: str
    asked: str | None = Field(description="Who is asked to answer")
    asked_by: str | None = Field(description="The reviewer who asked")
    question: str | None = Field(description="The reviewer's question, in their words")
    asked_at: datetime | None
    due_at: datetime | None = Field(description="When the question closes unanswered")
    age_seconds: int = Field(description="Since the question was asked (or the gate opened), when listed")
    time_left_seconds: int | None = Field(description="Until due_at when listed; negative when overdue")
    round: int | None = None


def awaiting_item(item: InboxItem, info: Any, now: datetime) -> AwaitingItem:
    """An `--awaiting-info` row: the listing's `item` and the case's open question `info`
    (a gates.info_request.InfoRequest, or None when the case did not say)."""
    asked_at = info.asked_at if info is not None else None
    due = info.due_at if info is not None else item.next_deadline
    since = asked_at or item.gate_opened_at or item.started_at
    return AwaitingItem(
        case_id=item.case_id,
        kind=item.kind,
        ask=item.ask,
        gate=item.gate,
        requester=item.requester,
        asked=info.asked if info is not None else None,
        asked_by=info.asked_by if info is not None else None,
        question=info.question if info is not None else None,
        asked_at=asked_at,
        due_at=due,
        age_seconds=int((now - since).total_seconds()),
        time_left_seconds=int((due - now).total_seconds()) if due else None,
        round=info.round if info is not None else None,
    )


def answer_due(item: AwaitingItem) -> str:
    """`due in 1d 23h`, `overdue by 5m`: when the question closes unanswered."""
    if item.time_left_seconds is None:
        return ""
    if item.time_left_seconds < 0:
        return f"overdue by {age_text(item.time_left_seconds)}"
    return f"due in {age_text(item.time_left_seconds)}"


def oldest_first(items: Iterable[InboxItem]) -> list[InboxItem]:
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda i: (i.gate_opened_at or far, i.started_at, i.case_id))


# -- the oldest page without listing everything -------------------------------------------------

# First cutoffs counted, one at a time and oldest first, as gate ages: a case rarely waits a year,
# and the last one (a day in the future) allows for a client clock behind the server's.
PROBE_AGES = (
    timedelta(days=365), timedelta(days=90), timedelta(days=30), timedelta(days=7), timedelta(days=2),
    timedelta(hours=12), timedelta(hours=3), timedelta(hours=1), timedelta(minutes=15), timedelta(minutes=5),
    timedelta(minutes=1), timedelta(0), timedelta(days=-1),
)
# No gate opened before this: the lower end of the first bracket, with a count of 0 taken, not asked.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Visibility keeps Datetime attributes to the millisecond: cutoffs finer than that cannot split rows.
RESOLUTION = timedelta(milliseconds=1)
MAX_REFINE_ROUNDS = 12


def cutoff_literal(at: datetime) -> str:
    """A Datetime literal for a visibility query: RFC 3339 in UTC, e.g. '2026-11-26T16:00:00.123000Z'."""
    return f"'{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z'"


def with_cutoff(query: str, cutoff: datetime) -> str:
    return f"{query} AND {sa.GATE_OPENED_AT.name} <= {cutoff_literal(cutoff)}"


@dataclass(frozen=True)
class Window:
    """Gates opened after `after` (EPOCH: any time before) and at or before `upto`."""

    after: datetime
    upto: datetime

    def query(self, query: str) -> str:
        if self.after == EPOCH:
            return with_cutoff(query, self.upto)
        return f"{with_cutoff(query, self.upto)} AND {sa.GATE_OPENED_AT.name} > {cutoff_literal(self.after)}"


class CutoffSearch:
    """Finds a cutoff on HitlGateOpenedAt with at least `limit` cases at or before it, and not many more.

    Driven by counts: `probes()` says which windows of HitlGateOpenedAt to count next (empty when
    done), `record()` takes the count of `<inbox query> AND <window>`, and `listing()` is the window
    to list then, up to the cutoff (None: no cutoff reached `limit`, because cases have no opening
    time or the client's clock is far behind the server's; list everything). Sorting what it lists
    gives exactly the oldest `limit` cases: whatever the store's rounding of timestamps, "at or
    before a cutoff" takes a case only with every case opened before it (the whole millisecond of
    the limit-th case, so ties are never split).

    The dev server's SQLite answers these counts from its index on the attribute: a count costs
    about 2 ms plus 0.01 ms for every workflow, waiting or not, opened within the window, while
    listing costs about 1 ms per case listed. So every window starts at the latest cutoff known to
    hold fewer than `limit` cases (whose count is added), and the search starts at the old end, one
    age at a time (PROBE_AGES), until a cutoff holds `limit`; then it narrows that bracket until at
    most `slack` extra cases would be listed (one more count costs about as much as listing 20 more
    cases), at the cutoff where a straight line between the bracket's counts reaches
    `limit + slack / 2`."""

    def __init__(self, limit: int, now: datetime, *, slack: int | None = None):
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.slack = max(20, limit // 4) if slack is None else slack
        self._grid = [now - age for age in PROBE_AGES]
        self._counts: dict[datetime, int] = {EPOCH: 0}  # cutoff -> cases at or before it
        self._refine_rounds = 0
        self._last_aim: datetime | None = None
        self._short = 0  # refining counts in a row that fell short of the limit

    def record(self, window: Window, count: int) -> None:
        self._counts[window.upto] = self._counts[window.after] + count

    def _bracket(self) -> tuple[datetime, datetime | None]:
        """(latest cutoff counted below the limit, earliest at or above it, or None)."""
        below = [at for at, n in self._counts.items() if n < self.limit]
        above = [at for at, n in self._counts.items() if n >= self.limit]
        return max(below, default=EPOCH), min(above, default=None)

    @property
    def cutoff(self) -> datetime | None:
        return self._bracket()[1]

    def listing(self) -> Window | None:
        """What to list: up to the cutoff, after the latest cutoff that held no case (the store need
        not walk past the older workflows again); None without a cutoff."""
        cutoff = self.cutoff
        if cutoff is None:
            return None
        return Window(max(at for at, n in self._counts.items() if n == 0 and at < cutoff), cutoff)

    def probes(self) -> list[Window]:
        lo, hi = self._bracket()
        if hi is None:  # the next age on the grid, or done when it is exhausted
            return [Window(lo, at) for at in self._grid if at > lo and at not in self._counts][:1]
        n_lo, n_hi = self._counts[lo], self._counts[hi]
        if n_hi - self.limit <= self.slack or hi - lo <= RESOLUTION or self._refine_rounds >= MAX_REFINE_ROUNDS:
            return []
        self._refine_rounds += 1
        if self._last_aim is not None:
            self._short = self._short + 1 if self._counts[self._last_aim] < self.limit else 0
        # The straight line falls short when the cases crowd the bracket's late end: each time it
        # does, aim twice as far, up to the middle (overshooting needs no help: it shrinks the bracket).
        aim = (self.limit + self.slack / 2 - n_lo) / (n_hi - n_lo) * 2**self._short
        at = max(_to_resolution(lo + (hi - lo) * min(aim, 0.5)), _to_resolution(lo + RESOLUTION))
        if at >= hi:
            return []
        self._last_aim = at
        return [Window(lo, at)]


def _to_resolution(at: datetime) -> datetime:
    """`at` truncated to the millisecond: the store's resolution, and a short literal."""
    return at - timedelta(microseconds=at.microsecond % 1000)


def age_text(seconds: int) -> str:
    """`2d 3h`, `5h 12m`, `12m`, `40s`: how the inbox shows an age or a time left (two units at most)."""
    return format_duration(seconds, separator=" ", seconds_after_minutes=False)


def next_step(item: InboxItem) -> str:
    """`escalates in 23h 59m`, `times out in 1d 23h`, `escalation overdue by 5m`."""
    if item.time_left_seconds is None:
        return ""
    if item.time_left_seconds < 0:
        what = "timeout" if item.deadline_action == "times out" else "escalation"
        return f"{what} overdue by {age_text(item.time_left_seconds)}"
    return f"{item.deadline_action} in {age_text(item.time_left_seconds)}"
