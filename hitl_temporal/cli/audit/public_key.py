"""`hitl audit public-key [--key FILE] [-o FILE]`: the public half of the checkpoint signing key.

What an auditor is given, apart from any bundle, to check checkpoints and bundles against
(`hitl audit verify --bundle FILE --public-key FILE`): a bundle carries its own key, which proves
nothing on its own.
"""

from __future__ import annotations

from pathlib import Path

import click

from activities.audit_keys import AuditKeyError
from gates.audit import key_id, public_key_pem
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.audit.checkpoint import KEY_HELP, signing_key, write_output
from hitl_temporal.cli.case_files import CaseFileError, one_line


@click.command(name="public-key")
@state_dir_option
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help=KEY_HELP)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="File to write [default: stdout]."
)
@pass_app
def public_key(app: Application, key_file: Path | None, output: Path | None) -> None:
    """Print the signing key's public half (PEM), for auditors to check checkpoints and bundles with."""
    try:
        key, key_name = signing_key(app, key_file)
        write_output(output, public_key_pem(key.public_key()).encode())
    except (AuditKeyError, CaseFileError) as err:
        app.fail(one_line(str(err)))
    click.echo(f"public half of {key_name} (key id {key_id(key.public_key())})", err=True)
