"""The gate's durable timers: a reminder, then an escalation up the ladder, then the policy's timeout
outcome. The time-skipping server makes the hours and days pass in a moment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import case_view, wait_until_waiting
from tests.helpers import assert_eventually
from tests.unit.factories import policy
from tests.unit.workflow.harness import finished


@pytest.mark.parametrize("kind", list(CaseKind))
async def test_a_silent_gate_reminds_and_escalates_through_every_level_then_times_out_with_the_policy_outcome(
    world, start, kind
):
    gate = policy(kind).gate
    handle = await start(example(kind, human=True))
    opened = (await wait_until_waiting(handle)).gate
    result = await finished(handle)  # no one decides: every timer fires
    assert (result.outcome, result.decided_by, result.decided_via) == (gate.timeout_outcome, f"timeout:{gate.name}", "timeout")
    levels = gate.levels[opened.level :]
    trace = world.trace(handle)
    assert [r.group for r in trace.reminders] == [level.group for level in levels]
    assert [e.to_group for e in trace.escalations] == [level.group for level in levels[1:]]
    assert trace.decided_level == len(gate.levels) - 1
    assert trace.reason.startswith("no decision within ") and f"({gate.levels[-1].title})" in trace.reason
    sent = [(n.kind, n.reviewer_group) for n in world.notifications]
    expected = []
    for index, level in enumerate(levels):
        expected.append(("reminder", level.group))
        expected.append(("escalation", levels[index + 1].group) if index + 1 < len(levels) else ("timeout", level.group))
    assert sent == expected
    assert world.notifications[0].recipients == opened.may_decide, "everyone who may decide is reminded"


async def test_the_reminder_then_the_escalation_come_when_their_deadlines_pass_and_the_next_level_decides(
    workflow_env, world, start
):
    reviewers, directors = policy(CaseKind.RENEWAL).gate.levels[:2]
    handle = await start(example(CaseKind.RENEWAL, human=True))
    opened = (await wait_until_waiting(handle)).gate
    assert (opened.group, opened.remind_at - opened.opened_at) == ("finance_reviewers", reviewers.remind_after)

    await workflow_env.sleep(reviewers.remind_after + timedelta(minutes=1))

    async def reminded() -> None:
        assert [n.kind for n in world.notifications] == ["reminder"]

    await assert_eventually(reminded, timeout=30)
    view = await case_view(handle)
    assert (view.gate.level, [r.group for r in view.gate.reminders]) == (0, ["finance_reviewers"])
    assert world.notifications[0].recipients == opened.may_decide

    await workflow_env.sleep(reviewers.escalate_after - reviewers.remind_after)

    async def escalated() -> None:
        assert [n.kind for n in world.notifications] == ["reminder", "escalation"]

    await assert_eventually(escalated, timeout=30)
    view = await case_view(handle)
    assert (view.gate.level, view.gate.group) == (1, directors.group)
    assert "fin_rev_ana" not in view.gate.may_decide
    assert world.notifications[1].reviewer_group == directors.group
    assert world.notifications[1].message.startswith(f"Escalated to {directors.title}")
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="late"))

    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_lina", reason="fine"))
    assert (await finished(handle)).decided_by == "fin_dir_lina"
    trace = world.trace(handle)
    assert trace.decided_level == 1
    assert [r.group for r in trace.reminders] == ["finance_reviewers"]
    assert [(e.to_group, e.reason.startswith("no decision from finance_reviewers within")) for e in trace.escalations] == [
        (directors.group, True)
    ]
