"""`hitl precedent ...`: the past decisions new cases cite (activities/store/precedents.py). One module per command."""

from __future__ import annotations

import click

from hitl_temporal.cli.precedent.retract import retract
from hitl_temporal.cli.precedent.show import show


@click.group()
def precedent() -> None:
    """Precedents: show the one a decision trace became, retract it so no new case cites it."""


for command in (show, retract):
    precedent.add_command(command)
