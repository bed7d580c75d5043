"""A bench worker subprocess: the project's worker (`build_worker`), and optionally the bare workflow.

    python -m bench.worker_proc --queue NAME=RUNNER:VARIANT [--queue ...] [--bare-task-queue Q] --ready-file F

Configuration comes from the environment exactly as for `hitl worker` (TEMPORAL_ADDRESS,
HITL_DATABASE_URL, HITL_POLICY_DIR, ...). Each `--queue` is one `build_worker(...)` on that task
queue, as is (variant `asserted`: with `identity="asserted"`).
RUNNER `project` is `workers.worker.WORKFLOW_RUNNER`; the others are bench-only
comparisons of the sandbox cost (`build_worker` reads the module global `WORKFLOW_RUNNER` when it is
called, so the bench sets it just before). VARIANT `product` is the product code; the others are the
bench-only changes of `bench.variants`, applied only to workflows on that queue. The bare workflow
runs in its own `Worker` with the runner of the first queue and the same options.
Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import (
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)

import workers.worker as project_worker
from activities.db import create_pool
from bench import variants
from bench.bare import BareApprovalWorkflow
from bench.bare_activities import BareActivities
from workers.client import connect_client
from workers.config import Settings, resolve_database_url

PROJECT_RUNNER = project_worker.WORKFLOW_RUNNER
RUNNERS = {
    "project": lambda: PROJECT_RUNNER,
    # The SDK default: every module of ours re-imported for each workflow run (what WORKFLOW_RUNNER avoids).
    "default_sandbox": lambda: SandboxedWorkflowRunner(),
    "passthrough_all": lambda: SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules()),
    "unsandboxed": lambda: UnsandboxedWorkflowRunner(),
    # The runner of the fast workflow tier and of replay: our workflow modules re-imported for every run.
    "strict": lambda: project_worker.STRICT_WORKFLOW_RUNNER,
}


def parse_queue(spec: str) -> tuple[str, str, str]:
    name, _, rest = spec.partition("=")
    runner, _, variant = rest.partition(":")
    if not name or runner not in RUNNERS or variant not in variants.VARIANTS:
        raise argparse.ArgumentTypeError(
            f"--queue NAME=RUNNER:VARIANT, runner in {sorted(RUNNERS)}, variant in {variants.VARIANTS}"
        )
    return name, runner, variant


async def main(args: argparse.Namespace) -> None:
    variants.install({name: variant for name, _, variant in args.queue})
    settings = Settings()
    database = resolve_database_url(settings)
    pool = await create_pool(database.value, source=database.source)
    client = await connect_client(settings)
    workers: list[Worker] = []
    first_runner = None
    for name, runner_name, variant in args.queue:
        runner = RUNNERS[runner_name]()
        first_runner = first_runner or runner
        project_worker.WORKFLOW_RUNNER = runner
        # `asserted`: the same worker settings with identity off, as HITL_IDENTITY=asserted gives
        queue_settings = settings.model_copy(update=variants.SETTINGS_OF_VARIANT.get(variant, {}))
        workers.append(project_worker.build_worker(client, pool, queue_settings, task_queue=name))
    project_worker.WORKFLOW_RUNNER = PROJECT_RUNNER
    if args.bare_task_queue:
        workers.append(
            Worker(
                client,
                task_queue=args.bare_task_queue,
                workflows=[BareApprovalWorkflow],
                activities=[BareActivities(pool).step],
                workflow_runner=first_runner,
                max_cached_workflows=settings.max_cached_workflows,  # the same worker settings as the cases'
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        print(f"bench worker: got signal {sig}, stopping", flush=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    async with AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        Path(args.ready_file).write_text(str(os.getpid()))  # noqa: ASYNC240 - a few bytes, once, before any case runs
        queues = ", ".join(f"{n} ({r}, {v})" for n, r, v in args.queue)
        print(f"bench worker ready: {queues}; bare: {args.bare_task_queue or '-'}", flush=True)
        await stop.wait()
    await pool.close()


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", type=parse_queue, action="append", required=True)
    parser.add_argument("--bare-task-queue")
    parser.add_argument("--ready-file", required=True)
    asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300: never let interpreter finalization abort the process
