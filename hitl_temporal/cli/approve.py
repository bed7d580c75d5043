"""`hitl approve CASE [--as REVIEWER] --reason WHY [--digest D]`."""

from __future__ import annotations

import click

from gates.gate import DecisionOutcome
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.decisions import decision_options, submit_decision


@click.command()
@decision_options
@pass_app
def approve(app: Application, case: str, reviewer: str | None, reason: str, digest: str | None) -> None:
    """Approve CASE (case ID, unique prefix or business key)."""
    submit_decision(app, case, DecisionOutcome.APPROVE, reviewer=reviewer, reason=reason, digest=digest)
