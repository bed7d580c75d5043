"""`hitl ops ...`: operating cases. One module per command; the library behind them is `hitl_temporal.ops`."""

from __future__ import annotations

import click

from hitl_temporal.cli.ops.cancel import cancel
from hitl_temporal.cli.ops.escalate import escalate
from hitl_temporal.cli.ops.export import export
from hitl_temporal.cli.ops.note import note
from hitl_temporal.cli.ops.reassign import reassign
from hitl_temporal.cli.ops.replay import replay
from hitl_temporal.cli.ops.retry import retry
from hitl_temporal.cli.ops.stuck import stuck


@click.group()
def ops() -> None:
    """Operate cases: find stuck ones, replay histories, retry, escalate, reassign, cancel."""


for command in (stuck, replay, export, retry, escalate, reassign, cancel, note):
    ops.add_command(command)
