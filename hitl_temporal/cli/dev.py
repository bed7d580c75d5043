"""`hitl dev`: Temporal (with the Web UI), PostgreSQL and a worker in the foreground."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option


@click.command()
@state_dir_option
@click.option("--temporal-port", type=int, default=7233, show_default=True, help="Temporal frontend gRPC port.")
@click.option("--ui-port", type=int, default=8233, show_default=True, help="Temporal Web UI port.")
@click.option("--pg-port", type=int, default=55432, show_default=True, help="Embedded PostgreSQL port.")
@click.option(
    "--codec-port",
    type=int,
    default=8234,
    show_default=True,
    help="With HITL_CODEC_KEYS set: the port of the codec server the Web UI decodes encrypted payloads with.",
)
@click.option("--no-worker", is_flag=True, help="Start the servers only; run `hitl worker` yourself.")
@pass_app
def dev(app: Application, temporal_port: int, ui_port: int, pg_port: int, codec_port: int, no_worker: bool) -> None:
    """Run Temporal (with the Web UI), PostgreSQL and a worker in the foreground; with HITL_CODEC_KEYS set,
    also `hitl codec-server`, and the UI decodes through it."""
    from workers.dev import AlreadyRunning, DevOptions, run_dev

    settings = app.settings
    options = DevOptions(
        state_dir=settings.state_dir,
        temporal_port=temporal_port,
        ui_port=ui_port,
        pg_port=pg_port,
        with_worker=not no_worker,
        codec_port=codec_port if settings.codec_keys is not None else None,
    )
    app.call(lambda: run_dev(options, settings), also=(AlreadyRunning,))
