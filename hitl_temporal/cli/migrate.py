"""`hitl migrate`: apply pending schema migrations."""

from __future__ import annotations

import click

from activities.migrations import apply_migrations
from hitl_temporal.cli.application import Application, pass_app, state_dir_option


@click.command()
@state_dir_option
@pass_app
def migrate(app: Application) -> None:
    """Apply pending schema migrations to HITL_DATABASE_URL (safe to run twice, or concurrently)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        applied = await apply_migrations(await app.database())
        if applied:
            for migration in applied:
                click.echo(f"applied {migration.version:04d}_{migration.name}")
        else:
            click.echo("schema is up to date")
        return 0

    app.run(body)
