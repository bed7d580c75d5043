"""`hitl ops escalate CASE_ID --reason WHY`: move the gate to its next level now."""

from __future__ import annotations

import click

from gates.gate import OperatorActionKind
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.ops.options import NOT_CONFIRMED, action_options, checked_action, confirmed


@click.command()
@action_options
@pass_app
def escalate(app: Application, case_id: str, reason: str, operator: str | None, yes: bool) -> None:
    """Move CASE_ID's gate to the next level now (reminders and deadlines restart there)."""
    app.settings  # noqa: B018 -- a configuration error comes first
    action = checked_action(app, OperatorActionKind.ESCALATE, operator, reason)
    if not confirmed(f"Escalate {case_id} to the next level now, as {action.operator} (reason: {reason})?", yes):
        app.fail(NOT_CONFIRMED, 1)

    async def body() -> int:
        cases = await app.cases()
        case = await cases.resolve_case_id(case_id)
        click.echo(f"{case}: {(await cases.escalate(case, operator=action.operator, reason=reason, proof=action.proof)).result}")
        return 0

    app.run(body)
