"""What `hitl approve`, `hitl reject` and `hitl request-info` share: their options and the submission."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gates.gate import Decision, DecisionOutcome, format_validation_error
from hitl_temporal.cli.application import Application, state_dir_option

# How long a decision command waits for a worker to take the decision.
DECISION_TIMEOUT_SECONDS = 30.0


def decision_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """CASE, `--as REVIEWER` and `--reason`, and the state directory."""
    for option in reversed(
        (
            state_dir_option,
            click.argument("case"),
            click.option("--as", "reviewer", required=True, help="Your reviewer id."),
            click.option("--reason", required=True, help="Why (required)."),
        )
    ):
        command = option(command)
    return command


def submit_decision(app: Application, case: str, outcome: DecisionOutcome, *, reviewer: str, reason: str) -> None:
    """Validate the decision here (exit 2 when it is malformed), then send it to the case CASE names."""
    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        decision = Decision(outcome=outcome, reviewer=reviewer, reason=reason)
    except ValidationError as err:
        app.fail(format_validation_error(err))

    async def body() -> int:
        cases = await app.cases()
        # CASE may be quoted in an error as typed: escape sequences are shown, not sent to the terminal (app.run)
        receipt = await cases.decide(await cases.resolve_case_id(case), decision, timeout=DECISION_TIMEOUT_SECONDS)
        click.echo(f"accepted: {receipt.message}")
        return 0

    app.run(body)
