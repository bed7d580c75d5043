"""`hitl request-info CASE [--as REVIEWER] --reason QUESTION [--ask PERSON] [--digest D]`.

The question goes to the person asked (the requester unless `--ask` names someone from the
directory); the case waits for their `hitl answer`, then gathers again and returns to the gate.
"""

from __future__ import annotations

import click
from pydantic import ValidationError

from gates.gate import Decision, DecisionOutcome, format_validation_error
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.decisions import DECISION_TIMEOUT_SECONDS, current_digest, decision_options
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for


@click.command(name="request-info")
@decision_options
@click.option("--ask", "ask", default=None, metavar="PERSON", help="Whom to ask, from the directory [default: the requester].")
@pass_app
def request_info(
    app: Application, case: str, reviewer: str | None, reason: str, digest: str | None, ask: str | None
) -> None:
    """Ask a question about CASE (--reason) instead of deciding: the person asked gets it and answers
    with `hitl answer`; then the case gathers again and returns to the gate."""
    app.settings  # noqa: B018 -- a configuration error comes first
    person = acting_person(app, reviewer)
    if person is None:
        app.fail(f"give --as REVIEWER (your reviewer id){login_hint(app)}")
    try:
        decision = Decision(outcome=DecisionOutcome.REQUEST_INFO, reviewer=person, reason=reason, digest=digest, ask=ask)
    except ValidationError as err:
        app.fail(format_validation_error(err))
    decision = decision.model_copy(update={"proof": proof_for(app, decision.reviewer)})

    async def body() -> int:
        cases = await app.cases()
        case_id = await cases.resolve_case_id(case)
        sent = decision
        if sent.digest is None:
            sent = decision.model_copy(update={"digest": await current_digest(cases, case_id)})
        receipt = await cases.decide(case_id, sent, timeout=DECISION_TIMEOUT_SECONDS)
        click.echo(f"accepted: {receipt.message}")
        if decision.digest is None and sent.digest is not None:
            click.echo(
                f"asked on the case's evidence as it stood just now: digest {sent.digest} "
                "(pass --digest from `hitl show` to ask only about what you read)",
                err=True,
            )
        return 0

    app.run(body)
