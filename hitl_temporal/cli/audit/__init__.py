"""`hitl audit ...`: the hash-chained audit log (gates/audit.py). One module per command."""

from __future__ import annotations

import click

from hitl_temporal.cli.audit.checkpoint import checkpoint
from hitl_temporal.cli.audit.export import export
from hitl_temporal.cli.audit.public_key import public_key
from hitl_temporal.cli.audit.schedule import schedule
from hitl_temporal.cli.audit.verify import verify


@click.group()
def audit() -> None:
    """The audit log: sign its head, verify it, export one case's proof for an auditor."""


for command in (checkpoint, verify, export, public_key, schedule):
    audit.add_command(command)
