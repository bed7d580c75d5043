"""Operators act on a waiting case through the `operator_action` update: escalate now, reassign the
level, note, cancel. Every action shows in the case state and is kept in the decision trace."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from tests.case_helpers import case_view, wait_until_waiting
from tests.unit.workflow.harness import finished


async def test_escalate_now_moves_the_case_up_and_the_lower_level_can_no_longer_decide(world, start):
    handle = await start(example(CaseKind.RENEWAL, human=True))
    assert (await wait_until_waiting(handle)).gate.level == 0
    receipt = await handle.execute_update(
        "operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="deal closes today")
    )
    assert receipt["result"] == "escalated from level 1 to level 2 (finance_directors)"
    view = await case_view(handle)
    assert view.gate.level == 1 and "fin_rev_ana" not in view.gate.may_decide
    assert view.gate.escalations[-1].reason == "operator ops_oncall: deal closes today"
    assert [(n.kind, n.reviewer_group) for n in world.notifications] == [("escalation", "finance_directors")]
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="x"))
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="ok"))
    await finished(handle)
    trace = world.trace(handle)
    assert [(a.action, a.operator) for a in trace.operator_actions] == [("escalate", "ops_oncall")]
    assert trace.decided_level == 1


async def test_escalating_past_the_last_level_is_refused_with_the_reason(start):
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await wait_until_waiting(handle)
    for _ in range(2):
        await handle.execute_update("operator_action", OperatorAction(action="escalate", operator="op", reason="r"))
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("operator_action", OperatorAction(action="escalate", operator="op", reason="r"))
    assert "already at the last level (CFO)" in str(refused.value.cause)
    await handle.execute_update("submit_decision", Decision(outcome="reject", reviewer="cfo_jane", reason="no"))
    assert (await finished(handle)).decided_by == "cfo_jane"


async def test_reassign_gives_the_current_level_to_another_group_and_an_empty_group_is_refused(world, start):
    handle = await start(example(CaseKind.ACCESS, human=True))
    await wait_until_waiting(handle)
    receipt = await handle.execute_update(
        "operator_action",
        OperatorAction(action="reassign", operator="op", reason="security analysts out today", group="security_leads"),
    )
    assert receipt["result"] == "level 1 reassigned to security_leads (sec_lead_noor, sec_lead_viktor)"
    view = await case_view(handle)
    assert view.gate.group == "security_leads" and "sec_rev_eli" not in view.gate.may_decide
    with pytest.raises(WorkflowUpdateFailedError) as empty:
        await handle.execute_update(
            "operator_action", OperatorAction(action="reassign", operator="op", reason="x", group="no_such_group")
        )
    assert "no_such_group has no active members" in str(empty.value.cause)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_lead_noor", reason="ok"))
    assert (await finished(handle)).decided_by == "sec_lead_noor"
    trace = world.trace(handle)
    assert [(a.action, a.group) for a in trace.operator_actions] == [("reassign", "security_leads")]


@pytest.mark.parametrize("action", ["note", "retry"])
async def test_a_note_or_retry_is_kept_and_changes_nothing_else(world, start, action):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    before = (await wait_until_waiting(handle)).gate
    receipt = await handle.execute_update(
        "operator_action", OperatorAction(action=action, operator="op_lee", reason="vendor called about the quote")
    )
    assert receipt == {"result": "noted", "needs_temporal_cancel": False}
    view = await case_view(handle)
    assert [(a.action, a.reason) for a in view.operator_actions] == [(action, "vendor called about the quote")]
    assert (view.gate.level, view.gate.may_decide) == (before.level, before.may_decide)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="vp_ops_raj", reason="ok"))
    await finished(handle)
    assert [(a.action, a.operator, a.result) for a in world.trace(handle).operator_actions] == [(action, "op_lee", "noted")]


async def test_cancel_while_waiting_is_recorded_as_the_outcome_with_who_and_why(world, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    await wait_until_waiting(handle)
    receipt = await handle.execute_update(
        "operator_action", OperatorAction(action="cancel", operator="op_lee", reason="duplicate of pr-2026-0149")
    )
    assert receipt == {"result": "cancelled while waiting for a decision", "needs_temporal_cancel": False}
    result = await finished(handle)
    assert (result.outcome, result.decided_by, result.decided_via) == ("cancelled", "operator:op_lee", "operator")
    trace = world.trace(handle)
    assert (trace.outcome, trace.reason) == ("cancelled", "duplicate of pr-2026-0149")
    assert [a.action for a in trace.operator_actions] == ["cancel"]
