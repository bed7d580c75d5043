"""What `hitl approve`, `hitl reject` and `hitl request-info` share: their options and the submission.

A decision carries a proof of who decides (hitl_temporal.cli.proofs) and the evidence digest it was
made on. `--digest` (what `hitl show` printed) binds it to the evidence the reviewer read, so a case
whose evidence changed since refuses it as stale; without it the command reads the case's current
digest first and says on stderr which one it decided on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from pydantic import ValidationError

from gates.gate import Decision, DecisionOutcome, format_validation_error
from gates.trace import CaseState
from hitl_temporal.cli.application import Application, state_dir_option
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for
from hitl_temporal.client import CaseClient
from hitl_temporal.errors import CaseError, NoWorker

# How long a decision command waits for a worker to take the decision.
DECISION_TIMEOUT_SECONDS = 30.0


def decision_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """CASE, `--as REVIEWER`, `--reason`, `--digest`, and the state directory."""
    for option in reversed(
        (
            state_dir_option,
            click.argument("case"),
            click.option(
                "--as", "reviewer", default=None, help="Your reviewer id (required unless `hitl login` says who you are)."
            ),
            click.option("--reason", required=True, help="Why (required)."),
            click.option(
                "--digest",
                default=None,
                metavar="sha256:HEX",
                help="The evidence digest `hitl show` printed: refused if the evidence changed since [default: the case's now].",
            ),
        )
    ):
        command = option(command)
    return command


def submit_decision(
    app: Application,
    case: str,
    outcome: DecisionOutcome,
    *,
    reviewer: str | None,
    reason: str,
    digest: str | None = None,
    ask: str | None = None,
) -> None:
    """Validate the decision here (exit 2 when it is malformed), attach its proof, then send it to the
    case CASE names, on `digest` or the case's current one. `ask`: with request_info, whom to ask."""
    app.settings  # noqa: B018 -- a configuration error comes first
    person = acting_person(app, reviewer)
    if person is None:
        app.fail(f"give --as REVIEWER (your reviewer id){login_hint(app)}")
    try:
        decision = Decision(outcome=outcome, reviewer=person, reason=reason, digest=digest, ask=ask)
    except ValidationError as err:
        app.fail(format_validation_error(err))
    decision = decision.model_copy(update={"proof": proof_for(app, decision.reviewer)})

    async def body() -> int:
        cases = await app.cases()
        # CASE may be quoted in an error as typed: escape sequences are shown, not sent to the terminal (app.run)
        case_id = await cases.resolve_case_id(case)
        sent = decision
        if sent.digest is None:
            sent = decision.model_copy(update={"digest": await current_digest(cases, case_id)})
        receipt = await cases.decide(case_id, sent, timeout=DECISION_TIMEOUT_SECONDS)
        click.echo(f"accepted: {receipt.message}")
        if decision.digest is None and sent.digest is not None:
            did, do = ("asked", "ask") if outcome == DecisionOutcome.REQUEST_INFO else ("decided", "decide")
            click.echo(
                f"{did} on the case's evidence as it stood just now: digest {sent.digest} "
                f"(pass --digest from `hitl show` to {do} only on what you read)",
                err=True,
            )
        return 0

    app.run(body)


async def current_digest(cases: CaseClient, case_id: str) -> str | None:
    """The digest of the evidence the case waits on now; None when it does not wait or cannot say
    (the decision is then sent without one, and the case answers why it takes none)."""
    try:
        view = await cases.get_case(case_id)
    except NoWorker:
        raise  # nobody would take the decision either
    except CaseError:
        return None  # ended, starting: the case's own refusal of the decision says it better
    if view.state != CaseState.WAITING or view.gate is None:
        return None
    return view.gate.digest
