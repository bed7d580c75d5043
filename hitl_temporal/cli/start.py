"""`hitl start KIND --file F`: start a case from a JSON payload, or find the running one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gates.cases import KIND_ALIASES, REQUEST_MODELS
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import load_case_file


@click.command()
@state_dir_option
@click.argument("kind", type=click.Choice(sorted(KIND_ALIASES), case_sensitive=False), metavar="KIND")
# a plain path: case_files.py says what is wrong with it in one line (click's own checks print a four-line usage error)
@click.option("--file", "file_", type=click.Path(path_type=Path), required=True, help="The case payload, a JSON object.")
@click.option("--json", "as_json", is_flag=True, help='Print {"case_id": ...}.')
@pass_app
def start(app: Application, kind: str, file_: Path, as_json: bool) -> None:
    """Start a case of KIND (renewal, procurement, access) from a JSON file, or find the running one."""
    app.settings  # noqa: B018 -- a configuration error comes first
    model = REQUEST_MODELS[KIND_ALIASES[kind.lower()]]

    async def body() -> int:
        request = load_case_file(file_, model)  # before connecting: a bad file is refused with Temporal down too
        started = await (await app.cases()).start_case(request)
        if as_json:
            click.echo(json.dumps({"case_id": started.case_id, "created": started.created}))
        else:
            click.echo(started.case_id if started.created else f"{started.case_id} (already exists)")
        return 0

    app.run(body)
