"""`hitl policy ...`: is the policy any good? One module per command.

`agreement` measures how often reviewers agreed with the brief's proposals (gates/agreement.py);
`whatif` re-evaluates a proposed policy file against past traces (gates/whatif.py). Both only read.
"""

from __future__ import annotations

import click

from hitl_temporal.cli.policy.agreement import agreement
from hitl_temporal.cli.policy.whatif import whatif


@click.group()
def policy() -> None:
    """Policies measured against the record: agreement with proposals, what-if over past cases."""


for command in (agreement, whatif):
    policy.add_command(command)
