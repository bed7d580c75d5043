"""`notification_deliveries`: one row per notification and channel, so that a retried activity sends
only on the channels not delivered yet, and an operator can see a channel that keeps failing.

A delivery is `pending` until it is `delivered`, `skipped` (nobody it could reach) or `failed` (a
permanent failure, or the last attempt's). Its row is locked while it is being sent, so two attempts
of one notification running at once (a retry starting while a lost worker's attempt still runs)
never both send; a send that succeeded but could not be recorded is sent again (at least once).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal, TypeAlias

import asyncpg

from activities.channels.base import Sent

DeliveryStatus = Literal["pending", "delivered", "skipped", "failed"]
DONE: frozenset[str] = frozenset({"delivered", "skipped", "failed"})
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


@asynccontextmanager
async def claimed(
    pool: asyncpg.Pool, notification_id: int, channel: str
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Record]]:
    """The channel's delivery row, locked for the caller's send and its recording (created if new)."""
    await pool.execute(
        "INSERT INTO notification_deliveries (notification_id, channel) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        notification_id,
        channel,
    )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT status, last_error, attempts FROM notification_deliveries
                WHERE notification_id = $1 AND channel = $2 FOR UPDATE""",
            notification_id,
            channel,
        )
        yield conn, row


async def record_sent(conn: asyncpg.Connection, notification_id: int, channel: str, sent: Sent) -> DeliveryStatus:
    status: DeliveryStatus = "delivered" if sent.to else "skipped"
    await conn.execute(
        """UPDATE notification_deliveries
              SET status = $3, attempts = attempts + 1, sent_to = $4::jsonb, refused = $5::jsonb,
                  delivered_at = CASE WHEN $3 = 'delivered' THEN now() END
            WHERE notification_id = $1 AND channel = $2""",
        notification_id,
        channel,
        status,
        json.dumps(sent.to),
        json.dumps(sent.refused),
    )
    return status


async def record_failure(
    conn: asyncpg.Connection, notification_id: int, channel: str, error: str, *, final: bool
) -> DeliveryStatus:
    """Note a failed attempt; `final`: the channel is given up on for this notification."""
    status: DeliveryStatus = "failed" if final else "pending"
    await conn.execute(
        """UPDATE notification_deliveries
              SET status = $3, attempts = attempts + 1, last_error = $4,
                  first_failed_at = coalesce(first_failed_at, now()), last_failed_at = now()
            WHERE notification_id = $1 AND channel = $2""",
        notification_id,
        channel,
        status,
        error,
    )
    return status


async def deliveries_of(conn: Connection, notification_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM notification_deliveries WHERE notification_id = $1 ORDER BY channel", notification_id
    )


async def failing_channels(conn: Connection, *, since: datetime) -> list[asyncpg.Record]:
    """Per channel that failed within `since` and delivered nothing after: how many notifications it
    has not delivered since its last success, its latest error, and since when it has been failing."""
    return await conn.fetch(
        """WITH last_delivered AS (
               SELECT channel, max(delivered_at) AS at FROM notification_deliveries
                WHERE status = 'delivered' GROUP BY channel)
           SELECT d.channel,
                  count(*) AS notifications,
                  min(d.first_failed_at) AS since,
                  max(d.last_failed_at) AS last_failed_at,
                  (array_agg(d.last_error ORDER BY d.last_failed_at DESC))[1] AS last_error
             FROM notification_deliveries d LEFT JOIN last_delivered ok ON ok.channel = d.channel
            WHERE d.status IN ('pending', 'failed') AND d.last_error IS NOT NULL
              AND (ok.at IS NULL OR d.last_failed_at > ok.at)
            GROUP BY d.channel
           HAVING max(d.last_failed_at) >= $1
            ORDER BY d.channel""",
        since,
    )
