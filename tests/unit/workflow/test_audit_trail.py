"""Every gate event of a case reaches its audit log once, with the activities the case runs anyway:
its opening with the gate's first read, reminders and escalations with their notifications, and the
rest (decisions, refused attempts, operator actions, the outcome) with the recording of the decision.
The fake world keeps events once per key, as the real log does (tests/integration/test_audit_log.py
checks the chain in PostgreSQL)."""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.client import WorkflowUpdateFailedError

from demo.examples import example
from gates.audit import AuditKind
from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from tests.case_helpers import wait_until_waiting
from tests.hostile import json_payload, raw_signal
from tests.unit.workflow.harness import finished


def kinds(world) -> list[str]:
    return [event.kind.value for event in world.audit.values()]


async def test_a_decided_case_writes_its_opening_its_gate_and_the_decision_once_each(world, start):
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await wait_until_waiting(handle)
    assert kinds(world) == ["case_opened"]  # written with the gate's first read
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="precedent"))
    await finished(handle)
    assert kinds(world) == ["case_opened", "gate_opened", "decision_accepted"]
    events = list(world.audit.values())
    assert {event.case_id for event in events} == {handle.id}
    opened, gate, decided = events
    assert opened.body["requester"] == "ae_sam" and opened.body["policy"].startswith("discount_policy")
    assert gate.body["group"] == "finance_reviewers" and "fin_rev_ana" in gate.body["may_decide"]
    assert decided.body["decided_by"] == "fin_rev_ana" and decided.body["identity"]["mode"] == "asserted"
    assert opened.at <= gate.at <= decided.at


async def test_refused_attempts_operator_actions_and_escalations_are_each_one_event(world, start):
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await wait_until_waiting(handle)
    with pytest.raises(WorkflowUpdateFailedError):  # refused in the validator: nothing reaches the case
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="ae_sam", reason="mine"))
    await handle.signal("decide", {"outcome": "approve", "reviewer": "ae_sam", "reason": "mine, by signal"})
    await handle.execute_update("operator_action", OperatorAction(action="note", operator="ops_oncall", reason="customer asked"))
    await handle.execute_update("operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="today"))
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_dir_omar", reason="ok"))
    await finished(handle)
    counted = Counter(kinds(world))
    assert counted == Counter(
        {"case_opened": 1, "gate_opened": 1, "decision_refused": 1, "operator_action": 2, "escalated": 1, "decision_accepted": 1}
    )
    refused = next(e for e in world.audit.values() if e.kind == AuditKind.DECISION_REFUSED)
    assert refused.body["reviewer"] == "ae_sam" and refused.body["via"] == "signal"
    actions = [e.body["action"] for e in world.audit.values() if e.kind == AuditKind.OPERATOR_ACTION]
    assert actions == ["note", "escalate"]


async def test_a_case_decided_by_policy_writes_its_opening_and_the_policy_decision(world, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=False))
    await finished(handle)
    assert kinds(world) == ["case_opened", "decided_by_policy"]


async def test_a_silent_gate_writes_each_reminder_and_escalation_then_the_timeout(world, start):
    handle = await start(example(CaseKind.ACCESS, human=True))
    await finished(handle)  # nobody decides: every timer fires
    written = kinds(world)
    assert written[:2] == ["case_opened", "gate_opened"] and written[-1] == "timed_out"
    trace = world.trace(handle)
    assert written.count("reminded") == len(trace.reminders) and written.count("escalated") == len(trace.escalations)
    assert len(world.audit) == len(set(world.audit))  # one key per event


async def test_each_request_info_round_is_asked_and_opens_the_gate_again(world, start):
    handle = await start(example(CaseKind.PROCUREMENT, human=True))
    await wait_until_waiting(handle)
    await handle.execute_update(
        "submit_decision", Decision(outcome="request_info", reviewer="vp_ops_raj", reason="which cost centre?")
    )
    await handle.execute_update("answer_info", {"answerer": "buyer_pat", "text": "cc-4410"})
    await wait_until_waiting(handle, round_no=2)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="vp_ops_raj", reason="ok"))
    await finished(handle)
    written = [(e.kind.value, e.body.get("round")) for e in world.audit.values()]
    assert written == [
        ("case_opened", None),
        ("gate_opened", 1),
        ("info_asked", None),
        ("gate_opened", 2),
        ("info_answered", 1),
        ("decision_accepted", None),
    ]


async def test_text_canonical_json_cannot_hold_is_refused_and_audited_and_the_case_goes_on(world, start):
    """People's text with an unpaired surrogate (a raw sender: this SDK's converter refuses such text, and
    json.dumps writes it as an escape), in a claimed reviewer and in a reason: both are refused attempts, each
    an event with the text made storable, and the case is decided after them."""
    handle = await start(example(CaseKind.RENEWAL, human=True))
    await wait_until_waiting(handle)
    for payload in (
        {"outcome": "approve", "reviewer": "fin_rev_ana\ud800", "reason": "x"},
        {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "service impact \ud800 precedent"},
    ):
        await raw_signal(handle._client, handle.id, [json_payload(payload)])
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
    assert (await finished(handle)).decided_by == "fin_rev_ana"
    events = list(world.audit.values())
    assert [e.kind for e in events].count(AuditKind.DECISION_REFUSED) == 2
    assert events[-1].kind == AuditKind.DECISION_ACCEPTED
    assert "\ud800" not in str([e.body for e in events])
