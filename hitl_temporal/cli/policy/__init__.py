"""`hitl policy ...`: which policy is in force, and is it any good? One module per command.

`show` and `history` read which version of each kind's policy is in force (the activation table);
`agreement` measures how often reviewers agreed with the brief's proposals (gates/agreement.py);
`whatif` re-evaluates a proposed policy file against past traces (gates/whatif.py); `suggest`
writes a proposed policy file from consistent precedent (gates/suggest.py). All of them only read
(`suggest` writes only its output file): a version is put in force by an approved change.
"""

from __future__ import annotations

import click

from hitl_temporal.cli.policy.agreement import agreement
from hitl_temporal.cli.policy.history import history
from hitl_temporal.cli.policy.propose import propose
from hitl_temporal.cli.policy.review import review
from hitl_temporal.cli.policy.show import show
from hitl_temporal.cli.policy.suggest import suggest
from hitl_temporal.cli.policy.whatif import whatif


@click.group()
def policy() -> None:
    """Policies: which version is in force, agreement with proposals, what-if over past cases."""


for command in (show, history, agreement, whatif, suggest, propose, review):
    policy.add_command(command)
