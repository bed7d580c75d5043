"""The reviewer inbox: cases waiting for a decision, read from Temporal visibility.

One visibility query over the search attributes the case workflow publishes (see
`workflows/search_attributes.py`), never a scan of workflows or a query per case:

    HitlCaseState = 'waiting' AND ExecutionStatus = 'Running'
      [AND HitlGate = 'finance'] [AND HitlCaseKind = 'renewal_discount_exception']
      [AND HitlEligibleGroups IN ('finance_reviewers', ...) AND HitlRequester != 'fin_rev_ana']

The dev server's SQLite visibility rejects `ORDER BY`, so the oldest-first order is applied here.
Visibility is eventually consistent: a case that opened its gate a moment ago may not be listed yet.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Iterable, Sequence

import asyncpg
from pydantic import BaseModel, Field
from temporalio.client import WorkflowExecution

from workflows import search_attributes as sa

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


def inbox_query(
    *,
    gate: str | None = None,
    kind: str | None = None,
    eligible_groups: Sequence[str] | None = None,
    exclude_requester: str | None = None,
) -> str:
    """The visibility query behind the inbox. `eligible_groups=[]` matches nothing: callers skip the query."""
    parts = [f"{sa.CASE_STATE.name} = 'waiting'", "ExecutionStatus = 'Running'"]
    if gate:
        parts.append(f"{sa.GATE.name} = {quote(gate)}")
    if kind:
        parts.append(f"{sa.CASE_KIND.name} = {quote(kind)}")
    if eligible_groups is not None:
        parts.append(f"{sa.ELIGIBLE_GROUPS.name} IN ({', '.join(quote(g) for g in eligible_groups)})")
    if exclude_requester:
        parts.append(f"{sa.REQUESTER.name} != {quote(exclude_requester)}")
    return " AND ".join(parts)


def inbox_item(execution: WorkflowExecution, now: datetime) -> InboxItem:
    attrs = execution.typed_search_attributes
    opened = attrs.get(sa.GATE_OPENED_AT)
    deadline = attrs.get(sa.NEXT_DEADLINE)
    eligible = list(attrs.get(sa.ELIGIBLE_GROUPS) or [])
    since = opened or execution.start_time
    return InboxItem(
        case_id=execution.id,
        kind=attrs.get(sa.CASE_KIND) or "",
        ask=attrs.get(sa.ASK) or "",
        gate=attrs.get(sa.GATE) or "",
        escalation_level=attrs.get(sa.ESCALATION_LEVEL) or 0,
        reviewer_group=attrs.get(sa.REVIEWER_GROUP) or "",
        eligible_groups=eligible,
        requester=attrs.get(sa.REQUESTER) or "",
        business_key=attrs.get(sa.BUSINESS_KEY) or "",
        reason_codes=list(attrs.get(sa.REASON_CODES) or []),
        gate_opened_at=opened,
        next_deadline=deadline,
        # the eligible groups are the current level's and every higher one's: one left means the last level
        deadline_action="times out" if len(eligible) <= 1 else "escalates",
        age_seconds=int((now - since).total_seconds()),
        time_left_seconds=int((deadline - now).total_seconds()) if deadline else None,
        workflow_type=execution.workflow_type,
        run_id=execution.run_id,
        started_at=execution.start_time,
    )


def oldest_first(items: Iterable[InboxItem]) -> list[InboxItem]:
    far = datetime.max.replace(tzinfo=timezone.utc)
    return sorted(items, key=lambda i: (i.gate_opened_at or far, i.started_at, i.case_id))


class UnknownReviewer(LookupError):
    pass


async def reviewer_groups(conn: asyncpg.Connection | asyncpg.Pool, reviewer: str) -> list[str]:
    """The reviewer groups a person sits in (the same directory the gate's roster is read from).

    An inactive person sits in none (the roster leaves them out); an unknown one raises UnknownReviewer."""
    row = await conn.fetchrow(
        """SELECT p.active,
                  coalesce(array_agg(m.group_id ORDER BY m.group_id) FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups
             FROM world_people p LEFT JOIN world_group_members m ON m.person_id = p.person_id
            WHERE p.person_id = $1
            GROUP BY p.active""",
        reviewer,
    )
    if row is None:
        raise UnknownReviewer(f"no person {reviewer!r} in the directory")
    return list(row["groups"]) if row["active"] else []


def human_duration(seconds: int) -> str:
    """`2d 3h`, `5h 12m`, `12m`, `40s`: two units at most."""
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def next_step(item: InboxItem) -> str:
    """`escalates in 23h 59m`, `times out in 1d 23h`, `escalation overdue by 5m`."""
    if item.time_left_seconds is None:
        return ""
    if item.time_left_seconds < 0:
        what = "timeout" if item.deadline_action == "times out" else "escalation"
        return f"{what} overdue by {human_duration(item.time_left_seconds)}"
    return f"{item.deadline_action} in {human_duration(item.time_left_seconds)}"
