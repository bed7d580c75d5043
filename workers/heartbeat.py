"""Heartbeats for every regular activity the workflow gives a heartbeat timeout.

Without them, an activity attempt that was running on a worker that crashed is only retried when
its whole start-to-close timeout expires (30 s for a connector). With a heartbeat timeout of 10 s
and a heartbeat every third of it, Temporal notices the dead worker within 10 s. The activities
themselves stay plain functions: this interceptor beats for them while they run.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


class HeartbeatWhileRunning(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Beating(next)


class _Beating(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        if info.is_local or not info.heartbeat_timeout:
            return await super().execute_activity(input)
        interval = max(info.heartbeat_timeout.total_seconds() / 3, 0.1)

        async def beat() -> None:
            while True:  # the first beat after an interval: a short activity sends none
                await asyncio.sleep(interval)
                activity.heartbeat()

        beating = asyncio.create_task(beat())
        try:
            return await super().execute_activity(input)
        finally:
            beating.cancel()
