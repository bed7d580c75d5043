"""`hitl ops escalate | reassign | cancel | retry` as an operator runs them (subprocesses against a real
dev server, a real worker and a seeded PostgreSQL): each changes the case and lands in the trace."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
from temporalio import workflow
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import PauseActivityRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RawValue
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.connectors import LocalConnector
from activities.connectors._items import CrmItems
from demo.examples import example
from gates.cases import CaseKind
from gates.evidence import SourceRequest
from gates.gate import Decision, OperatorAction
from gates.trace import CaseResult
from hitl_temporal.ops import execute_retry, plan_retry, send_operator_action
from tests.case_helpers import case_view, start_case, trace_row, wait_until_waiting
from tests.fault.conftest import SlowCrm
from tests.helpers import (
    HITL,
    assert_eventually,
    clean_env,
    new_worker,
    unique_task_queue,
)
from workers.client import worker_client
from workers.config import Settings
from workers.worker import activities_for
from workflows.case import CaseWorkflow
from workflows.kinds import RenewalDiscountExceptionWorkflow


@workflow.defn(name="RenewalDiscountException")
class RenewalBrokenAtTheGate(CaseWorkflow):
    """A bad build: the case gathers (workflow tasks complete), then opening the gate raises on every attempt."""

    spec = RenewalDiscountExceptionWorkflow.spec

    @workflow.run
    async def run(self, *payloads: RawValue) -> CaseResult:
        return await self.run_case(payloads)

    async def _open_gate(self, *args: object) -> None:
        raise RuntimeError("the gate is broken in this build")


@pytest.fixture
def ops(temporal_env):
    """Run `hitl ops ...` with no terminal on stdin (so a confirmation question cannot be answered)."""
    env = clean_env(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host, USER="ops_oncall", HITL_IDENTITY="asserted"
    )

    async def run(*args: str) -> subprocess.CompletedProcess:
        return await asyncio.to_thread(
            subprocess.run, [HITL, "ops", *args], env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
        )

    return run


async def operator_actions(pool, handle) -> list[dict]:
    return json.loads((await trace_row(pool, handle))["trace"])["operator_actions"]


async def test_escalate_moves_the_case_up_is_kept_in_the_trace_and_refused_once_closed(temporal_env, world_pool, ops):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        done = await ops("escalate", handle.id, "--reason", "deal closes today", "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{handle.id}: escalated from level 1 to level 2 (finance_directors)"
        assert (await case_view(handle)).gate.level == 1
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="ok"))
        await handle.result()
        late = await ops("escalate", handle.id, "--reason", "too late", "--yes")
    [action] = await operator_actions(world_pool, handle)
    assert (action["action"], action["operator"], action["reason"]) == ("escalate", "ops_oncall", "deal closes today")
    assert late.returncode == 1 and late.stderr.strip() == f"hitl: refused: case {handle.id} is already closed"


async def test_reassign_gives_the_level_to_another_group_and_is_kept_in_the_trace(temporal_env, world_pool, ops):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        done = await ops(
            "reassign", handle.id, "--group", "security_leads", "--reason", "analysts out", "--as", "op_lee", "--yes"
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{handle.id}: level 1 reassigned to security_leads")
        assert (await case_view(handle)).gate.group == "security_leads"
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_lead_noor", reason="ok"))
        await handle.result()
    [action] = await operator_actions(world_pool, handle)
    assert (action["action"], action["operator"], action["group"]) == ("reassign", "op_lee", "security_leads")


async def test_cancel_while_waiting_ends_the_case_as_cancelled(temporal_env, world_pool, ops):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        done = await ops("cancel", handle.id, "--reason", "duplicate request", "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{handle.id}: cancelled while waiting for a decision"
        result = await handle.result()
    assert (result.outcome, result.decided_by) == ("cancelled", "operator:ops_oncall")
    [action] = await operator_actions(world_pool, handle)
    assert (action["action"], action["reason"]) == ("cancel", "duplicate request")


async def test_cancel_during_gathering_interrupts_the_work_through_temporal(temporal_env, world_pool, ops, hanging_crm):
    settings = Settings(_env_file=None, connector_urls={"crm": hanging_crm.url_for("/api")}, connector_timeout_seconds=20)
    async with new_worker(temporal_env.client, world_pool, settings=settings) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)

        async def gathering():
            assert (await case_view(handle)).state.value == "gathering"

        await assert_eventually(gathering, timeout=30)
        done = await ops("cancel", handle.id, "--reason", "customer withdrew", "--as", "op_kim", "--yes")
        assert done.returncode == 0, done.stderr
        assert "cancellation requested in state gathering" in done.stdout
        assert "sent Temporal cancellation" in done.stdout
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    row = await trace_row(world_pool, handle)
    assert (row["outcome"], row["decided_by"], row["reason"]) == ("cancelled", "operator:op_kim", "customer withdrew")


async def test_an_unconfirmed_action_or_an_unknown_case_changes_nothing(temporal_env, world_pool, ops):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        unconfirmed, unknown = await asyncio.gather(
            ops("escalate", handle.id, "--reason", "deal closes today"),
            ops("escalate", "renewal_discount_exception:nobody/fy01", "--reason", "x", "--yes"),
        )
        view = await case_view(handle)
        await handle.terminate("test over")
    assert unconfirmed.returncode == 1
    assert "Escalate " + handle.id in unconfirmed.stderr  # the question was asked
    assert unconfirmed.stderr.strip().endswith("hitl: not confirmed; nothing was done (pass --yes to skip the question)")
    assert view.gate.level == 0 and view.operator_actions == []
    assert unknown.returncode == 1 and unknown.stderr.strip() == "hitl: no case renewal_discount_exception:nobody/fy01"


async def test_retry_resets_a_failing_activity_and_notes_it_in_the_trace(temporal_env, world_pool, ops):
    # The first round's precedents (read with the gate's roster and keys) fail and retry.
    await world_pool.execute("ALTER TABLE precedents RENAME TO precedents_offline")
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)

        async def failing_twice():
            pending = (await handle.describe()).raw_description.pending_activities
            assert [a.attempt >= 2 for a in pending if a.activity_id == "read-precedents-and-gate"] == [True]

        await assert_eventually(failing_twice, timeout=20, interval=0.2)
        # An operator pauses it while the database is repaired, so its own retry timer cannot beat the retry.
        await temporal_env.client.workflow_service.pause_activity(
            PauseActivityRequest(
                namespace=temporal_env.client.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
                id="read-precedents-and-gate",
                reason="database repair",
            )
        )

        async def paused():
            pending = (await handle.describe()).raw_description.pending_activities
            assert [a.state for a in pending] == [PendingActivityState.PENDING_ACTIVITY_STATE_PAUSED]

        await assert_eventually(paused, timeout=20, interval=0.2)
        await world_pool.execute("ALTER TABLE precedents_offline RENAME TO precedents")  # the database is back
        done = await ops("retry", handle.id, "--reason", "precedents table restored", "--as", "op_kim", "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"{handle.id}: reset activity read-precedents-and-gate", f"{handle.id}: noted"]
        await wait_until_waiting(handle)
        history = await handle.fetch_history()
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
        await handle.result()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_id == "read-precedents-and-gate"
    }
    [started] = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]
    assert started.attempt == 1, "the reset started the activity over at attempt 1"
    [action] = await operator_actions(world_pool, handle)
    assert (action["action"], action["operator"], action["result"]) == ("retry", "op_kim", "noted")
    assert action["reason"] == "precedents table restored (reset activity read-precedents-and-gate)"


async def test_retry_resets_a_failing_workflow_task_to_the_last_good_one_once_fixed_code_runs(temporal_env, world_pool):
    client = temporal_env.client
    task_queue = unique_task_queue("bad-build")
    # The CRM answers after 3 s, later than the opening read waits for it: the case asks it as its
    # gather_crm activity, so workflow tasks complete before the broken gate fails the next one.
    crm_answers = await LocalConnector(world_pool).fetch(
        SourceRequest(source="crm", key={"account": "acme_enterprise"}, items=list(CrmItems.model_fields))
    )
    with SlowCrm({"acme_enterprise": {i.item: i.value for i in crm_answers.items}}, 3.0) as crm:
        settings = Settings(_env_file=None, database_url=None, connector_urls={"crm": crm.base_url})
        bad_build = Worker(
            worker_client(client),
            task_queue=task_queue,
            workflows=[RenewalBrokenAtTheGate],
            activities=activities_for(world_pool, settings, temporal_env.client),
            workflow_runner=UnsandboxedWorkflowRunner(),
        )
        async with bad_build:
            handle = await start_case(client, example(CaseKind.RENEWAL, human=True), task_queue)

            async def task_failing():
                description = (await handle.describe()).raw_description
                assert description.pending_workflow_task.attempt > 1

            await assert_eventually(task_failing, timeout=30, interval=0.2)
        plan = await plan_retry(client, handle.id)  # the bad build is gone; the fixed one is about to start
        done = await execute_retry(client, plan, operator="op_kim", reason="fixed build deployed")
        fixed = settings.model_copy(update={"identity": "asserted"})
        async with new_worker(client, world_pool, task_queue=task_queue, settings=fixed):
            noted = await send_operator_action(
                client, handle.id, OperatorAction(action="retry", operator="op_kim", reason=f"fixed build deployed ({done})")
            )
            view = await wait_until_waiting(client.get_workflow_handle(handle.id), timeout=60)
            new_run = (await client.get_workflow_handle(handle.id).describe()).run_id
            await client.get_workflow_handle(handle.id).terminate("test over")
    assert "RuntimeError: the gate is broken in this build" in plan.task_failure
    history = await client.get_workflow_handle(handle.id, run_id=plan.run_id).fetch_history()  # the bad build's run
    completed = [e.event_id for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED]
    assert plan.reset_to_event == completed[-1]
    assert done == f"reset to event {plan.reset_to_event}; new run {new_run}" and new_run != plan.run_id
    assert noted.result == "noted" and [a.action for a in view.operator_actions] == ["retry"]
