"""Operators act on cases through the `operator_action` update (and Temporal cancellation for work in
progress); every action is kept in the case state and the decision trace. Real dev server and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from tests.case_helpers import case_view, save_history, start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from workers.config import Settings


async def test_escalate_now_moves_the_case_up_and_lower_levels_can_no_longer_decide(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        assert (await wait_until_waiting(handle)).gate.level == 0
        result = await handle.execute_update(
            "operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="deal closes today")
        )
        assert result["result"] == "escalated from level 1 to level 2 (finance_directors)"
        view = await case_view(handle)
        assert view.gate.level == 1 and "fin_rev_ana" not in view.gate.may_decide
        assert view.gate.escalations[-1].reason == "operator ops_oncall: deal closes today"
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="x"))
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="ok"))
        await handle.result()
        await save_history(handle, CaseKind.RENEWAL, "operator_escalate")
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert [a["action"] for a in trace["operator_actions"]] == ["escalate"]
    assert trace["operator_actions"][0]["operator"] == "ops_oncall"
    assert trace["decided_level"] == 1


async def test_escalate_at_the_last_level_and_actions_on_decided_cases_are_refused(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        for _ in range(2):
            await handle.execute_update("operator_action", OperatorAction(action="escalate", operator="op", reason="r"))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update("operator_action", OperatorAction(action="escalate", operator="op", reason="r"))
        assert "already at the last level (CFO)" in str(refused.value.cause)
        await handle.execute_update("submit_decision", Decision(outcome="reject", reviewer="cfo_jane", reason="no"))
        await handle.result()
        with pytest.raises(RPCError, match="already completed"):
            await handle.execute_update("operator_action", OperatorAction(action="note", operator="op", reason="late"))


async def test_reassign_gives_the_current_level_to_another_group(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.ACCESS, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        result = await handle.execute_update(
            "operator_action",
            OperatorAction(action="reassign", operator="op", reason="security analysts out today", group="security_leads"),
        )
        assert result["result"].startswith("level 1 reassigned to security_leads")
        view = await case_view(handle)
        assert view.gate.group == "security_leads" and "sec_rev_eli" not in view.gate.may_decide
        with pytest.raises(WorkflowUpdateFailedError) as empty:
            await handle.execute_update(
                "operator_action", OperatorAction(action="reassign", operator="op", reason="x", group="no_such_group")
            )
        assert "no_such_group has no active members" in str(empty.value.cause)
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_lead_noor", reason="ok"))
        assert (await handle.result()).decided_by == "sec_lead_noor"


async def test_cancel_while_waiting_is_recorded_as_the_outcome(temporal_env, world_pool):
    async with new_worker(temporal_env.client, world_pool) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        result = await handle.execute_update(
            "operator_action", OperatorAction(action="cancel", operator="op_lee", reason="duplicate of pr-2026-0149")
        )
        assert result == {"result": "cancelled while waiting for a decision", "needs_temporal_cancel": False}
        outcome = await handle.result()
        await save_history(handle, CaseKind.PROCUREMENT, "operator_cancel")
    assert (outcome.outcome, outcome.decided_by, outcome.decided_via) == ("cancelled", "operator:op_lee", "operator")
    row = await trace_row(world_pool, handle)
    assert (row["outcome"], row["reason"]) == ("cancelled", "duplicate of pr-2026-0149")


async def test_cancel_during_stuck_gathering_interrupts_the_work_and_records_who_and_why(temporal_env, world_pool, hanging_crm):
    settings = Settings(_env_file=None, connector_urls={"crm": hanging_crm.url_for("/api")}, connector_timeout_seconds=20)
    async with new_worker(temporal_env.client, world_pool, settings=settings) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)

        async def gathering():
            assert (await case_view(handle)).state.value == "gathering"

        await assert_eventually(gathering, timeout=30)
        note = await handle.execute_update(
            "operator_action", OperatorAction(action="cancel", operator="op_kim", reason="CRM outage, customer withdrew")
        )
        assert note["needs_temporal_cancel"] is True and "cancel the workflow to interrupt it" in note["result"]
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        await save_history(handle, CaseKind.RENEWAL, "temporal_cancel")
    row = await trace_row(world_pool, handle)
    assert (row["outcome"], row["decided_by"], row["reason"]) == ("cancelled", "operator:op_kim", "CRM outage, customer withdrew")
