"""`hitl seed`: fill the demo world if it is empty."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option


@click.command()
@state_dir_option
@pass_app
def seed(app: Application) -> None:
    """Fill the demo world (accounts, vendors, people, reviewer groups, past decisions) if it is empty."""
    from demo.world import seed_demo_world

    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        seeded = await seed_demo_world(await app.database())
        click.echo("seeded the demo world" if seeded else "demo world already present; nothing changed")
        return 0

    app.run(body)
