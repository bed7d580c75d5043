"""The worker of the fast workflow tier: the real case workflows, the real worker's converter,
the strict sandbox and interceptors (workers/worker.py), and the fake activities of tests/unit/workflow/fakes.py."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from gates.trace import CaseResult
from tests.unit.workflow.fakes import FakeWorld
from workers.worker import STRICT_WORKFLOW_RUNNER, case_worker

# A case whose workflow task fails is retried by Temporal for ever: a test fails after this instead
# (generous, for a loaded machine; a healthy case ends in well under a second).
CASE_TIMEOUT_SECONDS = 60


def fake_world_worker(client: Client, world: FakeWorld) -> Worker:
    """A worker on its own task queue (`worker.task_queue`), built as the real one is
    (workers.worker.case_worker), with the fake world's activities; use as `async with`. In the strict
    sandbox: our workflow modules re-imported inside it for every run, so that a non-deterministic
    call in them fails here (the worker passes them through for speed)."""
    return case_worker(
        client, task_queue=f"fast-{uuid.uuid4()}", activities=world.activities(), workflow_runner=STRICT_WORKFLOW_RUNNER
    )


async def finished(handle: WorkflowHandle) -> CaseResult:
    """The case's result; on the time-skipping server every timer it waits on fires at once."""
    return await asyncio.wait_for(handle.result(), CASE_TIMEOUT_SECONDS)


async def skip_time(env: WorkflowEnvironment, duration: timedelta) -> None:
    """Advance the time-skipping server's clock by `duration`. Its sleep call is one RPC that lasts as
    long as the cases take to handle the timers it fires; on a loaded machine that can outlast the
    RPC's deadline ("Timeout expired") with the clock part of the way: sleep the rest, to the same
    target, never past it."""
    target = await env.get_current_time() + duration
    for _ in range(5):
        remaining = target - await env.get_current_time()
        if remaining <= timedelta(0):
            return
        try:
            await env.sleep(remaining)
            return
        except RPCError as err:
            if "Timeout expired" not in str(err):
                raise
    raise AssertionError(f"the time-skipping server did not reach {target} after five sleeps")
