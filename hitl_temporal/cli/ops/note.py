"""`hitl ops note CASE_ID --reason TEXT`: add an operator's note to the case and its trace."""

from __future__ import annotations

import click

from gates.gate import OperatorActionKind
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.ops.options import NOT_CONFIRMED, action_options, checked_action, confirmed


@click.command()
@action_options
@pass_app
def note(app: Application, case_id: str, reason: str, operator: str | None, yes: bool) -> None:
    """Add a note (--reason) to CASE_ID and its trace; nothing else changes."""
    app.settings  # noqa: B018 -- a configuration error comes first
    action = checked_action(app, OperatorActionKind.NOTE, operator, reason)
    if not confirmed(f"Add a note to {case_id} as {action.operator}: {reason}?", yes):
        app.fail(NOT_CONFIRMED, 1)

    async def body() -> int:
        cases = await app.cases()
        case = await cases.resolve_case_id(case_id)
        click.echo(f"{case}: {(await cases.note(case, operator=action.operator, reason=reason, proof=action.proof)).result}")
        return 0

    app.run(body)
