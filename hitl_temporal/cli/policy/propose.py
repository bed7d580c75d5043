"""`hitl policy propose FILE --reason R [--as PERSON]`: start the PolicyChange case for a policy file.

The file is validated here first, with the worker's loader (a customer_commitment rule at `auto` is
refused with its ID), before anything starts; the workflow checks it again. The change ID is the
version's (`policy_change:<ref>`): proposing the same version again finds the change already made,
unless that one was refused (then it starts again).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from pydantic import ValidationError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.policy_files import load_policy_file
from gates.gate import validation_problems
from gates.policy import MAX_POLICY_FILE_BYTES, PolicyError
from gates.policy_change import WORKFLOW_TYPE, PolicyChangeRequest, change_details, change_id_for, change_summary
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import one_line
from hitl_temporal.cli.policy.changes import prepared_state, render_change
from hitl_temporal.cli.proofs import acting_person, login_hint, proof_for


@click.command()
@state_dir_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", required=True, help="Why this change (required): the owners read it as your words.")
@click.option("--as", "proposer", default=None, help="Your person id (required unless `hitl login` says who you are).")
@click.option("--json", "as_json", is_flag=True, help="Print the change's state as JSON.")
@pass_app
def propose(app: Application, file: Path, reason: str, proposer: str | None, as_json: bool) -> None:
    """Propose the policy in FILE: its owners approve or reject it, and only then is it activated."""
    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        policy = load_policy_file(file)  # as strict as the worker's loader: a bad file is one line
        data = file.read_bytes()[: MAX_POLICY_FILE_BYTES + 1]
    except (PolicyError, OSError) as err:
        app.fail(one_line(str(err)), 2)
    person = acting_person(app, proposer)
    if person is None:
        app.fail(f"give --as PERSON (your person id){login_hint(app)}")
    try:
        request = PolicyChangeRequest(file_name=file.name, policy_text=data.decode("utf-8"), proposer=person, reason=reason)
    except ValidationError as err:
        app.fail(f"invalid proposal: {validation_problems(err)}")
    except UnicodeDecodeError:
        app.fail(f"{one_line(str(file))}: a policy file is UTF-8 text")
    request = request.model_copy(update={"proof": proof_for(app, request.proposer)})
    change_id = change_id_for(policy.ref)

    async def body() -> int:
        client = await app.temporal()
        created = True
        try:
            await client.start_workflow(
                WORKFLOW_TYPE,
                request,
                id=change_id,
                task_queue=app.settings.task_queue,
                # a refused (failed) start may be proposed again; an approved, rejected or waiting change is the change
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                static_summary=change_summary(request),
                static_details=change_details(request),
            )
        except WorkflowAlreadyStartedError:
            created = False
        view = await prepared_state(client, change_id)
        if as_json:
            click.echo(json.dumps({"change_id": change_id, "created": created, "state": view.model_dump(mode="json")}))
        else:
            click.echo(change_id if created else f"{change_id} (already proposed)")
            click.echo(render_change(view))
        return 0

    app.run(body)
