"""`hitl directory ...`: the reviewer directory file (who may decide). One module per command."""

from __future__ import annotations

import click

from hitl_temporal.cli.directory.load import load
from hitl_temporal.cli.directory.show import show


@click.group()
def directory() -> None:
    """The reviewer directory: load a version of its file, show the one in force."""


for command in (load, show):
    directory.add_command(command)
