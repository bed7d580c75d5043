"""The `hitl check` probe: proves a worker is polling and can write through the migrated schema."""

from __future__ import annotations

import os
import socket

import asyncpg
from temporalio import activity

from gates.messages import StackCheckInput, StackCheckResult


def worker_identity() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


class StackCheckActivities:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="record_stack_check")
    async def record_stack_check(self, check: StackCheckInput) -> StackCheckResult:
        """Idempotent on `check_id`: a retried attempt returns the row the first attempt wrote."""
        identity = worker_identity()
        row_id = await self._pool.fetchval(
            """INSERT INTO stack_checks (check_id, workflow_id, worker_identity)
               VALUES ($1, $2, $3)
               ON CONFLICT (check_id) DO UPDATE SET check_id = EXCLUDED.check_id
               RETURNING id""",
            check.check_id,
            activity.info().workflow_id,
            identity,
        )
        return StackCheckResult(check_id=check.check_id, worker_identity=identity, row_id=row_id)
