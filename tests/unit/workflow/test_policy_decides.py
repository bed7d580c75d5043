"""Cases that policy decides alone, and the missing evidence that sends such a case to a human instead."""

from __future__ import annotations

import pytest

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import wait_until_waiting
from tests.unit.factories import policy
from tests.unit.workflow.harness import finished

# The source each kind cannot do without (its policy's first rule requires items from it).
ESSENTIAL_SOURCE = {CaseKind.RENEWAL: "crm", CaseKind.PROCUREMENT: "vendor_master", CaseKind.ACCESS: "iam"}


@pytest.mark.parametrize("kind", list(CaseKind))
async def test_a_case_within_policy_is_approved_by_the_policy_and_recorded_with_the_rules_that_allowed_it(world, start, kind):
    handle = await start(example(kind, human=False))
    result = await finished(handle)
    ref = policy(kind).ref
    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", f"policy:{ref}", "policy")
    trace = world.trace(handle)
    assert trace.human_gate is None and trace.decided_level is None
    assert {f.rule_id for f in trace.findings} == {r.id for r in policy(kind).rules}
    assert not any(f.requires_human for f in trace.findings)
    assert trace.entities["policy"] == ref
    assert trace.reason.startswith("no rule requires a human; allowed by ")
    assert world.notifications == [], "nobody is asked when policy decides"


@pytest.mark.parametrize("kind", list(CaseKind))
async def test_a_source_that_cannot_answer_sends_a_within_policy_case_to_a_human_never_to_a_guess(world, start, kind):
    source = ESSENTIAL_SOURCE[kind]
    world.unavailable[source] = f"{source} is down for maintenance"
    handle = await start(example(kind, human=False))
    view = await wait_until_waiting(handle)
    assert "ambiguous_or_missing_data" in view.reason_codes
    assert view.proposal is not None and view.proposal.outcome == "request_info"
    assert f"{source} is down for maintenance" in (view.brief or "")
    reviewer = view.gate.may_decide[0]  # unknown facts may also raise the level (an inactive subject is ACC-2's)
    await handle.execute_update("submit_decision", Decision(outcome="reject", reviewer=reviewer, reason="no data"))
    assert (await finished(handle)).outcome == "reject"
    trace = world.trace(handle)
    assert trace.human_gate == policy(kind).gate.name
    assert any(label.startswith(f"{source}: ") for label in trace.inputs), "what could not be read is listed as consulted"
