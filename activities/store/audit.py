"""The `audit_events` table: the hash-chained audit log (gates/audit.py computes and checks the chains).

Appends are serialised by a transaction-level advisory lock, so every appender reads the heads
the previous one wrote and the global chain has no forks; the primary key on global_seq and the
unique (case_id, case_seq) back that up (an appender that read stale heads fails instead of forking).
An event is written once per event_key: a retry or a replay adds nothing and gets the stored row.
The table refuses UPDATE, DELETE and TRUNCATE (migration 0004); rows are read back as `AuditRow`s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import TypeAlias

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from gates.audit import (
    WHOLE_LOG,
    AuditEvent,
    AuditKind,
    AuditReport,
    AuditRow,
    AuditScope,
    ChainLink,
    ChainVerifier,
    Checkpoint,
    TraceRecord,
    chain_rows,
    row_from_mapping,
    trace_event_body,
)

# A connection or a pool, for functions that make one call.
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

# An arbitrary constant shared by every appender: the key of the transaction-level advisory lock ("HITLA").
_APPEND_LOCK_KEY = 0x48_49_54_4C_41
# Rows fetched per round trip when streaming the whole log.
READ_BATCH = 2000

_COLUMNS = "global_seq, case_id, case_seq, event_key, kind, at, body_canonical, case_prev, entry_hash, global_prev, row_hash"
_TRACE_COLUMNS = "id, decision_key, case_id, outcome, decided_by, decided_via, reason, trace::text AS trace"


def _row(record: asyncpg.Record) -> AuditRow:
    """A stored row as an AuditRow (AuditInputError when an insider left one that is not a row)."""
    return row_from_mapping(dict(record))


def _trace(record: asyncpg.Record) -> TraceRecord:
    return TraceRecord(
        trace_id=record["id"],
        decision_key=record["decision_key"],
        case_id=record["case_id"],
        outcome=record["outcome"],
        decided_by=record["decided_by"],
        decided_via=record["decided_via"],
        reason=record["reason"],
        trace=json.loads(record["trace"]),
    )


async def append_events(conn: asyncpg.Connection, events: Sequence[AuditEvent]) -> list[AuditRow]:
    """Append `events` in order, in one transaction (the caller's, when it is in one); the row of each
    (the stored one when its event_key was appended before, by an earlier call or earlier in `events`)."""
    if not events:
        return []
    async with _transaction(conn):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK_KEY)
        keys = list(dict.fromkeys(event.event_key for event in events))
        cases = list(dict.fromkeys(event.case_id for event in events))
        stored, case_heads, global_head = await _chain_state(conn, keys, cases)
        fresh: dict[str, AuditEvent] = {}  # first occurrence of each key not stored yet, in order
        for event in events:
            if event.event_key not in stored:
                fresh.setdefault(event.event_key, event)
        if fresh:
            written = chain_rows(fresh.values(), case_heads=case_heads, global_head=global_head)
            await conn.executemany(
                f"INSERT INTO audit_events ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                [
                    (
                        row.global_seq,
                        row.case_id,
                        row.case_seq,
                        row.event_key,
                        str(row.kind),
                        row.at,
                        row.body_canonical,
                        row.case_prev,
                        row.entry_hash,
                        row.global_prev,
                        row.row_hash,
                    )
                    for row in written
                ],
            )
            stored.update((row.event_key, row) for row in written)
        return [stored[event.event_key] for event in events]


def _transaction(conn: asyncpg.Connection) -> AbstractAsyncContextManager[object]:
    """A transaction, or the caller's when it is in one: a savepoint would cost two more round trips
    and buy nothing, since every caller lets a failure here end its whole transaction."""
    return nullcontext() if conn.is_in_transaction() else conn.transaction()


async def _chain_state(
    conn: asyncpg.Connection, keys: list[str], cases: list[str]
) -> tuple[dict[str, AuditRow], dict[str, AuditRow], AuditRow | None]:
    """In one round trip, under the append lock: the rows already stored under `keys`, the newest row
    of each of `cases`, and the newest row of the global chain."""
    records = await conn.fetch(
        f"""SELECT 'stored' AS part, {_COLUMNS} FROM audit_events WHERE event_key = ANY($1::text[])
            UNION ALL
            SELECT * FROM (SELECT DISTINCT ON (case_id) 'case_head', {_COLUMNS} FROM audit_events
                           WHERE case_id = ANY($2::text[]) ORDER BY case_id, case_seq DESC) AS case_heads
            UNION ALL
            SELECT * FROM (SELECT 'global_head', {_COLUMNS} FROM audit_events ORDER BY global_seq DESC LIMIT 1) AS global_head""",
        keys,
        cases,
    )
    parts: dict[str, list[AuditRow]] = {"stored": [], "case_head": [], "global_head": []}
    for record in records:
        parts[record["part"]].append(_row(record))
    stored = {row.event_key: row for row in parts["stored"]}
    return stored, {row.case_id: row for row in parts["case_head"]}, next(iter(parts["global_head"]), None)


async def append_with_trace_event(
    conn: asyncpg.Connection,
    events: Sequence[AuditEvent],
    *,
    trace_id: int,
    kind: AuditKind,
    at: datetime,
) -> list[AuditRow]:
    """Append `events`, then the event that binds trace `trace_id` as it is stored now (kind
    trace_recorded, or trace_amended after late additions rewrote it), in one transaction (the
    caller's, when it is in one). The digest
    is of the row read back, so it is what `verify` will read; its event key holds the digest, so
    writing the same trace again adds nothing and a changed trace adds one event."""
    async with _transaction(conn):
        record = await conn.fetchrow(f"SELECT {_TRACE_COLUMNS} FROM decision_traces WHERE id = $1", trace_id)
        if record is None:
            raise LookupError(f"no decision trace {trace_id}")
        trace = _trace(record)
        body = trace_event_body(trace)
        bound = AuditEvent(
            event_key=f"trace/{trace.trace_id}/{kind.value}/{str(body['trace_sha256'])[:32]}",
            case_id=trace.case_id,
            kind=kind,
            at=at,
            body=body,
        )
        return await append_events(conn, [*events, bound])


async def global_head_row(conn: Connection) -> AuditRow | None:
    """The newest row of the global chain (what a checkpoint signs), or None when the log is empty."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM audit_events ORDER BY global_seq DESC LIMIT 1")
    return None if record is None else _row(record)


async def case_rows(conn: Connection, case_id: str) -> list[AuditRow]:
    """The case's rows, in case_seq order."""
    return list(map(_row, await conn.fetch(f"SELECT {_COLUMNS} FROM audit_events WHERE case_id = $1 ORDER BY case_seq", case_id)))


async def all_rows(conn: asyncpg.Connection, *, batch: int = READ_BATCH) -> AsyncIterator[list[AuditRow]]:
    """Every row in global_seq order, `batch` at a time (never the whole log in memory). Call it inside
    a transaction (REPEATABLE READ, to read the traces from the same snapshot): it reads through a cursor."""
    cursor = await conn.cursor(f"SELECT {_COLUMNS} FROM audit_events ORDER BY global_seq")
    while records := await cursor.fetch(batch):
        yield list(map(_row, records))


async def links(conn: Connection, first_seq: int, last_seq: int) -> list[ChainLink]:
    """Every global row from `first_seq` to `last_seq` as a link (global_seq, entry_hash, row_hash): the
    chain proof a bundle carries from its case's first row up to a checkpoint, without other cases' content."""
    records = await conn.fetch(
        "SELECT global_seq, entry_hash, row_hash FROM audit_events WHERE global_seq BETWEEN $1 AND $2 ORDER BY global_seq",
        first_seq,
        last_seq,
    )
    return [ChainLink.model_validate(dict(record)) for record in records]


async def row_at(conn: Connection, global_seq: int) -> AuditRow | None:
    """The row at `global_seq` (to compare with a checkpoint), or None."""
    record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM audit_events WHERE global_seq = $1", global_seq)
    return None if record is None else _row(record)


# Seeded history (`decided_via` 'seed') and traces recorded before the log began (audit_log_origin)
# have no trace event: the chain vouches for neither.
_VOUCHED = """decided_via <> 'seed' AND id > (SELECT traces_before FROM audit_log_origin)
              AND ($1::text IS NULL OR case_id = $1)"""
_TRACES = f"SELECT {_TRACE_COLUMNS} FROM decision_traces WHERE {_VOUCHED} ORDER BY id"


async def recorded_traces(conn: Connection, case_id: str | None = None) -> list[TraceRecord]:
    """The decision traces the chain vouches for (of one case, or all), oldest first: not seeded
    history, nor traces recorded before the audit log began (they have no trace event)."""
    return list(map(_trace, await conn.fetch(_TRACES, case_id)))


async def verify_log(
    conn: asyncpg.Connection,
    *,
    scope: AuditScope = WHOLE_LOG,
    checkpoint: Checkpoint | None = None,
    public_key: Ed25519PublicKey | None = None,
    batch: int = READ_BATCH,
) -> AuditReport:
    """Check the stored log (the whole of it, or one case) and the traces in scope, from one snapshot.
    Rows stream through a cursor into gates/audit's ChainVerifier, `batch` at a time, and are checked
    as stored: a row an insider left malformed is a problem named by the verifier, not an exception.
    The traces in scope are read at once (their documents are the bulk: see the report)."""
    verifier = ChainVerifier(scope=scope, checkpoint=checkpoint)
    traces: list[TraceRecord] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if scope.case_id is None:
            cursor = await conn.cursor(f"SELECT {_COLUMNS} FROM audit_events ORDER BY global_seq")
        else:
            cursor = await conn.cursor(f"SELECT {_COLUMNS} FROM audit_events WHERE case_id = $1 ORDER BY case_seq", scope.case_id)
        while records := await cursor.fetch(batch):
            for record in records:
                verifier.feed(dict(record))
        for record in await conn.fetch(_TRACES, scope.case_id):
            try:
                traces.append(_trace(record))
            except ValidationError as err:
                first = err.errors(include_url=False)[0]
                where = ".".join(map(str, first["loc"])) or "row"
                problem = f"{where}: {first['msg']}"
                verifier.problems.append(f"trace {record['id']} (case {record['case_id']!r}) is not a trace: {problem}")
        unvouched = await conn.fetchval(
            """SELECT count(*) FROM decision_traces WHERE decided_via <> 'seed'
               AND id <= (SELECT traces_before FROM audit_log_origin) AND ($1::text IS NULL OR case_id = $1)""",
            scope.case_id,
        )
    report = verifier.finish(traces=traces, public_key=public_key)
    if unvouched:
        report.notes.append(f"{unvouched} trace(s) recorded before the audit log began are not covered by it")
    return report
