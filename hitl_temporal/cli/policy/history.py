"""`hitl policy history KIND`: every activation of a kind's policy, newest (the one in force) first. Reads only."""

from __future__ import annotations

import json
from datetime import UTC

import click

from activities.store.policy_activations import activation_history
from gates.cases import KIND_ALIASES
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.policy.show import activation_document, activation_lines, activation_read


@click.command()
@state_dir_option
@click.argument("kind", type=click.Choice(sorted(KIND_ALIASES)))
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@pass_app
def history(app: Application, kind: str, as_json: bool) -> None:
    """Every version of KIND's policy that was put in force, when, by whose approval and why; newest first."""
    case_kind = KIND_ALIASES[kind]
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        activations = await activation_read(activation_history(await app.database(), case_kind))
        if as_json:
            document = {"kind": case_kind.value, "activations": [activation_document(a) for a in activations]}
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
            return 0
        if not activations:
            click.echo(f"{case_kind.value}: no version activated yet")
            return 0
        lines = []
        for n, activation in enumerate(activations):
            state = "in force" if n == 0 else "superseded"
            lines.append(f"{activation.activated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z  {activation.policy_ref} ({state})")
            lines += activation_lines(activation)
        click.echo("\n".join(lines))
        return 0

    app.run(body)
