"""Reading recorded decisions back for `hitl policy agreement` and `hitl policy whatif` (read only).

Seeded history (`decided_via` 'seed') is never read: its trace is the seed document's shape, with
no proposal or findings. A trace the current model cannot read is counted, by case ID, not guessed at.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import asyncpg
from pydantic import ValidationError

from gates.cases import CaseKind
from gates.precedent import Precedent
from gates.trace import DecisionTrace

# A connection or a pool: every function makes one call.
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


@dataclass
class RecordedTraces:
    traces: list[DecisionTrace] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # case IDs whose trace did not validate


async def decided_traces(conn: Connection, *, since: datetime | None, kind: CaseKind | None) -> RecordedTraces:
    """Every current decision (seeded history and superseded traces excluded) decided at or after
    `since`, of `kind`, oldest first."""
    rows = await conn.fetch(
        """SELECT case_id, trace::text AS trace
           FROM decision_traces t
           WHERE decided_via <> 'seed'
             AND NOT EXISTS (SELECT FROM decision_traces later
                             WHERE later.case_id = t.case_id AND later.id > t.id AND later.decided_via <> 'seed')
             AND ($1::timestamptz IS NULL OR decided_at >= $1)
             AND ($2::text IS NULL OR kind = $2)
           ORDER BY decided_at, id""",
        since,
        kind.value if kind is not None else None,
    )
    recorded = RecordedTraces()
    for row in rows:
        try:
            recorded.traces.append(DecisionTrace.model_validate_json(row["trace"]))
        except ValidationError:
            recorded.unreadable.append(row["case_id"])
    return recorded


async def cited_precedents(conn: Connection, case_ids: list[str]) -> dict[str, list[Precedent]]:
    """The precedent rows (seeded ones included) recorded under these case IDs, oldest first: what a
    past case's brief cited, for re-proposing it (gates/whatif.py picks those recorded before the case)."""
    rows = await conn.fetch(
        """SELECT case_id, kind, policy, reason_codes, amount_band, tags, outcome, decided_by, reason, decided_at
           FROM precedents
           WHERE case_id = ANY($1::text[])
           ORDER BY decided_at, id""",
        sorted(set(case_ids)),
    )
    found: dict[str, list[Precedent]] = defaultdict(list)
    for row in rows:
        found[row["case_id"]].append(Precedent(**{**dict(row), "amount_band": row["amount_band"] or ""}))
    return dict(found)
