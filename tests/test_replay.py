"""Stored histories of every path of every kind replay against the current workflow code.

A workflow change that would break running cases fails here, naming the history; guard such a
change with `workflow.patched`. tests/histories/ holds the current code's histories; a subfolder per
patch keeps the histories recorded before it (`before_local_reads/`: regular activities for every
read and every attribute in every upsert), which must keep replaying while such cases may still run.
Record the current set (only after a deliberate, patched change; move the old set aside first) with
`HITL_RECORD_HISTORIES=1 pytest tests/test_case_paths.py tests/test_operator_actions.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from gates.cases import CaseKind
from tests.replay_variants import RenewalWithAnUnpatchedChange, RenewalWithAPatchedChange
from workers.client import WORKER_DATA_CONVERTER
from workers.worker import WORKFLOW_RUNNER, WORKFLOWS

HISTORIES = Path(__file__).resolve().parent / "histories"
PATHS = ("auto", "approve", "reject", "request_info", "timeout")


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


@pytest.mark.parametrize("folder", [HISTORIES, HISTORIES / "before_local_reads"], ids=lambda p: p.name)
def test_a_history_is_stored_for_every_path_of_every_kind(folder: Path):
    stored = {p.stem for p in folder.glob("*.json")}
    assert stored >= {f"{kind.value}--{path}" for kind in CaseKind for path in PATHS}


@pytest.mark.parametrize(
    "path", sorted(HISTORIES.rglob("*.json")), ids=lambda p: str(p.relative_to(HISTORIES).with_suffix(""))
)
async def test_stored_history_replays_against_current_code(path: Path):
    replayer = Replayer(workflows=WORKFLOWS, data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER)
    await replayer.replay_workflow(_load(path))


async def test_an_unpatched_workflow_change_fails_replay_and_names_the_case():
    replayer = Replayer(workflows=[RenewalWithAnUnpatchedChange], data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER)
    history = _load(HISTORIES / "renewal_discount_exception--approve.json")
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert history.workflow_id == "renewal_discount_exception--approve"


async def test_the_same_change_behind_workflow_patched_replays():
    replayer = Replayer(workflows=[RenewalWithAPatchedChange], data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER)
    await replayer.replay_workflow(_load(HISTORIES / "renewal_discount_exception--approve.json"))
