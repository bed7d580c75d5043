"""`hitl ops export CASE_ID`: write a case's history as JSON."""

from __future__ import annotations

from pathlib import Path

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.ops import export_file_name, fetch_case_history


@click.command()
@state_dir_option
@click.argument("case_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write ('-' for stdout) [default: named after the case].",
)
@pass_app
def export(app: Application, case_id: str, output: Path | None) -> None:
    """Write CASE_ID's history as JSON, for `hitl ops replay --file` and tests/histories/."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        cases = await app.cases()
        resolved = await cases.resolve_case_id(case_id)
        history = await fetch_case_history(cases.client, resolved)
        if output is not None and str(output) == "-":
            click.echo(history.to_json())
            return 0
        path = output or Path(export_file_name(resolved))
        path.write_text(history.to_json() + "\n")
        click.echo(f"wrote {path}: {len(history.events)} events of {resolved} (run {history.run_id})")
        return 0

    app.run(body)
