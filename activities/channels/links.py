"""Where a notification points: the case in the Temporal Web UI and the `hitl show` command.

The UI routes a workflow at `/namespaces/<namespace>/workflows/<workflow id>` and finds the run
itself. Case IDs contain `:` and `/`: the UI builds its own links with `encodeURIComponent`, once,
so an ID is percent-encoded once here, `/` included (unencoded, `acme/fy26` reads as workflow
`acme` and run `fy26` and opens the wrong page).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import quote


def ui_workflow_url(base_url: str, namespace: str, workflow_id: str) -> str:
    """The case's page in the Temporal Web UI (its latest run)."""
    return f"{base_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


def show_command(case_id: str) -> str:
    """`hitl show CASE`, quoted for a POSIX shell."""
    return f"hitl show {shlex.quote(case_id)}"


def ui_base_url(configured: str | None, state_dir: Path) -> str | None:
    """HITL_UI_BASE_URL, else the UI of the `hitl dev` stack running from `state_dir`, else None.

    Read on each call: a worker `hitl dev` starts is running before the stack file is written."""
    if configured:
        return configured
    from workers.config import read_running_dev_stack  # the dev stack's file format lives with the CLI's config

    stack = read_running_dev_stack(state_dir)
    return stack.ui_url if stack is not None else None
