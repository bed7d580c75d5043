"""`hitl check`: a probe workflow through a worker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.errors import NoWorker

# How long the probe may take before `hitl check` says no worker answered.
PROBE_TIMEOUT_SECONDS = 30


@click.command()
@state_dir_option
@pass_app
def check(app: Application) -> None:
    """Run a probe workflow through a worker and PostgreSQL, and report what answered."""
    from gates.messages import StackCheckInput, StackCheckResult
    from workflows.stack_check import STACK_CHECK

    settings = app.settings

    async def body() -> int:
        client = await app.temporal()
        check_id = f"check-{uuid.uuid4()}"
        try:
            result: StackCheckResult = await asyncio.wait_for(
                client.execute_workflow(
                    STACK_CHECK,
                    StackCheckInput(check_id=check_id),
                    id=check_id,
                    task_queue=settings.task_queue,
                    result_type=StackCheckResult,
                    execution_timeout=timedelta(seconds=60),
                ),
                timeout=PROBE_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            raise NoWorker(
                f"no worker completed the probe within {PROBE_TIMEOUT_SECONDS}s on task queue {settings.task_queue!r}; "
                "is `hitl worker` (or `hitl dev`) running?"
            ) from None
        click.echo(
            f"ok: Temporal at {client.service_client.config.target_host}, worker {result.worker_identity}, "
            f"PostgreSQL row {result.row_id}"
        )
        return 0

    app.run(body)
