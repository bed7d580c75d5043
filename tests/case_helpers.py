"""Helpers for tests that run whole cases: unique case IDs, starting, polling the gate, trace rows.

The example payloads themselves are the demo's catalogue (demo/examples.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from demo.examples import example
from gates.cases import CaseKind, CaseRequest
from gates.trace import CaseView
from tests.helpers import assert_eventually
from workflows.kinds import CASE_WORKFLOWS

# Human access cases like the example (a privileged entitlement with an owner, decided at the first
# Security level) under other business keys: the IAM lookup uses the whole key, so it cannot vary freely.
ACCESS_TWINS = ({"system": "aws", "entitlement": "admin"}, {"system": "github", "entitlement": "org_owner"})


def twin(kind: CaseKind, n: int) -> CaseRequest:
    """The n-th case needing a human of `kind` (0 is the example), each under its own case ID, for a
    test that needs several open at once: a case refuses any ID but its own."""
    if n == 0:
        return example(kind, human=True)
    if kind == CaseKind.RENEWAL:
        return example(kind, human=True, renewal=f"fy26-t{n}")
    if kind == CaseKind.PROCUREMENT:
        return example(kind, human=True, request_id=f"pr-2026-0150-t{n}")
    return example(kind, human=True, **ACCESS_TWINS[n - 1])


def distinct(kinds: list[CaseKind]) -> list[CaseRequest]:
    """Human cases of these kinds, in order, with no two under the same case ID."""
    seen: dict[CaseKind, int] = {}
    requests = []
    for kind in kinds:
        requests.append(twin(kind, seen.get(kind, 0)))
        seen[kind] = seen.get(kind, 0) + 1
    return requests


async def start_case(
    client: Client, request: CaseRequest, task_queue: str, *, task_timeout: timedelta | None = None
) -> WorkflowHandle:
    """Start under the request's own case ID (a case refuses any other ID). A shorter `task_timeout`
    than Temporal's 10 s brings a signal or update sooner to a case busy in a long local activity.

    The servers are shared by the whole session, so a run left waiting by an earlier test under the
    same ID is terminated (tests run one at a time). A test that needs two open cases of one kind
    varies the business key (`example(kind, human=True, renewal="fy26-x")`, or `ACCESS_TWINS`)."""
    return await client.start_workflow(
        CASE_WORKFLOWS[request.kind].run,  # typed: result() decodes a CaseResult
        request,
        id=request.case_id(),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        task_timeout=task_timeout,
    )


async def case_view(handle: WorkflowHandle) -> CaseView:
    return await handle.query("case_state", result_type=CaseView)


async def wait_until_waiting(handle: WorkflowHandle, *, round_no: int = 1, timeout: float = 30) -> CaseView:
    """Poll `case_state` until the case waits at its gate (a case whose code has not started the
    decision loop yet answers "case is starting", which counts as not yet)."""

    async def waiting() -> CaseView:
        try:
            view = await case_view(handle)
        except WorkflowQueryFailedError as err:
            if "case is starting" not in str(err):
                raise
            raise AssertionError(f"case not started yet: {err}") from err
        assert view.state.value == "waiting" and view.gate is not None, f"state is {view.state.value}"
        assert len(view.rounds) == round_no - 1, f"round {len(view.rounds) + 1}"
        return view

    return await assert_eventually(waiting, timeout=timeout, interval=0.2)


async def trace_row(pool, case: WorkflowHandle | str):
    """The one trace row of this case (of this handle's case: the seeded world may hold an earlier
    decision under the same case ID, as a real history would)."""
    if isinstance(case, WorkflowHandle):
        key = f"{case.id}#{case.first_execution_run_id or case.result_run_id}"
        rows = await pool.fetch("SELECT * FROM decision_traces WHERE decision_key = $1", key)
    else:
        key = case
        rows = await pool.fetch("SELECT * FROM decision_traces WHERE case_id = $1", case)
    assert len(rows) == 1, f"expected exactly one decision row for {key}, found {len(rows)}"
    return rows[0]


HISTORIES = Path(__file__).resolve().parent / "histories"


async def save_history(handle: WorkflowHandle, kind: CaseKind, path: str, *, folder: str = "") -> None:
    """With HITL_RECORD_HISTORIES=1, keep this run's history as a replay fixture (tests/histories/,
    or a subfolder of it: runs that continued as new are kept in `continued/`)."""
    import os

    if os.environ.get("HITL_RECORD_HISTORIES") != "1":
        return
    target = HISTORIES / folder
    target.mkdir(parents=True, exist_ok=True)
    history = await handle.fetch_history()
    (target / f"{kind.value}--{path}.json").write_text(history.to_json())


def activity_ids(history: WorkflowHistory) -> list[str]:
    """The IDs of every activity a run asked, regular (scheduled events) or local (their markers), in order:
    connectors are local activities first since LOCAL_GATHERS_PATCH, and regular ones when those fail."""
    ids = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            ids.append(event.activity_task_scheduled_event_attributes.activity_id)
        elif event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                ids.append(json.loads(marker.details["data"].payloads[0].data)["activity_id"])
    return ids
