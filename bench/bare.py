"""The bare approval workflow: the least a human approval on Temporal can cost.

One activity, a wait for a `decide` signal with a deadline timer, one activity; each activity
does one trivial PostgreSQL insert, so the comparison with the real case workflows is fair
about I/O. Its history is the floor: 4 (start) + 6 (activity) + 6 (signal wait with timer)
+ 6 (activity) + 1 (completion) = 23 events.

Its activities live in `bench.bare_activities`: a workflow module must not import asyncpg, because
the sandbox re-imports a non-passed-through workflow module and everything it imports; a second
copy of asyncpg's C extension inside the sandbox crashed the worker with a segfault in the first
activity that used a connection.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

BARE_WORKFLOW = "BenchBareApproval"
BARE_DEADLINE = timedelta(hours=24)


@workflow.defn(name=BARE_WORKFLOW)
class BareApprovalWorkflow:
    def __init__(self) -> None:
        self._decision: dict[str, Any] | None = None

    @workflow.signal(name="decide")
    def decide(self, decision: dict[str, Any]) -> None:
        if self._decision is None:
            self._decision = decision

    @workflow.run
    async def run(self, key: str) -> str:
        await workflow.execute_activity(
            "bench_bare_step", args=[key, "open"], start_to_close_timeout=timedelta(seconds=30)
        )
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=BARE_DEADLINE)
            outcome = str(self._decision.get("outcome", "approve"))  # type: ignore[union-attr]
        except TimeoutError:
            outcome = "timeout"
        await workflow.execute_activity(
            "bench_bare_step", args=[key, outcome], start_to_close_timeout=timedelta(seconds=30)
        )
        return outcome
