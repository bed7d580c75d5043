"""`hitl policy review CHANGE`: a policy change's brief, gate and outcome, as its owners read it.

Decide it with `hitl approve CHANGE --reason R` or `hitl reject CHANGE --reason R` (the same update as a case's).
"""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.policy.changes import change_id_of, change_state, render_change


@click.command()
@state_dir_option
@click.argument("change")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def review(app: Application, change: str, as_json: bool) -> None:
    """CHANGE (`policy_change:<ref>` or the proposed version's ref): diff, who decides, what-if, agreement, gate."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        view = await change_state(await app.temporal(), change_id_of(change))
        click.echo(view.model_dump_json(indent=2) if as_json else render_change(view))
        return 0

    app.run(body)
