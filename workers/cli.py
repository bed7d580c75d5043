"""The `hitl` command line. Every command ends with os._exit: see `_finish`."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from activities.db import DatabaseUnavailable, connect
from activities.migrations import MigrationError, apply_migrations
from workers.cases import CaseError
from workers.client import TemporalUnavailable, connect_client
from workers.config import Settings, resolve_database_url
from workers.devstack import ChildFailed, PortInUse

# Errors a user can act on: one line on stderr, no stack trace.
USER_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    TemporalUnavailable,
    MigrationError,
    PortInUse,
    ChildFailed,
    CaseError,
)


def _finish(code: int) -> None:
    """Flush and leave with os._exit: short-lived processes that used the Temporal SDK can abort
    at interpreter exit (sdk-python #300, exit code 134)."""
    from workers.telemetry import shutdown_tracing

    shutdown_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"hitl: {message}", err=True)
    _finish(code)


def load_settings(state_dir: Path | None) -> Settings:
    try:
        settings = Settings()
    except ValidationError as err:
        problems = "; ".join(f"HITL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors())
        _fail(f"invalid configuration: {problems}")
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir})
    return settings


def run_command(body: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run an async command body, turning known errors into one-line messages."""
    try:
        code = asyncio.run(body()) or 0
    except USER_ERRORS as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _finish(130)
    _finish(code)


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="HITL_STATE_DIR",
    help="State directory of the dev stack [default: .hitl]",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Human-in-the-loop decisions on Temporal."""


@cli.command()
@state_dir_option
@click.option("--temporal-port", type=int, default=7233, show_default=True, help="Temporal frontend gRPC port.")
@click.option("--ui-port", type=int, default=8233, show_default=True, help="Temporal Web UI port.")
@click.option("--pg-port", type=int, default=55432, show_default=True, help="Embedded PostgreSQL port.")
@click.option("--no-worker", is_flag=True, help="Start the servers only; run `hitl worker` yourself.")
def dev(state_dir: Path | None, temporal_port: int, ui_port: int, pg_port: int, no_worker: bool) -> None:
    """Run Temporal (with the Web UI), PostgreSQL and a worker in the foreground."""
    from workers.dev import AlreadyRunning, DevOptions, run_dev

    settings = load_settings(state_dir)
    options = DevOptions(
        state_dir=settings.state_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        pg_port=pg_port,
        with_worker=not no_worker,
    )
    try:
        code = run_dev(options, settings)
    except (*USER_ERRORS, AlreadyRunning) as err:
        _fail(str(err))
    _finish(code)


@cli.command()
@state_dir_option
def worker(state_dir: Path | None) -> None:
    """Run a worker against the configured Temporal and PostgreSQL until SIGINT/SIGTERM."""
    from workers.telemetry import configure_tracing
    from workers.worker import run_worker

    settings = load_settings(state_dir)
    configure_tracing(settings, "hitl-worker")
    run_command(lambda: run_worker(settings))


@cli.command()
@state_dir_option
def migrate(state_dir: Path | None) -> None:
    """Apply pending schema migrations to HITL_DATABASE_URL (safe to run twice, or concurrently)."""
    settings = load_settings(state_dir)

    async def body() -> int:
        database = resolve_database_url(settings)
        conn = await connect(database.value, source=database.source)
        try:
            applied = await apply_migrations(conn)
        finally:
            await conn.close()
        if applied:
            for migration in applied:
                click.echo(f"applied {migration.version:04d}_{migration.name}")
        else:
            click.echo("schema is up to date")
        return 0

    run_command(body)


@cli.command()
@state_dir_option
def check(state_dir: Path | None) -> None:
    """Run a probe workflow through a worker and PostgreSQL, and report what answered."""
    from activities.stack_check import StackCheckInput, StackCheckResult
    from workflows.stack_check import STACK_CHECK

    settings = load_settings(state_dir)

    async def body() -> int:
        client = await connect_client(settings)
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
                timeout=30,
            )
        except TimeoutError:
            click.echo(
                f"hitl: no worker completed the probe within 30s on task queue {settings.task_queue!r}; "
                "is `hitl worker` (or `hitl dev`) running?",
                err=True,
            )
            return 1
        click.echo(
            f"ok: Temporal at {client.service_client.config.target_host}, worker {result.worker_identity}, "
            f"PostgreSQL row {result.row_id}"
        )
        return 0

    run_command(body)


from workers.case_commands import register as _register_case_commands

_register_case_commands(cli, load_settings=load_settings, run_command=run_command, state_dir_option=state_dir_option, fail=_fail)

from workers.ops_commands import register as _register_ops_commands

_register_ops_commands(cli, load_settings=load_settings, run_command=run_command, state_dir_option=state_dir_option, fail=_fail)


def main() -> None:
    cli.main(standalone_mode=True)


if __name__ == "__main__":
    main()
