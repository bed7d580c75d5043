"""Activities of the bare approval workflow (`bench.bare`): one trivial PostgreSQL insert each."""

from __future__ import annotations

import asyncpg
from temporalio import activity


class BareActivities:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="bench_bare_step")
    async def step(self, key: str, step: str) -> None:
        await self._pool.execute("INSERT INTO bench_bare_steps (case_key, step) VALUES ($1, $2)", key, step)
