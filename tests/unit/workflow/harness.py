"""The worker of the fast workflow tier: the real case workflows, the real worker's converter,
sandbox and interceptors (workers/worker.py), and the fake activities of tests/unit/workflow/fakes.py."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from gates.trace import CaseResult
from tests.unit.workflow.fakes import FakeWorld
from workers.client import worker_client
from workers.heartbeat import HeartbeatWhileRunning
from workers.worker import WORKFLOW_RUNNER, WORKFLOWS

# A case whose workflow task fails is retried by Temporal for ever: a test fails after this instead
# (generous, for a loaded machine; a healthy case ends in well under a second).
CASE_TIMEOUT_SECONDS = 60


def case_worker(client: Client, world: FakeWorld) -> Worker:
    """A worker on its own task queue (`worker.task_queue`) built as `build_worker` builds the real
    one, with the fake world's activities; use as `async with`."""
    return Worker(
        worker_client(client),
        task_queue=f"fast-{uuid.uuid4()}",
        workflows=WORKFLOWS,
        activities=world.activities(),
        workflow_runner=WORKFLOW_RUNNER,
        interceptors=[HeartbeatWhileRunning()],
    )


async def finished(handle: WorkflowHandle) -> CaseResult:
    """The case's result; on the time-skipping server every timer it waits on fires at once."""
    return await asyncio.wait_for(handle.result(), CASE_TIMEOUT_SECONDS)
