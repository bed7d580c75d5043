"""`hitl request-info CASE [--as REVIEWER] --reason QUESTION [--digest D]`."""

from __future__ import annotations

import click

from gates.gate import DecisionOutcome
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.decisions import decision_options, submit_decision


@click.command(name="request-info")
@decision_options
@pass_app
def request_info(app: Application, case: str, reviewer: str | None, reason: str, digest: str | None) -> None:
    """Send CASE back to gathering with a question (--reason)."""
    submit_decision(app, case, DecisionOutcome.REQUEST_INFO, reviewer=reviewer, reason=reason, digest=digest)
