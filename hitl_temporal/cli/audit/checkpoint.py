"""`hitl audit checkpoint [--key FILE] [-o FILE]`: sign the global chain's head, to keep outside the database.

Also what the other `hitl audit` commands share: which key signs (--key, else HITL_AUDIT_KEY_FILE,
else the state directory's dev key) and which public key a check trusts, files read with a cap,
and output written whole or not at all.
"""

from __future__ import annotations

import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from activities.audit_keys import AuditKeyError, dev_checkpoint_key, dev_key_path, load_checkpoint_key, load_public_key
from activities.bounded_read import FileUnreadable, read_file_at_most, shown_path
from activities.store.audit import verify_log
from gates.audit import key_id, sign_checkpoint
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.case_files import CaseFileError, one_line

SCHEMA_BEHIND = "the database has no audit_events table: run `hitl migrate` first"
KEY_HELP = "Ed25519 private key (PEM) that signs [default: HITL_AUDIT_KEY_FILE, else the dev key in the state directory]."


def configured_key_file(app: Application) -> Path | None:
    """HITL_AUDIT_KEY_FILE, if set."""
    return app.settings.audit_key_file


def signing_key(app: Application, key_file: Path | None) -> tuple[Ed25519PrivateKey, str]:
    """The key that signs, and how to name it in what the command prints; AuditKeyError when unusable."""
    path = key_file or configured_key_file(app)
    if path is not None:
        key = load_checkpoint_key(path)
        return key, f"key {key_id(key.public_key())} from {shown(path)}"
    key = dev_checkpoint_key(app.settings.state_dir)
    return key, f"dev key {key_id(key.public_key())} from {shown(dev_key_path(app.settings.state_dir))}"


def trusted_public_key(app: Application, public_key_file: Path | None) -> Ed25519PublicKey | None:
    """The key a checkpoint is checked with: --public-key, else the public half of the configured or
    dev signing key when it exists (never created by a check), else None."""
    if public_key_file is not None:
        return load_public_key(public_key_file)
    configured = configured_key_file(app)
    if configured is not None:
        return load_checkpoint_key(configured).public_key()
    dev = dev_key_path(app.settings.state_dir)
    return load_checkpoint_key(dev).public_key() if dev.exists() else None


def shown(path: Path) -> str:
    return shown_path(path)


def read_capped(path: Path, what: str, limit: int) -> bytes:
    """The file's bytes, reading at most one more than `limit` (a wrong path such as /dev/zero fails at once)."""
    try:
        return read_file_at_most(path, limit, what=what)
    except FileUnreadable as err:
        raise CaseFileError(str(err)) from None


def write_output(output: Path | None, data: bytes) -> None:
    """`data` to stdout (no FILE, or '-'), or to FILE whole: written aside, then renamed into place."""
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    temporary = output.with_name(f".{output.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, output)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise CaseFileError(f"cannot write {shown(output)}: {err.strerror or type(err).__name__}") from None


@click.command()
@state_dir_option
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help=KEY_HELP)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write [default: stdout]."
)
@pass_app
def checkpoint(app: Application, key_file: Path | None, output: Path | None) -> None:
    """Sign the head of the audit log's global chain and write the checkpoint (JSON). Keep it where
    the database's administrators cannot change it: `hitl audit verify --checkpoint FILE` then shows
    whether history up to it was rewritten or cut. The whole log is verified first; a log that does
    not hold is not signed (exit 1)."""
    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        key, key_name = signing_key(app, key_file)
    except AuditKeyError as err:
        app.fail(one_line(str(err)))

    async def body() -> int:
        try:
            report = await verify_log(await app.database())
        except asyncpg.UndefinedTableError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        if not report.ok:
            click.echo(f"hitl: not signed: the audit log does not hold: {one_line(report.problems[0])}", err=True)
            return 1
        if report.head is None:
            click.echo("hitl: the audit log is empty: there is no head to sign yet", err=True)
            return 1
        signed = sign_checkpoint(key, report.head, datetime.now(UTC))
        write_output(output, signed.to_json_bytes())
        click.echo(f"signed global row {signed.global_seq} ({report.rows_checked} rows verified) with {key_name}", err=True)
        return 0

    app.run(body)
