"""The `decision_traces` table: the record of every decision, written once per run of a decision key.

A case ID has one current trace, its newest (seeded history aside): a later run of the case (after a
reset, or a re-run under the same ID) records a new row that `supersedes` the one before (migration
0005), and every reader that counts decisions reads the current ones only.
"""

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


# A trace that is not seeded history and that no later trace of its case ID supersedes.
_CURRENT = """decided_via <> 'seed' AND NOT EXISTS (
    SELECT FROM decision_traces later WHERE later.case_id = t.case_id AND later.id > t.id AND later.decided_via <> 'seed')"""

# The first key of the two-key advisory lock a case's recording holds ("HITL" + "T"race); the second is the case.
_CASE_LOCK_SPACE = 0x48_49_54_54


async def lock_case(conn: asyncpg.Connection, case_id: str) -> None:
    """Hold the case's recording lock until the transaction ends: two runs of one case ID (an old run
    finishing its write while its reset successor records) never both find no current trace."""
    await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _CASE_LOCK_SPACE, case_id)


async def insert_trace(conn: Connection, decision_key: str, trace: DecisionTrace, *, supersedes: int | None = None) -> int | None:
    """Insert the trace of this run (`trace.run_id`) under `decision_key`, superseding trace `supersedes`
    when given; its row ID, or None when this run recorded its trace before."""
    return await conn.fetchval(
        """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy,
               gate, outcome, decided_by, decided_via, reason, reason_codes, otel_trace_id, opened_at,
               decided_at, trace, supersedes)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb,$18)
           ON CONFLICT (decision_key, run_id) DO NOTHING
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
        supersedes,
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
           ON CONFLICT (decision_key, run_id) DO NOTHING
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


async def recorded_by_run(conn: Connection, decision_key: str, run_id: str) -> asyncpg.Record | None:
    """The `id` and `otel_trace_id` of the trace this run recorded under `decision_key`, or None."""
    return await conn.fetchrow(
        "SELECT id, otel_trace_id FROM decision_traces WHERE decision_key = $1 AND run_id = $2", decision_key, run_id
    )


async def current_trace_of(conn: Connection, case_id: str) -> asyncpg.Record | None:
    """The case ID's current trace (`id`, `decision_key`, `run_id`, `decided_at`), or None: the one a new run's
    trace supersedes."""
    return await conn.fetchrow(
        f"SELECT id, decision_key, run_id, decided_at FROM decision_traces t WHERE case_id = $1 AND {_CURRENT}", case_id
    )


async def set_late_additions(
    conn: Connection, decision_key: str, *, rejected_attempts_json: str, operator_actions_json: str
) -> int | None:
    """Replace the rejected attempts and operator actions (JSON arrays) of the newest trace under the key
    (after a reset past the recording, the run adding to it is not the run that wrote it); its ID, or
    None when no trace has the key."""
    return await conn.fetchval(
        """UPDATE decision_traces
              SET trace = jsonb_set(jsonb_set(trace, '{rejected_attempts}', $2::jsonb), '{operator_actions}', $3::jsonb)
            WHERE id = (SELECT max(id) FROM decision_traces WHERE decision_key = $1)
        RETURNING id""",
        decision_key,
        rejected_attempts_json,
        operator_actions_json,
    )


async def latest_trace(conn: Connection, case_id: str) -> asyncpg.Record | None:
    """The case's current trace (`id`, `decision_key`, `trace` as JSON text, `recorded_at`, `supersedes`), as
    `hitl trace` prints it; seeded history only when the case has nothing else."""
    return await conn.fetchrow(
        """SELECT id, decision_key, trace, recorded_at, supersedes FROM decision_traces WHERE case_id = $1
           ORDER BY decided_via = 'seed', id DESC LIMIT 1""",
        case_id,
    )


async def latest_policy_change(conn: Connection, change_id: str) -> asyncpg.Record | None:
    """A policy change's recorded decision (`id`, `record` as JSON text, `recorded_at`): its own
    table (migration 0008), since a change is never a case's precedent; the newest run's."""
    return await conn.fetchrow(
        "SELECT id, record, recorded_at FROM policy_changes WHERE change_id = $1 ORDER BY id DESC LIMIT 1", change_id
    )


async def superseded_traces(conn: Connection, trace_id: int) -> list[asyncpg.Record]:
    """The traces `trace_id` supersedes, newest first, following the links back (`id`, `run_id`,
    `decision_key`, `outcome`, `decided_by`, `decided_via`, `recorded_at`)."""
    return await conn.fetch(
        """WITH RECURSIVE earlier AS (
               SELECT t.id, t.supersedes, 1 AS depth FROM decision_traces t
                WHERE t.id = (SELECT supersedes FROM decision_traces WHERE id = $1)
               UNION ALL
               SELECT t.id, t.supersedes, e.depth + 1 FROM decision_traces t JOIN earlier e ON t.id = e.supersedes
           )
           SELECT t.id, t.run_id, t.decision_key, t.outcome, t.decided_by, t.decided_via, t.recorded_at
             FROM earlier e JOIN decision_traces t USING (id) ORDER BY e.depth""",
        trace_id,
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
    rows = await conn.fetch("SELECT case_id, run_id, decision_key FROM decision_traces WHERE case_id = ANY($1::text[])", case_ids)
    return {(r["case_id"], r["run_id"]) for r in rows}, {r["decision_key"] for r in rows}


async def report_rows(conn: Connection, *, since: datetime | None) -> list[TraceRow]:
    """Recorded decisions, the current trace of each case only (seeded history excluded), decided at or
    after `since`, for `hitl report`."""
    records = await conn.fetch(
        f"""SELECT kind, gate, outcome, decided_via, opened_at, decided_at, trace
            FROM decision_traces t
            WHERE {_CURRENT} AND ($1::timestamptz IS NULL OR decided_at >= $1)
            ORDER BY decided_at""",
        since,
    )
    return [TraceRow.from_record(r) for r in records]
