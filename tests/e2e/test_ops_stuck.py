"""`hitl ops stuck` finds every running case that needs an operator, and says why.

A failing workflow task, an activity retrying, and a task queue nobody polls are produced for
real on the dev server. A case waiting past its final deadline cannot be produced there (the
gate's timers are hours long and the dev server does not skip time), so that rule is tested on
`classify` with a hand-made describe answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.api.common.v1 import ActivityType
from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflow.v1 import (
    PendingActivityInfo,
    PendingWorkflowTaskInfo,
    WorkflowExecutionConfig,
)
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionResponse
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from demo.examples import example
from gates.cases import CaseKind, RenewalDiscountRequest
from gates.gate import Decision
from gates.trace import CaseResult
from hitl_temporal.cli.ops.stuck import render_stuck
from hitl_temporal.ops import (
    CaseSnapshot,
    StuckCriteria,
    StuckKind,
    classify,
    find_stuck,
)
from tests.case_helpers import case_view, start_case, wait_until_waiting
from tests.helpers import (
    HITL,
    assert_eventually,
    clean_env,
    new_worker,
    unique_task_queue,
)
from tests.replay_variants import RenewalWithAnUnpatchedChange
from workers.client import worker_client
from workers.config import Settings
from workers.worker import WORKFLOW_RUNNER, activities_for

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@workflow.defn(name="RenewalDiscountException")
class BrokenRenewal:
    """A bad deployment of the renewal workflow: its code raises, so every workflow task fails and retries."""

    @workflow.run
    async def run(self, request: RenewalDiscountRequest) -> CaseResult:
        raise RuntimeError("renewal code is broken: KeyError 'discount'")


def describe(**fields) -> DescribeWorkflowExecutionResponse:
    return DescribeWorkflowExecutionResponse(
        execution_config=WorkflowExecutionConfig(task_queue=TaskQueue(name="hitl-cases")), **fields
    )


def kinds(reasons) -> list[StuckKind]:
    return [r.kind for r in reasons]


# -- classification, without a server ------------------------------------------------------------


def test_a_case_waiting_past_its_deadline_beyond_the_grace_is_stuck():
    snapshot = CaseSnapshot(
        description=describe(), case_state="waiting", next_deadline=NOW - timedelta(hours=2), workflow_pollers=[NOW]
    )
    reasons = classify(snapshot, StuckCriteria(deadline_grace=timedelta(minutes=5)), NOW)
    assert kinds(reasons) == [StuckKind.PAST_DEADLINE]
    assert "waiting 2h past its deadline (2026-03-02 10:00Z)" in reasons[0].detail


def test_a_deadline_within_the_grace_or_a_case_not_waiting_is_not_stuck():
    criteria = StuckCriteria(deadline_grace=timedelta(minutes=5))
    within = CaseSnapshot(describe(), case_state="waiting", next_deadline=NOW - timedelta(minutes=4), workflow_pollers=[NOW])
    ahead = CaseSnapshot(describe(), case_state="waiting", next_deadline=NOW + timedelta(hours=20), workflow_pollers=[NOW])
    gathering = CaseSnapshot(describe(), case_state="gathering", next_deadline=NOW - timedelta(days=1), workflow_pollers=[NOW])
    assert [classify(s, criteria, NOW) for s in (within, ahead, gathering)] == [[], [], []]


def test_activity_attempts_above_the_limit_and_a_retried_workflow_task_are_stuck():
    failure = Failure(
        message="relation \"precedents\" does not exist",
        application_failure_info=ApplicationFailureInfo(type="UndefinedTableError"),
    )
    activities = [
        PendingActivityInfo(
            activity_id="gather-crm-1", activity_type=ActivityType(name="gather_crm"), attempt=3, maximum_attempts=4
        ),
        PendingActivityInfo(
            activity_id="find-precedents-1", activity_type=ActivityType(name="find_precedents"), attempt=4, last_failure=failure
        ),
    ]
    snapshot = CaseSnapshot(
        describe(pending_activities=activities, pending_workflow_task=PendingWorkflowTaskInfo(attempt=5)),
        case_state="gathering",
        last_task_failure="RuntimeError: boom",
        workflow_pollers=[NOW - timedelta(seconds=30)],
        activity_pollers=[NOW - timedelta(seconds=30)],
    )
    reasons = classify(snapshot, StuckCriteria(activity_attempts=3), NOW)
    assert kinds(reasons) == [StuckKind.WORKFLOW_TASK_FAILING, StuckKind.ACTIVITY_RETRYING]
    assert reasons[0].detail == "workflow task failing (attempt 5): RuntimeError: boom"
    assert reasons[1].detail == (
        'activity find-precedents-1 (find_precedents) on attempt 4: UndefinedTableError: relation "precedents" does not exist'
    )


def test_no_poller_or_only_stale_pollers_means_no_worker():
    never = CaseSnapshot(describe(), case_state="waiting", workflow_pollers=[])
    stale = CaseSnapshot(describe(), case_state="waiting", workflow_pollers=[NOW - timedelta(minutes=4)])
    fresh = CaseSnapshot(
        describe(), case_state="waiting", workflow_pollers=[NOW - timedelta(minutes=4), NOW - timedelta(seconds=50)]
    )
    assert [r.detail for r in classify(never, StuckCriteria(), NOW)] == [
        "no worker polling task queue hitl-cases for workflow tasks (none seen)"
    ]
    assert "(last poll 4m ago)" in classify(stale, StuckCriteria(), NOW)[0].detail
    assert classify(fresh, StuckCriteria(), NOW) == []


# -- on the dev server ---------------------------------------------------------------------------


async def stuck_case(client, task_queue: str, case_id: str, *, because: StuckKind, **options):
    """Poll `find_stuck` on one task queue (visibility is eventually consistent) until it lists the case
    for the reason the test sets up. A case can be listed for another reason first: just after its
    worker starts, the server may not have seen it poll yet ("no worker ... (none seen)")."""

    async def listed():
        report = await find_stuck(client, task_queue=task_queue, **options)
        found = [c for c in report.stuck if c.case_id == case_id]
        assert found, f"{case_id} not among {[c.case_id for c in report.stuck]} ({report.checked} checked)"
        assert because in kinds(found[0].reasons), f"{case_id} listed for {found[0].reasons}, not yet for {because}"
        return found[0]

    return await assert_eventually(listed, timeout=30, interval=0.3)


async def test_an_activity_retrying_past_the_limit_is_reported_with_its_last_error(temporal_env, world_pool):
    # The first round's precedents (read with the gate's roster and keys) now fail, and retry.
    await world_pool.execute("ALTER TABLE precedents RENAME TO precedents_offline")
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        try:
            case = await stuck_case(
                temporal_env.client,
                worker.task_queue,
                handle.id,
                because=StuckKind.ACTIVITY_RETRYING,
                criteria=StuckCriteria(activity_attempts=1),
            )
            calm = await find_stuck(
                temporal_env.client, task_queue=worker.task_queue, criteria=StuckCriteria(activity_attempts=50)
            )
        finally:
            await handle.terminate("test over")
    assert case.state == "gathering"
    assert kinds(case.reasons) == [StuckKind.ACTIVITY_RETRYING]
    detail = case.reasons[0].detail
    assert detail.startswith("activity read-precedents-and-gate (read_precedents_and_gate) on attempt ")
    assert 'UndefinedTableError: relation "precedents" does not exist' in detail
    assert handle.id not in [c.case_id for c in calm.stuck], "below the attempt limit it is not reported"


async def test_a_failing_workflow_task_is_reported_with_the_error(temporal_env):
    task_queue = unique_task_queue("broken")
    async with Worker(
        temporal_env.client, task_queue=task_queue, workflows=[BrokenRenewal], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), task_queue)
        try:
            case = await stuck_case(temporal_env.client, task_queue, handle.id, because=StuckKind.WORKFLOW_TASK_FAILING)
        finally:
            await handle.terminate("test over")
    assert case.workflow_type == "RenewalDiscountException" and case.state is None  # never got to publish a state
    assert kinds(case.reasons) == [StuckKind.WORKFLOW_TASK_FAILING]
    assert "RuntimeError: renewal code is broken: KeyError 'discount'" in case.reasons[0].detail


async def test_a_case_on_a_task_queue_nobody_polls_is_reported_from_the_cli(temporal_env):
    task_queue = unique_task_queue("unpolled")
    handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=True), task_queue)
    env = clean_env(TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host)
    try:
        await stuck_case(temporal_env.client, task_queue, handle.id, because=StuckKind.NO_WORKER)
        listed = await asyncio.to_thread(
            subprocess.run,
            [HITL, "ops", "stuck", "--task-queue", task_queue, "--json"],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        report = await find_stuck(temporal_env.client, task_queue=task_queue)
        younger = await find_stuck(temporal_env.client, task_queue=task_queue, older_than=timedelta(hours=1))
    finally:
        await handle.terminate("test over")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["checked"] == 1
    [case] = document["stuck"]
    assert (case["case_id"], case["task_queue"]) == (handle.id, task_queue)
    assert case["reasons"] == [
        {"kind": "no_worker", "detail": f"no worker polling task queue {task_queue} for workflow tasks (none seen)"}
    ]
    table = render_stuck(report, datetime.now(UTC))
    assert "1 of 1 running cases need an operator" in table and "no worker polling" in table
    assert younger.checked == 0, "--older-than 1h leaves out a case started just now"


async def test_a_case_replayed_by_incompatible_code_keeps_running_and_resumes_on_compatible_code(temporal_env, world_pool):
    """A rolling deploy: a case started by one build is replayed by a worker whose code diverges from
    its history. The workflow task fails and is retried, and `ops stuck` says so; the case is not
    failed, and it goes on once a worker with compatible code takes it again."""
    client = temporal_env.client
    task_queue = unique_task_queue("rolling-deploy")
    settings = Settings(_env_file=None, database_url=None)

    def first_build() -> Worker:
        return Worker(
            worker_client(client),
            task_queue=task_queue,
            workflows=[RenewalWithAnUnpatchedChange],
            activities=activities_for(world_pool, settings, temporal_env.client),
            workflow_runner=WORKFLOW_RUNNER,
        )

    async with first_build():
        handle = await start_case(client, example(CaseKind.RENEWAL, human=True), task_queue)
        await wait_until_waiting(handle)  # the first build sleeps before it starts the case
    async with new_worker(client, world_pool, task_queue=task_queue):  # today's code: no such timer first
        await handle.signal("decide", {"outcome": "approve", "reviewer": "eng_lee", "reason": "wakes the case up"})
        case = await stuck_case(client, task_queue, handle.id, because=StuckKind.WORKFLOW_TASK_FAILING)
        status = (await handle.describe()).status
    assert kinds(case.reasons) == [StuckKind.WORKFLOW_TASK_FAILING]
    assert "Nondeterminism" in case.reasons[0].detail, case.reasons[0].detail
    assert status == WorkflowExecutionStatus.RUNNING, "the case is not failed"

    async with first_build():
        await assert_eventually(lambda: _has_rejected_attempt(handle), timeout=30, interval=0.3)
        await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="after the deploy")
        )
        result = await handle.result()
    assert (result.outcome, result.decided_by) == ("approve", "fin_rev_ana")


async def _has_rejected_attempt(handle) -> None:
    view = await case_view(handle)
    assert [a.reviewer for a in view.rejected_attempts] == ["eng_lee"], view.rejected_attempts
