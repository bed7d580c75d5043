"""`hitl ops retry CASE_ID --reason WHY`: reset what is failing now, then note it in the case."""

from __future__ import annotations

import click

from gates.gate import OperatorActionKind
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.ops.options import NOT_CONFIRMED, action_options, checked_action, confirmed
from hitl_temporal.errors import RetryNotNoted


@click.command()
@action_options
@pass_app
def retry(app: Application, case_id: str, reason: str, operator: str | None, yes: bool) -> None:
    """Retry what is failing now: reset failing activities to attempt 1, or reset a failing
    workflow task to the last good one; then note the retry in the case (and its trace)."""
    app.settings  # noqa: B018 -- a configuration error comes first
    action = checked_action(app, OperatorActionKind.RETRY, operator, reason)

    async def body() -> int:
        cases = await app.cases()
        case = await cases.resolve_case_id(case_id)
        plan = await cases.plan_retry(case)
        if not confirmed(f"{plan.describe()}\nGo ahead as {action.operator}?", yes):
            app.fail(NOT_CONFIRMED, 1)
        try:
            receipt = await cases.retry(plan, operator=action.operator, reason=reason, proof=action.proof)
        except RetryNotNoted as err:
            click.echo(f"{case}: {err.done}")
            app.fail(f"{err.done}, but the retry note was not recorded: {err}", 1)
        click.echo(f"{case}: {receipt.done}")
        click.echo(f"{case}: {receipt.note.result}")
        return 0

    app.run(body)
