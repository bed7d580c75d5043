"""`hitl audit verify [--case CASE] [--checkpoint FILE] [--public-key FILE] [--bundle FILE]`.

Exit 0 only when everything checked holds; 1 when something does not (the first problem named in
one line); 2 for bad input or a database that cannot be reached. With --bundle, nothing but the
file is read: no database and no Temporal connection is opened.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from activities.audit_keys import AuditKeyError, load_public_key
from activities.store.audit import verify_log
from gates.audit import (
    MAX_BUNDLE_BYTES,
    MAX_CHECKPOINT_BYTES,
    WHOLE_LOG,
    AuditInputError,
    AuditReport,
    AuditScope,
    Checkpoint,
    key_id,
    parse_checkpoint,
    verify_bundle,
)
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.audit.checkpoint import SCHEMA_BEHIND, read_capped, shown, trusted_public_key
from hitl_temporal.cli.case_files import CaseFileError, one_line


def counted(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def print_report(report: AuditReport, *, what: str) -> int:
    """The report: a summary line and the notes on stdout, the first problem on stderr; the exit code."""
    tally = ((report.rows_checked, "row"), (report.cases_checked, "case"), (report.traces_checked, "trace"))
    counts = ", ".join(counted(n, thing) for n, thing in tally) + " checked"
    if report.ok:
        head = f"; head global row {report.head[0]} {report.head[1][:16]}" if report.head else ""
        click.echo(f"{what} holds: {counts}{head}")
    else:
        click.echo(f"{what} does NOT hold: {counts}; {counted(len(report.problems), 'problem')}")
        for problem in report.problems[1:10]:
            click.echo(f"  also: {one_line(problem)}")
    for note in report.notes:
        click.echo(f"  note: {one_line(note)}")
    if not report.ok:
        click.echo(f"hitl: {one_line(report.problems[0])}", err=True)
    return 0 if report.ok else 1


@click.command()
@state_dir_option
@click.option("--case", "case_id", default=None, help="Verify this case's chain only (and its traces).")
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A checkpoint kept outside the database: history up to it must be unchanged and complete.",
)
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ed25519 public key (PEM) you trust to have signed [default: that of the configured or dev key].",
)
@click.option(
    "--bundle",
    "bundle_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Check an exported bundle offline (no database, no Temporal).",
)
@pass_app
def verify(
    app: Application, case_id: str | None, checkpoint_file: Path | None, public_key_file: Path | None, bundle_file: Path | None
) -> None:
    """Recompute the audit log's hash chains and name the first row that does not hold: an edited,
    deleted, inserted or reordered row, a decision trace that no longer matches its recorded digest,
    or, with --checkpoint, history rewritten or cut since the checkpoint was signed. Exit 0 only
    when everything holds."""
    if bundle_file is not None:
        if case_id is not None or checkpoint_file is not None:
            app.fail("--bundle is checked on its own: it carries its case and its checkpoint (drop --case and --checkpoint)")
        app.call(lambda: verify_bundle_file(bundle_file, public_key_file), also=(AuditInputError, AuditKeyError))

    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        checkpoint = None if checkpoint_file is None else read_checkpoint(checkpoint_file)
        public_key = trusted_public_key(app, public_key_file)
    except (AuditInputError, AuditKeyError, CaseFileError) as err:
        app.fail(one_line(str(err)))
    if checkpoint is not None and public_key is None:
        app.fail(f"cannot check the checkpoint's signature (key {checkpoint.key_id}): give --public-key FILE, the key you trust")
    scope = WHOLE_LOG if case_id is None else AuditScope.case(case_id)

    async def body() -> int:
        try:
            report = await verify_log(await app.database(), scope=scope, checkpoint=checkpoint, public_key=public_key)
        except asyncpg.UndefinedTableError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        if case_id is not None and report.rows_checked == 0:
            click.echo(f"hitl: no audit rows for case {one_line(case_id)!r}", err=True)
            return 1
        if checkpoint is None:
            report.notes.append(
                "no --checkpoint: history rewritten and re-chained from some row on would still hold; "
                "verify against a checkpoint kept outside the database"
            )
        return print_report(report, what="the audit log" if case_id is None else f"case {one_line(case_id)}")

    app.run(body)


def read_checkpoint(path: Path) -> Checkpoint:
    return parse_checkpoint(read_capped(path, "checkpoint", MAX_CHECKPOINT_BYTES), what=f"checkpoint {shown(path)}")


def verify_bundle_file(path: Path, public_key_file: Path | None) -> int:
    """Check the bundle at `path` with nothing but the file (and the trusted key, if given)."""
    trusted: Ed25519PublicKey | None = None if public_key_file is None else load_public_key(public_key_file)
    data = read_capped(path, "bundle", MAX_BUNDLE_BYTES)
    report = verify_bundle(data, trusted_public_key=trusted)
    what = f"bundle {shown(path)}"
    if report.ok and trusted is not None:
        what += f" (signed by trusted key {key_id(trusted)})"
    return print_report(report, what=what)
