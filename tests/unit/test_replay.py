"""Stored histories of every path of every kind replay against the current workflow code.

A workflow change that would break running cases fails here, naming the history; guard such a
change with `workflow.patched`. tests/histories/ holds the current code's histories; a subfolder per
patch keeps the histories recorded before it, which must keep replaying while such cases may still
run: `before_local_reads/` (regular activities for every read and every attribute in every upsert),
`before_hardening/` (before HARDENED_PATCH, with test workflow IDs that are not the case IDs),
`before_trust/` (before TRUST_PATCH: no proofs, digest or directory re-reads), `before_combined/`
(before COMBINED_PATCH: three patch markers, and separate reads of the start's metadata and the
policy, of the roster and the keys), `before_local_gathers/` (before LOCAL_GATHERS_PATCH: connectors
as regular activities, the brief written by `summarize_case`, precedents read apart from the gate;
with its `continued/` runs). `continued/` holds the two runs of a case that continued as
new (and a continued run that took a decision and a signal in its first task, before it restored
its state), and `*--verified_approve` a case decided with a proof. `policy_change--*` are PolicyChange
workflows (an approved change, an operator's cancel, a cancel through Temporal; in `continued/`, the
two runs of a flooded change), replayed under the
change ID their start names; record them with `HITL_RECORD_HISTORIES=1 pytest tests/integration/test_policy_change.py`.
Record the current set (only after a deliberate, patched change; move the old set aside first) with
`HITL_RECORD_HISTORIES=1 pytest tests/integration/test_case_paths.py tests/integration/test_operator_actions.py \
tests/integration/test_continue_as_new.py tests/integration/test_trust.py tests/integration/test_request_info.py`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from gates.cases import CaseKind
from gates.policy_change import WORKFLOW_TYPE as POLICY_CHANGE
from gates.policy_change import PolicyChangeRequest, change_id_for
from tests.replay_variants import (
    RenewalWithAnUnpatchedChange,
    RenewalWithAPatchedChange,
)
from workers.client import WORKER_DATA_CONVERTER
from workers.replay import load_history_file
from workers.worker import STRICT_WORKFLOW_RUNNER, WORKFLOW_RUNNER, WORKFLOWS

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
PATHS = ("auto", "approve", "reject", "request_info", "timeout")


def _load(path: Path) -> WorkflowHistory:
    """As `hitl ops replay --file` loads it: under the case ID its start payload names (a policy change's
    under its change ID, which `hitl ops replay` does not derive yet)."""
    history = load_history_file(path)
    started = history.events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name == POLICY_CHANGE:
        value = json.loads(started.input.payloads[0].data)
        if value.get("carried_over") is True:  # a run that continued the change
            return WorkflowHistory(value["workflow_id"], history.events)
        return WorkflowHistory(change_id_for(PolicyChangeRequest.model_validate(value).policy().ref), history.events)
    return history


def test_an_approved_policy_change_is_stored_and_replayed_under_its_change_id():
    history = _load(HISTORIES / "policy_change--approve.json")
    assert history.workflow_id == "policy_change:discount_policy_v3_3"
    events = json.loads((HISTORIES / "policy_change--approve.json").read_text())["events"]
    completed = events[-1]["workflowExecutionCompletedEventAttributes"]["result"]["payloads"][0]["data"]
    assert json.loads(base64.b64decode(completed))["activated"] == "discount_policy_v3_3"


@pytest.mark.parametrize(
    "folder",
    [
        HISTORIES,
        HISTORIES / "before_local_gathers",
        HISTORIES / "before_combined",
        HISTORIES / "before_trust",
        HISTORIES / "before_hardening",
        HISTORIES / "before_local_reads",
    ],
    ids=lambda p: p.name,
)
def test_a_history_is_stored_for_every_path_of_every_kind(folder: Path):
    stored = {p.stem for p in folder.glob("*.json")}
    assert stored >= {f"{kind.value}--{path}" for kind in CaseKind for path in PATHS}


@pytest.mark.parametrize("path", sorted(HISTORIES.rglob("*.json")), ids=lambda p: str(p.relative_to(HISTORIES).with_suffix("")))
async def test_stored_history_replays_against_current_code(path: Path):
    """In the strict sandbox, which also fails a replay on a non-deterministic call in our workflow modules."""
    replayer = Replayer(workflows=WORKFLOWS, data_converter=WORKER_DATA_CONVERTER, workflow_runner=STRICT_WORKFLOW_RUNNER)
    await replayer.replay_workflow(_load(path))


async def test_an_unpatched_workflow_change_fails_replay_and_names_the_case():
    replayer = Replayer(
        workflows=[RenewalWithAnUnpatchedChange], data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER
    )
    history = _load(HISTORIES / "renewal_discount_exception--approve.json")
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert history.workflow_id == "renewal_discount_exception:acme_enterprise/fy26"


async def test_the_same_change_behind_workflow_patched_replays():
    replayer = Replayer(
        workflows=[RenewalWithAPatchedChange], data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER
    )
    await replayer.replay_workflow(_load(HISTORIES / "renewal_discount_exception--approve.json"))


def test_a_policy_change_that_continued_as_new_is_stored_with_both_runs():
    first = json.loads((HISTORIES / "continued" / "policy_change--flood_first_run.json").read_text())
    assert first["events"][-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    next_run = _load(HISTORIES / "continued" / "policy_change--flood_next_run.json")
    assert next_run.workflow_id == "policy_change:discount_policy_v5_1"


def test_a_case_that_continued_as_new_is_stored_with_both_runs():
    first = json.loads((HISTORIES / "continued" / "renewal_discount_exception--flood_first_run.json").read_text())
    next_run = json.loads((HISTORIES / "continued" / "renewal_discount_exception--flood_next_run.json").read_text())
    assert first["events"][-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert next_run["events"][-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    # the next run starts from the carried-over state and is replayed under the case's own ID
    assert load_history_file(HISTORIES / "continued" / "renewal_discount_exception--flood_next_run.json").workflow_id == (
        "renewal_discount_exception:acme_enterprise/fy26-flood"
    )
