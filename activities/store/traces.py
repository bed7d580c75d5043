"""The `decision_traces` table: the record of every decision, written once per decision key."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from gates.cases import CaseKind
from gates.report import TraceRow
from gates.trace import DecisionTrace

# A connection or a pool: every function makes one call (or runs inside the caller's transaction).
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def insert_trace(conn: Connection, decision_key: str, trace: DecisionTrace) -> int | None:
    """Insert the trace under `decision_key`; its row ID, or None when that key was recorded before."""
    return await conn.fetchval(
        """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy,
               gate, outcome, decided_by, decided_via, reason, reason_codes, otel_trace_id, opened_at,
               decided_at, trace)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb)
           ON CONFLICT (decision_key) DO NOTHING
           RETURNING id""",
        decision_key,
        trace.case_id,
        trace.run_id,
        trace.decision_trace,
        trace.features.kind.value,
        trace.business_key,
        trace.features.policy,
        trace.human_gate,
        trace.outcome,
        trace.decided_by,
        trace.decided_via,
        trace.reason,
        trace.reason_codes,
        trace.otel_trace_id,
        trace.opened_at,
        trace.decided_at,
        trace.model_dump_json(),
    )


async def insert_seeded_trace(
    conn: Connection,
    *,
    case_id: str,
    kind: CaseKind,
    business_key: str,
    policy: str,
    gate: str,
    outcome: str,
    decided_by: str,
    reason: str,
    reason_codes: list[str],
    opened_at: datetime,
    decided_at: datetime,
    trace: dict[str, Any],
) -> int | None:
    """A past decision of the demo world (`decided_via` 'seed', key `seed:<case id>`): its row ID,
    or None when it was seeded before. Its `trace` is the seed document's shape, not a full DecisionTrace."""
    return await conn.fetchval(
        """INSERT INTO decision_traces
                  (decision_key, case_id, run_id, trace_name, kind, business_key, policy, gate, outcome,
                   decided_by, decided_via, reason, reason_codes, opened_at, decided_at, trace)
           VALUES ($1, $2, 'seed', $3, $3, $4, $5, $6, $7, $8, 'seed', $9, $10, $11, $12, $13::jsonb)
           ON CONFLICT (decision_key) DO NOTHING
           RETURNING id""",
        f"seed:{case_id}",
        case_id,
        kind.value,
        business_key,
        policy,
        gate,
        outcome,
        decided_by,
        reason,
        reason_codes,
        opened_at,
        decided_at,
        json.dumps(trace),
    )


async def recorded_among(conn: Connection, case_ids: list[str]) -> list[str]:
    """Which of `case_ids` have a recorded trace."""
    rows = await conn.fetch("SELECT case_id FROM decision_traces WHERE case_id = ANY($1::text[])", case_ids)
    return [row["case_id"] for row in rows]


async def recorded_under(conn: Connection, decision_key: str) -> asyncpg.Record:
    """The `id` and `otel_trace_id` of the trace recorded under `decision_key` (LookupError if there is none)."""
    row = await conn.fetchrow("SELECT id, otel_trace_id FROM decision_traces WHERE decision_key = $1", decision_key)
    if row is None:
        raise LookupError(f"no decision trace with key {decision_key}")
    return row


async def set_late_additions(
    conn: Connection, decision_key: str, *, rejected_attempts_json: str, operator_actions_json: str
) -> bool:
    """Replace the trace's rejected attempts and operator actions (JSON arrays); False when no trace has the key."""
    updated = await conn.execute(
        """UPDATE decision_traces
              SET trace = jsonb_set(jsonb_set(trace, '{rejected_attempts}', $2::jsonb), '{operator_actions}', $3::jsonb)
            WHERE decision_key = $1""",
        decision_key,
        rejected_attempts_json,
        operator_actions_json,
    )
    return updated != "UPDATE 0"


async def latest_trace(conn: Connection, case_id: str) -> asyncpg.Record | None:
    """The newest trace of the case (`id`, `trace` as JSON text, `recorded_at`), as `hitl trace` prints it."""
    return await conn.fetchrow(
        "SELECT id, trace, recorded_at FROM decision_traces WHERE case_id = $1 ORDER BY id DESC LIMIT 1", case_id
    )


async def recorded_case_ids(conn: Connection, business_key: str, *, limit: int) -> list[str]:
    """Case IDs with a trace under `business_key` (at most `limit`): decided cases Temporal may no longer know."""
    rows = await conn.fetch(
        "SELECT DISTINCT case_id FROM decision_traces WHERE business_key = $1 ORDER BY case_id LIMIT $2",
        business_key,
        limit,
    )
    return [row["case_id"] for row in rows]


async def recorded_runs(conn: Connection, case_ids: list[str]) -> tuple[set[tuple[str, str]], set[str]]:
    """For these cases: the (case ID, run ID) pairs and the decision keys that have a trace."""
    rows = await conn.fetch(
        "SELECT case_id, run_id, decision_key FROM decision_traces WHERE case_id = ANY($1::text[])", case_ids
    )
    return {(r["case_id"], r["run_id"]) for r in rows}, {r["decision_key"] for r in rows}


async def report_rows(conn: Connection, *, since: datetime | None) -> list[TraceRow]:
    """Recorded decisions (seeded history excluded), decided at or after `since`, for `hitl report`."""
    records = await conn.fetch(
        """SELECT kind, gate, outcome, decided_via, opened_at, decided_at, trace
           FROM decision_traces
           WHERE decided_via <> 'seed' AND ($1::timestamptz IS NULL OR decided_at >= $1)
           ORDER BY decided_at""",
        since,
    )
    return [TraceRow.from_record(r) for r in records]
