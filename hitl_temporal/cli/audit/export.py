"""`hitl audit export CASE -o FILE [--checkpoint FILE] [--key FILE]`: a case's proof for an auditor.

The bundle (gates/audit.py's format) holds the case's traces and audit rows, the global chain's
links from its first row up to a signed checkpoint, the checkpoint and the public key;
`hitl audit verify --bundle FILE` checks it with nothing else (docs/audit-verification.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import click

from activities.audit_keys import AuditKeyError
from activities.store.audit import case_rows, links, recorded_traces, row_at, verify_log
from gates.audit import (
    AuditInputError,
    CheckpointInvalid,
    bundle_bytes,
    bundle_document,
    sign_checkpoint,
    verify_bundle,
    verify_checkpoint,
)
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.audit.checkpoint import KEY_HELP, SCHEMA_BEHIND, shown, signing_key, write_output
from hitl_temporal.cli.audit.verify import counted, read_checkpoint
from hitl_temporal.cli.case_files import CaseFileError, one_line


@click.command()
@state_dir_option
@click.argument("case_id")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Bundle file to write ('-': stdout)."
)
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A checkpoint at or after the case's last row, signed by the key [default: sign one now on the head].",
)
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help=KEY_HELP)
@pass_app
def export(app: Application, case_id: str, output: Path, checkpoint_file: Path | None, key_file: Path | None) -> None:
    """Write CASE_ID's audit bundle: its decision traces and audit rows, the chain proof up to a
    signed checkpoint and the public key, for `hitl audit verify --bundle FILE` on any machine.
    Without --checkpoint the whole log is verified, then its head signed with the key (as
    `hitl audit checkpoint` does); a log that does not hold is not exported (exit 1)."""
    app.settings  # noqa: B018 -- a configuration error comes first
    try:
        key, key_name = signing_key(app, key_file)
        given = None if checkpoint_file is None else read_checkpoint(checkpoint_file)
        if given is not None:
            verify_checkpoint(given, key.public_key())
    except (AuditKeyError, AuditInputError, CaseFileError, CheckpointInvalid) as err:
        app.fail(one_line(str(err)))

    async def body() -> int:
        conn = await app.database()
        try:
            verified = None if given is not None else await verify_log(conn)
            if verified is not None and not verified.ok:
                click.echo(f"hitl: not exported: the audit log does not hold: {one_line(verified.problems[0])}", err=True)
                return 1
            # one snapshot: the case's rows, the head and the links agree even while cases go on appending
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                rows = await case_rows(conn, case_id)
                if verified is not None and verified.head is not None:
                    rows = [row for row in rows if row.global_seq <= verified.head[0]]  # appended since: not signed
                if not rows:
                    click.echo(f"hitl: no audit rows for case {one_line(case_id)!r}", err=True)
                    return 1
                if given is None:
                    assert verified is not None and verified.head is not None  # the case's rows are in the log
                    checkpoint = sign_checkpoint(key, verified.head, datetime.now(UTC))
                    how = f"signed a new checkpoint with {key_name} after verifying the whole log"
                else:
                    stored = await row_at(conn, given.global_seq)
                    if stored is None or stored.row_hash != given.row_hash:
                        click.echo(
                            f"hitl: the log's global row {given.global_seq} is not the one the checkpoint signed: "
                            "history was rewritten or cut; run `hitl audit verify --checkpoint`",
                            err=True,
                        )
                        return 1
                    checkpoint, how = given, f"checkpoint {shown(checkpoint_file or Path())}"
                if checkpoint.global_seq < rows[-1].global_seq:
                    click.echo(
                        f"hitl: the checkpoint covers global row {checkpoint.global_seq}, before the case's last row "
                        f"{rows[-1].global_seq}: sign a newer one (`hitl audit checkpoint`) or leave out --checkpoint",
                        err=True,
                    )
                    return 2
                proof = await links(conn, rows[0].global_seq, checkpoint.global_seq)
                traces = await recorded_traces(conn, case_id)
        except asyncpg.UndefinedTableError:
            click.echo(f"hitl: {SCHEMA_BEHIND}", err=True)
            return 2
        except AuditInputError as err:
            click.echo(f"hitl: the stored log is not readable as audit rows: {one_line(str(err))}", err=True)
            return 1
        try:
            document = bundle_document(
                case_id=case_id, traces=traces, case_rows=rows, links=proof, checkpoint=checkpoint, public_key=key.public_key()
            )
        except ValueError as err:  # links with gaps: rows deleted from the global chain
            click.echo(f"hitl: the stored log does not make a bundle: {one_line(str(err))}", err=True)
            return 1
        data = bundle_bytes(document)
        report = verify_bundle(data)
        if not report.ok:
            click.echo(f"hitl: not exported: case {one_line(case_id)} does not verify: {one_line(report.problems[0])}", err=True)
            return 1
        write_output(output, data)
        click.echo(
            f"wrote {shown(output)}: case {one_line(case_id)}, {counted(len(rows), 'row')}, {counted(len(traces), 'trace')}, "
            f"chain proof of {len(proof)} rows up to global row {checkpoint.global_seq} ({how})",
            err=str(output) == "-",
        )
        return 0

    app.run(body)
