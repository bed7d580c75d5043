"""`hitl schema NAME` and `hitl schema --all DIR`: the JSON Schemas of what a service sends (gates/schemas.py)."""

from __future__ import annotations

from pathlib import Path

import click

from gates.cases import KIND_ALIASES, CaseKind
from gates.schemas import PAYLOADS, documents, rendered, schema_document
from hitl_temporal.cli.application import Application, pass_app
from hitl_temporal.cli.case_files import one_line

# What NAME may be: the kind names `hitl start` takes, and every other payload's name with hyphens.
NAMES: dict[str, str] = {
    **{alias: kind.value for alias, kind in KIND_ALIASES.items()},
    **{name.replace("_", "-"): name for name in PAYLOADS if name not in {kind.value for kind in CaseKind}},
}
CHOICES = ", ".join(sorted(NAMES))


def payload_name(typed: str) -> str | None:
    """The payload NAME means (`operator_action` for operator-action or operator_action), or None."""
    typed = typed.strip().lower()
    return NAMES.get(typed) or NAMES.get(typed.replace("_", "-"))


@click.command()
@click.argument("name", required=False, metavar="[NAME]")
# a plain path: errors about it are one line (click's own checks print a four-line usage error)
@click.option(
    "--all", "directory", type=click.Path(path_type=Path), metavar="DIR", help="Write every schema into DIR (created if missing)."
)
@pass_app
def schema(app: Application, name: str | None, directory: Path | None) -> None:
    """The JSON Schema of a payload: a case kind (renewal, procurement, access), decision, operator-action or answer.

    With --all DIR, one file per payload (NAME.schema.json), as `schemas/` in the repository holds them."""
    if directory is not None:
        if name is not None:
            app.fail("give a NAME or --all DIR, not both")
        _write_all(app, directory)
        app.finish(0)
    if name is None:
        app.fail(f"name a payload ({CHOICES}), or write them all with --all DIR")
    payload = payload_name(name)
    if payload is None:
        app.fail(one_line(f"unknown schema {name!r}; one of {CHOICES}"))
    click.echo(rendered(schema_document(payload)), nl=False)


def _write_all(app: Application, directory: Path) -> None:
    """Write every schema into `directory`, printing each file's path; a one-line error if it cannot."""
    if directory.exists() and not directory.is_dir():
        app.fail(one_line(f"cannot write the schemas into {directory}: it is not a directory"))
    path = directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, document in documents().items():
            path = directory / name
            path.write_text(rendered(document), encoding="utf-8")
            click.echo(path)
    except OSError as err:
        app.fail(one_line(f"cannot write {path}: {err.strerror or err}"))
