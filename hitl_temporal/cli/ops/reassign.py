"""`hitl ops reassign CASE_ID --group G --reason WHY`: give the current level to another group."""

from __future__ import annotations

import click

from gates.gate import OperatorActionKind
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.ops.options import NOT_CONFIRMED, action_options, checked_action, confirmed


@click.command()
@action_options
@click.option("--group", required=True, help="Reviewer group that takes over the current level.")
@pass_app
def reassign(app: Application, case_id: str, reason: str, operator: str | None, yes: bool, group: str) -> None:
    """Give the current level of CASE_ID's gate to another reviewer --group."""
    app.settings  # noqa: B018 -- a configuration error comes first
    action = checked_action(app, OperatorActionKind.REASSIGN, operator, reason, group)
    if not confirmed(f"Give the current level of {case_id} to group {group}, as {action.operator} (reason: {reason})?", yes):
        app.fail(NOT_CONFIRMED, 1)

    async def body() -> int:
        cases = await app.cases()
        case = await cases.resolve_case_id(case_id)
        receipt = await cases.reassign(case, group=group, operator=action.operator, reason=reason, proof=action.proof)
        click.echo(f"{case}: {receipt.result}")
        return 0

    app.run(body)
