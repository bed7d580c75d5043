"""`hitl show CASE`: one case as a reviewer reads it."""

from __future__ import annotations

import click

from activities.channels.links import ui_base_url, ui_workflow_url
from gates.policy_change import CHANGE_ID_PREFIX
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.render import case_renderable, emit, stdout_is_terminal
from hitl_temporal.errors import CaseError


@click.command()
@state_dir_option
@click.argument("case")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: Application, case: str, as_json: bool) -> None:
    """CASE (case ID, unique prefix or business key): brief, findings, proposal, precedents, gate,
    deadlines, who may decide, the open question (who is asked, due when) and every earlier one,
    rejected attempts and operator actions, and the case's link in the Temporal Web UI
    (HITL_UI_BASE_URL, or the running `hitl dev` stack's UI)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        if case.strip().startswith(CHANGE_ID_PREFIX):  # not a case: its own workflow, query and command
            raise CaseError(f"{case.strip()} is a policy change: use `hitl policy review {case.strip()}`")
        cases = await app.cases()
        view = await cases.get_case(await cases.resolve_case_id(case))
        if as_json:
            click.echo(view.model_dump_json(indent=2))
        else:
            base = ui_base_url(app.settings.ui_base_url, app.settings.state_dir)
            ui_url = ui_workflow_url(base, cases.client.namespace, view.case_id) if base else None
            terminal = stdout_is_terminal()
            emit(case_renderable(view, terminal=terminal, ui_url=ui_url), terminal=terminal)
        return 0

    app.run(body)
