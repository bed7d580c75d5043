"""The `hitl` command line: one module per command, named for it, and a package per group (`ops/`).

Each module defines its command function by the command's name (`hitl approve` is `approve` in
`approve.py`); what they share is in `application.py` (settings, connections, exit codes, kept in
`ctx.obj`), `decisions.py`, `render.py` and `case_files.py`. The CLI is its own process, so it may
use the worker's modules (PostgreSQL, the dev stack, replay); services import `hitl_temporal`.
"""

from __future__ import annotations

import importlib.util

# A core install (what a service needs) has no CLI libraries: say what to install in one line
# instead of a traceback from the first import below.
if any(importlib.util.find_spec(name) is None for name in ("click", "rich")):
    raise SystemExit("hitl needs the CLI's libraries: pip install 'hitl-temporal[cli]'")

import click

from hitl_temporal.cli.answer import answer
from hitl_temporal.cli.application import Application
from hitl_temporal.cli.approve import approve
from hitl_temporal.cli.audit import audit
from hitl_temporal.cli.check import check
from hitl_temporal.cli.codec_server import codec_server
from hitl_temporal.cli.delegate import delegate
from hitl_temporal.cli.dev import dev
from hitl_temporal.cli.directory import directory
from hitl_temporal.cli.inbox import inbox
from hitl_temporal.cli.login import login
from hitl_temporal.cli.logout import logout
from hitl_temporal.cli.migrate import migrate
from hitl_temporal.cli.ops import ops
from hitl_temporal.cli.policy import policy
from hitl_temporal.cli.precedent import precedent
from hitl_temporal.cli.reject import reject
from hitl_temporal.cli.report import report
from hitl_temporal.cli.request_info import request_info
from hitl_temporal.cli.schema import schema
from hitl_temporal.cli.seed import seed
from hitl_temporal.cli.show import show
from hitl_temporal.cli.start import start
from hitl_temporal.cli.token import token
from hitl_temporal.cli.trace import trace
from hitl_temporal.cli.whoami import whoami
from hitl_temporal.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def hitl(ctx: click.Context) -> None:
    """Human-in-the-loop decisions on Temporal."""
    ctx.ensure_object(Application)


for command in (
    dev, worker, migrate, check, start, inbox, approve, reject, request_info, answer, show, trace, schema, seed, ops, report,
    login, logout, whoami, token, delegate,
):
    hitl.add_command(command)
hitl.add_command(directory)
hitl.add_command(policy)
hitl.add_command(audit)
hitl.add_command(codec_server)
hitl.add_command(precedent)


def main() -> None:
    """The `hitl` entry point."""
    hitl.main(standalone_mode=True)
