"""The `precedents` table: one row per recorded decision, what a new case's brief cites."""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

import asyncpg

from gates.cases import CaseKind
from gates.precedent import Precedent
from gates.trace import DecisionTrace

# A connection or a pool: every function makes one call (or runs inside the caller's transaction).
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def insert_precedent(conn: Connection, decision_trace_id: int, trace: DecisionTrace) -> None:
    """The precedent of a trace just recorded (same transaction as the trace)."""
    features = trace.features
    await insert_precedent_row(
        conn,
        decision_trace_id,
        case_id=trace.case_id,
        kind=features.kind,
        policy=features.policy,
        reason_codes=features.reason_codes,
        amount_band=features.amount_band,
        tags=features.tags,
        outcome=trace.outcome,
        decided_by=trace.decided_by,
        reason=trace.reason,
        decided_at=trace.decided_at,
    )


async def insert_precedent_row(
    conn: Connection,
    decision_trace_id: int,
    *,
    case_id: str,
    kind: CaseKind,
    policy: str,
    reason_codes: list[str],
    amount_band: str | None,
    tags: list[str],
    outcome: str,
    decided_by: str | None,
    reason: str | None,
    decided_at: datetime,
) -> None:
    """One precedent row from its columns: a recorded trace's, or a past decision the demo world seeds."""
    await conn.execute(
        """INSERT INTO precedents (decision_trace_id, case_id, kind, policy, reason_codes, amount_band, tags,
               outcome, decided_by, reason, decided_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)""",
        decision_trace_id,
        case_id,
        kind.value,
        policy,
        reason_codes,
        amount_band,
        tags,
        outcome,
        decided_by,
        reason,
        decided_at,
    )


async def find_precedents(
    conn: Connection,
    *,
    kind: CaseKind,
    amount_band: str,
    tags: list[str],
    exclude_case_id: str | None,
    limit: int,
    reason_chars: int,
) -> list[Precedent]:
    """The newest decisions of the same kind and amount band sharing a tag (any, without tags).

    A precedent's reason is another reviewer's words, cited in a new case's brief: only its first
    `reason_chars` characters are read."""
    rows = await conn.fetch(
        """SELECT case_id, kind, policy, reason_codes, amount_band, tags, outcome, decided_by,
                  left(reason, $6) AS reason, decided_at
           FROM precedents
           WHERE kind = $1 AND amount_band = $2 AND ($3::text IS NULL OR case_id <> $3)
             AND (cardinality($4::text[]) = 0 OR tags && $4::text[])
           ORDER BY decided_at DESC
           LIMIT $5""",
        kind.value,
        amount_band,
        exclude_case_id,
        tags,
        limit,
        reason_chars,
    )
    return [Precedent(**dict(row)) for row in rows]
