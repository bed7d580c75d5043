"""The `precedents` table: what a new case's brief cites, and what can lower its gate's level.

Only a decision a verified human made becomes precedent (`deserves_precedent`): not policy decisions,
timeouts, operators' cancellations, nor identities nobody proved, so a flood of decisions cannot steer
later briefs. Each precedent names its trace and the trace's position in the audit chain; a
retracted one (superseded by a later run of its case, or by an operator) stays, and is never cited.
Seeded history (the demo world's past decisions) is precedent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

import asyncpg

from gates.cases import CaseKind
from gates.precedent import Precedent
from gates.trace import DecisionTrace

# A connection or a pool: every function makes one call (or runs inside the caller's transaction).
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


# The channels a reviewer decides through; the others are policy, timeouts and operators.
HUMAN_CHANNELS = frozenset({"update", "signal"})


def deserves_precedent(trace: DecisionTrace) -> bool:
    """A human decided, through the update or the signal, with an identity the case verified."""
    identity = trace.decided_identity
    return trace.decided_via in HUMAN_CHANNELS and identity is not None and identity.mode == "verified"


def why_not_precedent(decided_via: str, identity_mode: str | None) -> str:
    """Why a recorded trace is not precedent, in words an operator reads."""
    if decided_via not in HUMAN_CHANNELS:
        return f"it was decided via {decided_via}, not by a reviewer"
    return f"its reviewer's identity was {identity_mode or 'not recorded'}, not verified"


async def insert_precedent(
    conn: Connection, decision_trace_id: int, trace: DecisionTrace, *, trace_global_seq: int | None
) -> None:
    """The precedent of a trace just recorded (same transaction as the trace), at the global_seq of its
    trace_recorded row. Call it only for a trace that `deserves_precedent`."""
    features = trace.features
    await insert_precedent_row(
        conn,
        decision_trace_id,
        trace_global_seq=trace_global_seq,
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
    trace_global_seq: int | None = None,
) -> None:
    """One precedent row from its columns: a recorded trace's (with its chain position), or a past
    decision the demo world seeds (not in the chain)."""
    await conn.execute(
        """INSERT INTO precedents (decision_trace_id, case_id, kind, policy, reason_codes, amount_band, tags,
               outcome, decided_by, reason, decided_at, trace_global_seq)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)""",
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
        trace_global_seq,
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
    """The newest decisions of the same kind and amount band sharing a tag (any, without tags), retracted ones left out.

    A precedent's reason is another reviewer's words, cited in a new case's brief: only its first
    `reason_chars` characters are read."""
    rows = await conn.fetch(
        """SELECT case_id, kind, policy, reason_codes, amount_band, tags, outcome, decided_by,
                  left(reason, $6) AS reason, decided_at
           FROM precedents
           WHERE kind = $1 AND amount_band = $2 AND retracted_at IS NULL AND ($3::text IS NULL OR case_id <> $3)
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


# -- one precedent, for `hitl precedent show|retract` --------------------------------------------


@dataclass(frozen=True)
class TracePrecedent:
    """A recorded trace and its precedent, if it has one (`precedent` None: the trace is not precedent)."""

    trace_id: int
    case_id: str
    kind: str
    outcome: str
    decided_by: str
    decided_via: str
    reason: str
    decided_at: datetime
    identity_mode: str | None
    identity_issuer: str | None
    identity_channel: str | None
    supersedes: int | None
    superseded: bool
    precedent: asyncpg.Record | None


_PRECEDENT_COLUMNS = "id, trace_global_seq, retracted_at, retracted_by, retracted_identity, retracted_reason"


async def precedent_of_trace(conn: Connection, trace_id: int, *, for_update: bool = False) -> TracePrecedent | None:
    """Trace `trace_id` and its precedent row (locked with `for_update`), or None when there is no such trace."""
    trace = await conn.fetchrow(
        """SELECT t.id, t.case_id, t.kind, t.outcome, t.decided_by, t.decided_via, t.reason, t.decided_at, t.supersedes,
                  t.trace #>> '{decided_identity,mode}' AS identity_mode,
                  t.trace #>> '{decided_identity,issuer}' AS identity_issuer,
                  t.trace #>> '{decided_identity,channel}' AS identity_channel,
                  EXISTS (SELECT FROM decision_traces s WHERE s.supersedes = t.id) AS superseded
           FROM decision_traces t WHERE t.id = $1""",
        trace_id,
    )
    if trace is None:
        return None
    lock = " FOR UPDATE" if for_update else ""
    precedent = await conn.fetchrow(f"SELECT {_PRECEDENT_COLUMNS} FROM precedents WHERE decision_trace_id = $1{lock}", trace_id)
    fields = {name: trace[name] for name in trace.keys() if name != "id"}
    return TracePrecedent(trace_id=trace["id"], precedent=precedent, **fields)


async def retract_precedent(
    conn: Connection,
    decision_trace_id: int,
    *,
    reason: str,
    retracted_by: str,
    identity: Literal["verified", "asserted"] | None,
    at: datetime,
) -> bool:
    """Mark the trace's precedent retracted; False when it has none or it was retracted before."""
    updated = await conn.execute(
        """UPDATE precedents SET retracted_at = $2, retracted_by = $3, retracted_identity = $4, retracted_reason = $5
            WHERE decision_trace_id = $1 AND retracted_at IS NULL""",
        decision_trace_id,
        at,
        retracted_by,
        identity,
        reason,
    )
    return updated != "UPDATE 0"
