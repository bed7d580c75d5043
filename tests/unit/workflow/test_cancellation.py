"""Cancellation through Temporal (`hitl ops cancel`, the Web UI, the CLI): the case records a
`cancelled` decision trace, then ends as cancelled, whether it was waiting or still gathering.

(On the time-skipping server `describe()` fails to decode a case's Datetime search attributes, so
how the case ended is read from its result's failure.)"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import OperatorAction
from tests.case_helpers import case_view, wait_until_waiting
from tests.helpers import assert_eventually
from tests.unit.workflow.harness import finished


@pytest.mark.parametrize("kind", list(CaseKind))
async def test_cancelling_a_waiting_case_records_it_as_cancelled_through_temporal(world, start, kind):
    handle = await start(example(kind, human=True))
    level = (await wait_until_waiting(handle)).gate.level
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as ended:
        await finished(handle)
    assert isinstance(ended.value.cause, CancelledError), "the case ends as cancelled"
    trace = world.trace(handle)
    assert (trace.outcome, trace.decided_by, trace.decided_via) == ("cancelled", "temporal:cancel-request", "operator")
    assert trace.reason == "the workflow was cancelled through Temporal"
    assert trace.decided_level == level


async def test_cancel_during_stuck_gathering_interrupts_the_work_and_records_who_and_why(world, start):
    world.stalled.add("crm")  # the CRM keeps failing: gathering retries it
    handle = await start(example(CaseKind.RENEWAL, human=True))

    async def gathering() -> None:
        assert (await case_view(handle)).state.value == "gathering"
        assert "gather_crm" in world.calls

    await assert_eventually(gathering, timeout=30)
    note = await handle.execute_update(
        "operator_action", OperatorAction(action="cancel", operator="op_kim", reason="CRM outage, customer withdrew")
    )
    assert note["needs_temporal_cancel"] is True and "cancel the workflow to interrupt it" in note["result"]
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as ended:
        await finished(handle)
    assert isinstance(ended.value.cause, CancelledError), "the case ends as cancelled"
    trace = world.trace(handle)
    assert (trace.outcome, trace.decided_by, trace.reason) == ("cancelled", "operator:op_kim", "CRM outage, customer withdrew")
    assert trace.human_gate is None, "it never reached the gate"
