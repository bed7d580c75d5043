"""What the operator actions (`hitl ops escalate | reassign | cancel | note | retry`) share.

Who acts is `--as`, else the person of your `hitl login` (with an OIDC issuer), else $USER; the
action carries a proof of that person (hitl_temporal.cli.proofs), and in verified mode the case
accepts it only from someone with the directory's operator role for its gate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gates.gate import OperatorAction, OperatorActionKind, format_validation_error
from hitl_temporal.cli.application import Application, state_dir_option
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for

NOT_CONFIRMED = "not confirmed; nothing was done (pass --yes to skip the question)"


def action_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """CASE_ID, `--reason`, `--as OPERATOR` (default: your login's person, else $USER), `--yes`, and the state directory."""
    for option in reversed(
        (
            state_dir_option,
            click.argument("case_id"),
            click.option("--reason", required=True, help="Why (kept in the trace)."),
            click.option(
                "--as",
                "operator",
                default=None,
                help="Operator id recorded with the action [default: the person of your `hitl login`, else $USER].",
            ),
            click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation."),
        )
    ):
        command = option(command)
    return command


def checked_action(
    app: Application, kind: OperatorActionKind, operator: str | None, reason: str, group: str | None = None
) -> OperatorAction:
    """The action as the case will judge it, with its proof, checked here first: a malformed one, or
    one without a proof to be had, exits 2 before any question."""
    person = acting_person(app, operator) or os.environ.get("USER") or None
    if person is None:
        app.fail(f"give --as OPERATOR (your operator id){login_hint(app)}")
    try:
        action = OperatorAction(action=kind, operator=person, reason=reason, group=group)
    except ValidationError as err:
        app.fail(format_validation_error(err).replace("invalid decision", "invalid operator action"))
    return action.model_copy(update={"proof": proof_for(app, action.operator)})


def confirmed(question: str, yes: bool) -> bool:
    """`--yes`, or the operator's answer on the terminal; no terminal (or no answer) is a no."""
    if yes:
        return True
    try:
        return click.confirm(question, default=False, err=True)
    except click.Abort:  # no terminal / end of input: never act without an answer
        click.echo("", err=True)
        return False
