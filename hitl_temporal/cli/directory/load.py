"""`hitl directory load FILE`: validate a directory file and make it the version in force."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

import asyncpg
import click

from activities.store.directory import DirectoryConflict, load_directory
from gates.directory import MAX_DIRECTORY_FILE_BYTES, DirectoryError, parse_directory_file
from gates.text import neutralize, one_visible_line_problem
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import CaseFileError, one_line

SCHEMA_BEHIND = "the database has no directory_versions table: run `hitl migrate` first"


def read_directory_bytes(path: Path) -> bytes:
    """The file's bytes, at most one more than a directory file may have (the parser refuses those)."""
    shown = neutralize(str(path), keep_newlines=False)
    if path.is_dir():
        raise CaseFileError(f"{shown} is a directory, not a directory file")
    try:
        with path.open("rb") as file:
            return file.read(MAX_DIRECTORY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise CaseFileError(f"{shown}: no such file") from None
    except OSError as err:
        raise CaseFileError(f"{shown}: cannot read: {err.strerror or type(err).__name__}") from None


def default_loader() -> str:
    """`user@host`: who loaded a version, when --as does not say."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@click.command()
@state_dir_option
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--as", "loaded_by", default=None, help="Who loads it, recorded with the version [default: user@host].")
@pass_app
def load(app: Application, file: Path, loaded_by: str | None) -> None:
    """Validate FILE and load it as the directory in force (its people and groups replace the
    reviewer tables). The same version again is a no-op; the same version with other content is
    refused: give a changed file a new `version`. Every problem is one line naming its line; exit 2."""
    app.settings  # noqa: B018 -- a configuration error comes first

    if loaded_by is not None and (problem := one_visible_line_problem(loaded_by)):
        app.fail(f"--as {problem}")
    try:
        parsed = parse_directory_file(read_directory_bytes(file), file)
    except CaseFileError as err:
        app.fail(one_line(str(err)))
    except DirectoryError as err:
        for problem in err.problems:
            click.echo(f"hitl: {one_line(problem)}", err=True)
        app.finish(2)

    async def body() -> int:
        try:
            result = await load_directory(await app.database(), parsed, loaded_by or default_loader())
        except DirectoryConflict as err:
            click.echo(f"hitl: {one_line(str(err))}", err=True)
            return 2
        except asyncpg.UndefinedTableError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        if result.changed:
            click.echo(f"directory {parsed.version} loaded ({parsed.counts()})")
        elif result.in_force == parsed.version:
            click.echo(f"directory {parsed.version} already loaded; nothing changed")
        else:
            click.echo(
                f"directory {parsed.version} already loaded; nothing changed (the version in force is {result.in_force}: "
                "give this file a new version to put it back in force)"
            )
        return 0

    app.run(body)
