"""`hitl delegate CASE --to PERSON [--for PERSON] --reason TEXT`: a one-off delegation for one case.

The delegate decides in the delegator's seat, for this case only, and the trace names both. Sent by
the delegator themselves, or by an operator for them (`--for`); either way with a proof of the sender.
"""

from __future__ import annotations

import click
from pydantic import ValidationError

from gates.gate import OperatorAction, OperatorActionKind, format_validation_error
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for


@click.command()
@state_dir_option
@click.argument("case")
@click.option("--to", "delegate", required=True, help="Who decides instead (a person id).")
@click.option("--for", "delegator", default=None, help="For whom [default: you]; an operator may delegate for a reviewer.")
@click.option("--reason", required=True, help="Why (kept in the trace), e.g. out of office until Monday.")
@click.option("--as", "sender", default=None, help="Your id [default: the person of your `hitl login`].")
@pass_app
def delegate(app: Application, case: str, delegate: str, delegator: str | None, reason: str, sender: str | None) -> None:
    """Let --to decide CASE for you (or, as an operator, for --for), in this case only."""
    app.settings  # noqa: B018 -- a configuration error comes first
    person = acting_person(app, sender)
    if person is None:
        app.fail(f"give --as PERSON (your id){login_hint(app)}")
    try:
        action = OperatorAction(
            action=OperatorActionKind.DELEGATE, operator=person, reason=reason, delegate=delegate, delegator=delegator
        )
    except ValidationError as err:
        app.fail(format_validation_error(err).replace("invalid decision", "invalid delegation"))
    proof = proof_for(app, action.operator)

    async def body() -> int:
        cases = await app.cases()
        case_id = await cases.resolve_case_id(case)
        receipt = await cases.delegate(
            case_id, delegate=delegate, delegator=delegator, operator=action.operator, reason=reason, proof=proof
        )
        click.echo(f"{case_id}: {receipt.result}")
        return 0

    app.run(body)
