"""`hitl show CASE`: one case as a reviewer reads it."""

from __future__ import annotations

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.render import case_renderable, emit, stdout_is_terminal


@click.command()
@state_dir_option
@click.argument("case")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: Application, case: str, as_json: bool) -> None:
    """CASE (case ID, unique prefix or business key): brief, findings, proposal, precedents, gate,
    deadlines, who may decide, rejected attempts and operator actions."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        cases = await app.cases()
        view = await cases.get_case(await cases.resolve_case_id(case))
        if as_json:
            click.echo(view.model_dump_json(indent=2))
        else:
            terminal = stdout_is_terminal()
            emit(case_renderable(view, terminal=terminal), terminal=terminal)
        return 0

    app.run(body)
