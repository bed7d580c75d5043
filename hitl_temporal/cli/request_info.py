"""`hitl request-info CASE [--as REVIEWER] --reason QUESTION [--ask PERSON] [--digest D]`.

The question goes to the person asked (the requester unless `--ask` names someone from the
directory); the case waits for their `hitl answer`, then gathers again and returns to the gate.
"""

from __future__ import annotations

import click

from gates.gate import DecisionOutcome
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.decisions import decision_options, submit_decision


@click.command(name="request-info")
@decision_options
@click.option("--ask", "ask", default=None, metavar="PERSON", help="Whom to ask, from the directory [default: the requester].")
@pass_app
def request_info(
    app: Application, case: str, reviewer: str | None, reason: str, digest: str | None, ask: str | None
) -> None:
    """Ask a question about CASE (--reason) instead of deciding: the person asked gets it and answers
    with `hitl answer`; then the case gathers again and returns to the gate."""
    submit_decision(app, case, DecisionOutcome.REQUEST_INFO, reviewer=reviewer, reason=reason, digest=digest, ask=ask)
