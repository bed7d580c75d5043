"""`hitl worker`: the case worker, against the configured Temporal and PostgreSQL."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option


@click.command()
@state_dir_option
@pass_app
def worker(app: Application) -> None:
    """Run a worker against the configured Temporal and PostgreSQL until SIGINT/SIGTERM."""
    from workers.telemetry import configure_tracing
    from workers.worker import run_worker

    settings = app.settings
    configure_tracing(settings, "hitl-worker")
    app.run(lambda: run_worker(settings))
