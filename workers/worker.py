"""The worker process: every workflow and activity of the project on one task queue."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import (
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)

from activities.audit_checkpoints import AuditCheckpointActivities
from activities.case_activities import CaseActivities
from activities.db import create_pool
from activities.directory import DirectoryActivities
from activities.gather import GatherActivities
from activities.identity import IdentityActivities
from activities.migrations import SchemaBehind, pending_migrations
from activities.notify import NotifyActivities
from activities.openings import OpeningActivities
from activities.policy_change import PolicyChangeActivities
from activities.stack_check import StackCheckActivities
from activities.start_metadata import StartMetadataActivities
from workers.client import connect_client, worker_client
from workers.config import Settings, resolve_database_url
from workers.heartbeat import HeartbeatWhileRunning
from workflows.audit_checkpoint import AuditCheckpointWorkflow
from workflows.kinds import CASE_WORKFLOWS
from workflows.policy_change import PolicyChangeWorkflow
from workflows.stack_check import StackCheckWorkflow

WORKFLOWS: list[type] = [StackCheckWorkflow, AuditCheckpointWorkflow, *CASE_WORKFLOWS.values(), PolicyChangeWorkflow]

# Our pure modules are deterministic and side-effect free: passing them through the sandbox
# avoids re-importing them (and rebuilding pydantic schemas) for every workflow run. The JOSE
# libraries the workflow verifies proofs with are passed through too: re-imported inside the
# sandbox, cryptography's Rust core aborts the process when it raises InvalidSignature.
STRICT_WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("gates", "activities", "jwt", "cryptography", "rfc8785")
)
# The worker's runner passes our workflow modules (`workflows.*`: orchestration, constants only, no
# module state) through as well, so they are imported once per process instead of once per workflow
# run: a profile of the benchmark's worker found a fifth to a third of its CPU in re-executing them
# (BENCHMARKS.md, "The sandbox's re-imports"). The sandbox then no longer checks what our own
# workflow code calls, so two guards stand in: the fast workflow tier (tests/unit/workflow/) and the
# replay of the stored histories run in STRICT_WORKFLOW_RUNNER, where our workflow modules are
# re-imported inside the sandbox and a non-deterministic call fails the test, and ruff bans the
# clock, randomness, environment and I/O in workflows/ (TID251, pyproject.toml).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=STRICT_WORKFLOW_RUNNER.restrictions.with_passthrough_modules("workflows")
)


def activities_for(pool: asyncpg.Pool, settings: Settings, client: Client) -> list:
    start_metadata, cases = StartMetadataActivities(client), CaseActivities(pool, settings)
    directory, identity = DirectoryActivities(pool), IdentityActivities(settings)
    gather = GatherActivities(pool, settings)
    return [
        start_metadata.read_start_metadata,
        StackCheckActivities(pool).record_stack_check,
        *gather.activities(),
        *cases.activities(),
        directory.load_reviewer_roster,
        identity.resolve_trust,
        *OpeningActivities(pool, start_metadata, cases, directory, identity, gather).activities(),
        NotifyActivities(pool, settings).notify_reviewers,
        AuditCheckpointActivities(pool, settings).sign_audit_checkpoint,
        *PolicyChangeActivities(pool, settings).activities(),
    ]


def build_worker(client: Client, pool: asyncpg.Pool, settings: Settings, *, task_queue: str | None = None, **options) -> Worker:
    """The worker, on the client's connection with the worker's data converter (workers/client.py);
    activities that call Temporal keep the given client, which decodes as any client does."""
    return case_worker(
        client,
        task_queue=task_queue or settings.task_queue,
        activities=activities_for(pool, settings, client),
        **({"max_cached_workflows": settings.max_cached_workflows} | options),
    )


def case_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable],
    workflow_runner: WorkflowRunner = WORKFLOW_RUNNER,
    **options,
) -> Worker:
    """A worker of the case workflows with the given activities: the real ones (`build_worker`) or the
    fast test tier's fakes of the same names (tests/unit/workflow/, in STRICT_WORKFLOW_RUNNER), configured alike.
    `interceptors` in `options` come after the heartbeat interceptor."""
    extra_interceptors = options.pop("interceptors", [])
    return Worker(
        worker_client(client),
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        workflow_runner=workflow_runner,
        interceptors=[HeartbeatWhileRunning(), *extra_interceptors],
        # No workflow_failure_exception_types: a nondeterministic replay fails the workflow *task*,
        # which Temporal retries, so the case keeps running and resumes on a compatible worker. This
        # matters in a rolling deploy of a patched change: an old worker that replays a case a new
        # worker started must not fail the case for good. `hitl ops stuck` reports such a task.
        **options,
    )


async def run_worker(settings: Settings) -> None:
    """`hitl worker`: run until SIGINT/SIGTERM, then drain in-flight tasks and exit."""
    database = resolve_database_url(settings)
    pool = await create_pool(database.value, source=database.source)
    try:
        async with pool.acquire() as conn:
            pending = await pending_migrations(conn)
        if pending:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
            raise SchemaBehind(f"the database schema is behind ({names} not applied): run `hitl migrate` first")
        client = await connect_client(settings)
        worker = build_worker(client, pool, settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            print(f"worker polling task queue {settings.task_queue!r} on {client.service_client.config.target_host}", flush=True)
            # `decided` notifications a stopped worker wrote with their traces but did not deliver
            redelivery = NotifyActivities(pool, settings)
            if found := await redelivery.redeliver_pending():
                print(f"delivering {found} decided notification(s) a stopped worker left undelivered", flush=True)
            await stop.wait()
    finally:
        await pool.close()
