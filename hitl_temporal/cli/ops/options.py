"""What the operator actions (`hitl ops escalate | reassign | cancel | note | retry`) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gates.gate import OperatorAction, OperatorActionKind, format_validation_error
from hitl_temporal.cli.application import Application, state_dir_option

NOT_CONFIRMED = "not confirmed; nothing was done (pass --yes to skip the question)"


def action_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """CASE_ID, `--reason`, `--as OPERATOR` (default $USER), `--yes`, and the state directory."""
    for option in reversed(
        (
            state_dir_option,
            click.argument("case_id"),
            click.option("--reason", required=True, help="Why (kept in the trace)."),
            click.option(
                "--as", "operator", envvar="USER", required=True, help="Operator id recorded with the action [default: $USER]."
            ),
            click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        )
    ):
        command = option(command)
    return command


def checked_action(
    app: Application, kind: OperatorActionKind, operator: str, reason: str, group: str | None = None
) -> OperatorAction:
    """The action as the case will judge it, checked here first: a malformed one exits 2 before any question."""
    try:
        return OperatorAction(action=kind, operator=operator, reason=reason, group=group)
    except ValidationError as err:
        app.fail(format_validation_error(err).replace("invalid decision", "invalid operator action"))


def confirmed(question: str, yes: bool) -> bool:
    """`--yes`, or the operator's answer on the terminal; no terminal (or no answer) is a no."""
    if yes:
        return True
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # no terminal / end of input: never act without an answer
        click.echo("", err=True)
        return False
