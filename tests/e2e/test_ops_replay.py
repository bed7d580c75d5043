"""`hitl ops replay` replays live or exported histories against the current workflow code, and
`hitl ops export` writes a history file that replays (and can join tests/histories/)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, Worker

from demo.examples import example
from gates.cases import CaseKind
from tests.case_helpers import start_case, wait_until_waiting
from tests.helpers import (
    HITL,
    assert_eventually,
    clean_env,
    new_worker,
    unique_task_queue,
)
from tests.replay_variants import RenewalWithAnUnpatchedChange
from workers.client import WORKER_DATA_CONVERTER, worker_client
from workers.config import Settings
from workers.replay import load_history_file, replay_histories
from workers.worker import WORKFLOW_RUNNER, WORKFLOWS, activities_for
from workflows.case import LOCAL_GATHERS_PATCH


async def hitl(temporal_env, *args: str) -> subprocess.CompletedProcess:
    env = clean_env(TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host)
    return await asyncio.to_thread(
        subprocess.run, [HITL, *args], env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )


async def test_a_decided_case_replays_clean_live_and_from_its_exported_file(temporal_env, world_pool, tmp_path: Path):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        await handle.result()
    exported = tmp_path / "renewal_discount_exception--exported.json"

    export, live = await asyncio.gather(
        hitl(temporal_env, "ops", "export", handle.id, "-o", str(exported)), hitl(temporal_env, "ops", "replay", handle.id)
    )
    from_file = await hitl(temporal_env, "ops", "replay", "--file", str(exported))

    assert export.returncode == 0, export.stderr
    assert export.stdout.startswith(f"wrote {exported}: ") and handle.id in export.stdout
    assert (live.returncode, live.stdout.strip()) == (0, f"{handle.id} (run {handle.result_run_id}): replayed clean"), live.stderr
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    # a case's history is replayed under its own case ID, whatever the file is called
    assert from_file.stdout.strip() == f"{handle.id} (run {handle.result_run_id}): replayed clean"
    # the same file as a tests/histories/ fixture, loaded as tests/unit/test_replay.py loads it
    history = load_history_file(exported)
    assert history.workflow_id == handle.id
    await Replayer(
        workflows=WORKFLOWS, data_converter=WORKER_DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER
    ).replay_workflow(history)


async def test_a_history_replayed_against_changed_code_names_the_case_and_the_event(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        await handle.result()
    history = await handle.fetch_history()

    [clean] = await replay_histories([history])
    [diverged] = await replay_histories([history], workflows=[RenewalWithAnUnpatchedChange])

    assert clean.clean and clean.case_id == handle.id
    assert not diverged.clean and diverged.case_id == handle.id
    # The changed code sleeps first; the history's first command is the patch marker of the hardened path.
    assert (diverged.event_id, diverged.event_type) == (5, "MarkerRecorded")
    assert diverged.line().startswith(f"{handle.id} (run {history.run_id}): diverged at event 5 (MarkerRecorded): ")
    assert "Nondeterminism" in diverged.detail and LOCAL_GATHERS_PATCH in diverged.detail


async def test_a_divergence_at_a_command_names_that_event():
    """A history from before the local-reads patch (LEAN_PATCH) starts with a scheduled activity; \
the changed code starts a timer."""
    path = Path(__file__).resolve().parents[1] / "histories" / "before_local_reads" / "renewal_discount_exception--approve.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    [diverged] = await replay_histories([history], workflows=[RenewalWithAnUnpatchedChange])
    assert (diverged.event_id, diverged.event_type) == (5, "ActivityTaskScheduled")
    assert (
        diverged.line().startswith("renewal_discount_exception--approve (run ")
        and "diverged at event 5 (ActivityTaskScheduled)" in diverged.line()
    )


async def test_replay_exits_1_naming_a_running_case_started_by_other_code(temporal_env, world_pool):
    """The case was started by a deployment whose renewal workflow had an unpatched change; the current code diverges."""
    task_queue = unique_task_queue("old-code")
    settings = Settings(_env_file=None, database_url=None)
    old_code = Worker(
        worker_client(temporal_env.client),
        task_queue=task_queue,
        workflows=[RenewalWithAnUnpatchedChange],
        activities=activities_for(world_pool, settings, temporal_env.client),
        workflow_runner=WORKFLOW_RUNNER,
    )
    async with old_code:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), task_queue)
        try:
            await wait_until_waiting(handle)  # the old code sleeps before it starts the case
            by_case = await hitl(temporal_env, "ops", "replay", handle.id, "--json")

            async def listed():
                outcomes = await replay_histories(
                    temporal_env.client.list_workflows(f"TaskQueue = '{task_queue}'").map_histories()
                )
                assert outcomes, "not visible yet"
                return outcomes

            by_query = await assert_eventually(listed, timeout=30)
        finally:
            await handle.terminate("test over")
    assert by_case.returncode == 1, by_case.stdout + by_case.stderr
    [outcome] = json.loads(by_case.stdout)
    assert (outcome["case_id"], outcome["clean"]) == (handle.id, False)
    assert outcome["event_id"] is not None and "Nondeterminism" in outcome["detail"]
    assert "Traceback" not in by_case.stderr and "WARN" not in by_case.stderr
    assert [(o.case_id, o.clean, o.event_id) for o in by_query] == [(handle.id, False, outcome["event_id"])]
