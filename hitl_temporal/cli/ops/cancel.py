"""`hitl ops cancel CASE_ID --reason WHY`: end the case with outcome 'cancelled'."""

from __future__ import annotations

import click

from gates.gate import OperatorActionKind
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.ops.options import NOT_CONFIRMED, action_options, checked_action, confirmed


@click.command()
@action_options
@pass_app
def cancel(app: Application, case_id: str, reason: str, operator: str | None, yes: bool) -> None:
    """End CASE_ID with outcome 'cancelled' (interrupting work in progress), recorded in the trace."""
    app.settings  # noqa: B018 -- a configuration error comes first
    action = checked_action(app, OperatorActionKind.CANCEL, operator, reason)
    if not confirmed(f"Cancel {case_id} as {action.operator} (reason: {reason})? It ends with outcome 'cancelled'.", yes):
        app.fail(NOT_CONFIRMED, 1)

    async def body() -> int:
        cases = await app.cases()
        case = await cases.resolve_case_id(case_id)
        outcome = await cases.cancel(case, operator=action.operator, reason=reason, proof=action.proof)
        click.echo(f"{case}: {outcome.result}")
        if outcome.interrupted:
            click.echo(f"{case}: sent Temporal cancellation; the case records who and why as it stops")
        return 0

    app.run(body)
