"""A reassign reads the directory before it changes the gate, and a decision can land during that read.
The reassign must then be refused with the reason, and the decided case must stay as it was decided.

The fake directory holds the reassign's read open until the decision is in, so the race is the
same on every run: the decision's update is applied while the reassign waits for its read (the
worker keeps the workflow task alive meanwhile, and applies what arrives in the next activation)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from gates.messages import Roster, RosterRequest
from tests.case_helpers import case_view, wait_until_waiting
from tests.unit.workflow.fakes import FakeWorld
from tests.unit.workflow.harness import finished

REASSIGNED_TO = "security_leads"
# The decision reaches the case when the worker next heartbeats the workflow task held open by the
# read, after most of the task timeout: 2 s instead of Temporal's 10 s keeps the test short.
TASK_TIMEOUT = timedelta(seconds=2)
# Generous for a loaded machine.
RACE_TIMEOUT_SECONDS = 60


@dataclass
class DirectoryHeldOpen(FakeWorld):
    """The fake world, with a directory whose read for the reassign answers only once released."""

    reassign_read_started: asyncio.Event = field(default_factory=asyncio.Event)
    release_reassign_read: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        if request.groups == [REASSIGNED_TO]:
            self.reassign_read_started.set()
            await self.release_reassign_read.wait()
        return await super().load_reviewer_roster(request)


@pytest.fixture
def world() -> DirectoryHeldOpen:
    return DirectoryHeldOpen()


async def test_a_decision_taken_while_a_reassign_reads_the_directory_makes_the_reassign_refused(world, start):
    handle = await start(example(CaseKind.ACCESS, human=True), task_timeout=TASK_TIMEOUT)
    await wait_until_waiting(handle)
    reassign = asyncio.create_task(
        handle.execute_update(
            "operator_action",
            OperatorAction(action="reassign", operator="op", reason="analysts out today", group=REASSIGNED_TO),
        )
    )
    await asyncio.wait_for(world.reassign_read_started.wait(), RACE_TIMEOUT_SECONDS)

    decided = await asyncio.wait_for(
        handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_rev_eli", reason="fine")),
        RACE_TIMEOUT_SECONDS,
    )
    assert decided["accepted"] and decided["reviewer"] == "sec_rev_eli"
    world.release_reassign_read.set()

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await asyncio.wait_for(reassign, RACE_TIMEOUT_SECONDS)
    assert "the case was decided meanwhile (approve by sec_rev_eli); nothing was changed" in str(refused.value.cause)

    result = await finished(handle)
    assert (result.outcome, result.decided_by) == ("approve", "sec_rev_eli")
    view = await case_view(handle)
    assert view.operator_actions == []  # the refused reassign is not kept as an action taken
    trace = world.trace(handle)
    assert trace.operator_actions == [] and trace.decided_level == 0
