"""The pure half of a policy change (gates/policy_change.py): the diff a reviewer reads, and who must approve."""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

import pytest

from activities.policy_files import bundled_policy_dir
from gates.policy import Policy, PolicyError, parse_policy_file
from gates.policy_change import (
    OWNERS_GROUP,
    PolicyChangeRequest,
    approval_plan,
    change_gate_definition,
    change_quorum,
    diff_policies,
    raised_to_auto,
)

ACTIVE_TEXT = (bundled_policy_dir() / "discount_policy_v3_2.yaml").read_text()


def policy(text: str, ref: str = "discount_policy_v3_3") -> Policy:
    return parse_policy_file(text.encode(), PurePath(f"{ref}.yaml"))


def proposed(text: str = ACTIVE_TEXT) -> str:
    return text.replace('version: "3.2"', 'version: "3.3"')


ACTIVE = policy(ACTIVE_TEXT, "discount_policy_v3_2")
TO_AUTO = proposed().replace("    reason_code: unusual_case\n", "    reason_code: unusual_case\n    automation: auto\n")


def test_the_diff_names_each_changed_rule_field_and_the_gate():
    text = proposed().replace("op: gt, value: 15}", "op: gt, value: 18}").replace("    min_level: 2\n", "    min_level: 1\n")
    text = text.replace("remind_after: 8h, escalate_after: 48h", "remind_after: 8h, escalate_after: 72h")
    diff = diff_policies(ACTIVE, policy(text))
    changed = {c.rule_id: c.changes for c in diff.rules_changed}
    assert set(changed) == {"DISC-2", "DISC-4"}
    assert changed["DISC-2"] == [
        'when: {"fact": "request.requested_discount_pct", "op": "gt", "value": 15} -> '
        '{"fact": "request.requested_discount_pct", "op": "gt", "value": 18}'
    ]
    assert changed["DISC-4"] == ["min_level 3 -> 2"]
    assert diff.gate_changes and "gate level 3" in diff.gate_changes[0] and "3 days" in diff.gate_changes[0]
    assert diff.rules_added == diff.rules_removed == []
    assert diff.touched_rules == ["DISC-2", "DISC-4"]


def test_the_diff_names_rules_added_removed_and_the_automation_level():
    text = TO_AUTO.replace(
        "  - id: DISC-4\n    description: A discount above 40% needs the CFO\n    reason_code: threshold_breach\n"
        "    when: {fact: request.requested_discount_pct, op: gt, value: 40}\n    min_level: 2\n",
        "  - id: DISC-8\n    description: A discount above 45% needs the CFO\n    reason_code: threshold_breach\n"
        "    when: {fact: request.requested_discount_pct, op: gt, value: 45}\n    min_level: 2\n",
    )
    diff = diff_policies(ACTIVE, policy(text))
    assert diff.rules_added == ["DISC-8"] and diff.rules_removed == ["DISC-4"]
    assert [c.model_dump() for c in diff.rules_changed] == [{"rule_id": "DISC-6", "changes": ["automation assist -> auto"]}]
    assert diff.touched_rules == ["DISC-6", "DISC-4"]


def test_against_no_active_version_every_rule_is_added():
    diff = diff_policies(None, policy(proposed()))
    assert diff.active is None and diff.rules_added == [r.id for r in ACTIVE.rules]


def test_an_identical_version_has_an_empty_diff():
    assert diff_policies(ACTIVE, policy(proposed())).empty()


def test_one_owner_approves_a_change_that_raises_nothing_to_auto():
    plan = approval_plan(ACTIVE, policy(proposed().replace("value: 15}", "value: 18}")))
    assert plan.owners == ["fin_dir_omar", "fin_dir_lina", "cfo_jane"] and plan.approvals_needed == 1
    quorum = change_quorum(plan)  # one owner's seat: a member of the last level who is no owner cannot fill it
    assert quorum is not None and quorum.seats == [OWNERS_GROUP] and quorum.needed == 1


def test_raising_a_rule_to_auto_needs_a_majority_of_the_owners_or_their_quorum():
    plan = approval_plan(ACTIVE, policy(TO_AUTO))
    assert plan.raised_to_auto == ["DISC-6"] and plan.approvals_needed == 2  # 2 of 3
    quorum = change_quorum(plan)
    assert quorum is not None and quorum.seats == [OWNERS_GROUP] * 2 and quorum.keep_on_escalation
    stated = TO_AUTO.replace(
        "owners: [fin_dir_omar, fin_dir_lina, cfo_jane]", "owners: [fin_dir_omar, fin_dir_lina, cfo_jane]\nowner_quorum: 3"
    )
    assert approval_plan(ACTIVE, policy(stated)).approvals_needed == 3


def test_a_rule_already_at_auto_is_not_raised_and_a_new_rule_at_auto_is():
    at_auto = policy(TO_AUTO)
    assert raised_to_auto(at_auto, at_auto) == []
    assert raised_to_auto(None, at_auto) == ["DISC-6"]


def test_owners_come_from_the_proposed_version_else_the_active_one():
    renamed = proposed().replace("owners: [fin_dir_omar, fin_dir_lina, cfo_jane]", "owners: [cfo_jane]")
    assert approval_plan(ACTIVE, policy(renamed)).owners == ["cfo_jane"]
    none_named = proposed().replace("owners: [fin_dir_omar, fin_dir_lina, cfo_jane]\n", "")
    plan = approval_plan(ACTIVE, policy(none_named))
    assert plan.owners == ["fin_dir_omar", "fin_dir_lina", "cfo_jane"] and plan.owners_from == ACTIVE.ref


def test_the_gate_asks_the_owners_with_the_first_levels_timing_then_the_last_level_and_a_timeout_rejects():
    change = policy(proposed())
    gate = change_gate_definition(change, approval_plan(ACTIVE, change))
    assert [level.group for level in gate.levels] == [OWNERS_GROUP, "cfo_office"]
    assert gate.levels[0].escalate_after == change.gate.levels[0].escalate_after
    assert gate.timeout_outcome == "reject"
    nobody = policy(proposed().replace("owners: [fin_dir_omar, fin_dir_lina, cfo_jane]\n", ""))
    plan = approval_plan(None, nobody)
    assert plan.owners == [] and [level.group for level in change_gate_definition(nobody, plan).levels] == ["cfo_office"]


def test_a_customer_commitment_rule_at_auto_cannot_be_proposed():
    text = proposed().replace(
        "    reason_code: customer_commitment\n", "    reason_code: customer_commitment\n    automation: auto\n"
    )
    request = PolicyChangeRequest(
        file_name="discount_policy_v3_3.yaml", policy_text=text, proposer="fin_rev_ana", reason="faster"
    )
    with pytest.raises(PolicyError, match="DISC-5"):
        request.policy()


def test_the_file_name_must_match_the_version(tmp_path: Path):
    request = PolicyChangeRequest(file_name="discount_policy_v3_9.yaml", policy_text=proposed(), proposer="a", reason="r")
    with pytest.raises(PolicyError, match="file name must be discount_policy_v3_3.yaml"):
        request.policy()


def test_only_distinct_owners_fill_the_quorum_and_the_proposer_fills_none():
    from datetime import UTC, datetime

    from gates.gate import Decision, GateState

    change = policy(TO_AUTO)
    plan = approval_plan(ACTIVE, change)
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    gate = GateState(
        definition=change_gate_definition(change, plan),
        requester="fin_dir_omar",
        roster={OWNERS_GROUP: plan.owners, "cfo_office": ["cfo_jane", "fin_cos_raf"]},
        level=0,
        opened_at=now,
        level_started_at=now,
        trusted=True,
        identity_mode="asserted",
        quorum=change_quorum(plan),
        proposal=True,
    )

    def approve(who: str) -> Decision:
        return Decision(outcome="approve", reviewer=who, reason="ok")

    assert "fin_dir_omar proposed this change" in (gate.problem_with(approve("fin_dir_omar"), now) or "")
    assert "fills no open seat" in (gate.problem_with(approve("fin_cos_raf"), now) or "")
    assert gate.problem_with(approve("fin_dir_lina"), now) is None
    gate.accept(approve("fin_dir_lina"), "update", now)
    assert gate.open and gate.still_needed() == ["a member of policy_owners"]
    gate.accept(approve("cfo_jane"), "update", now)
    assert not gate.open and gate.approvers() == ["fin_dir_lina", "cfo_jane"]


def _action(action: str, who: str = "fin_cos_raf"):
    from gates.gate import OperatorAction

    return OperatorAction.model_validate({"action": action, "operator": who, "reason": "asked"})


def _problem(action: str, who: str = "fin_cos_raf", **overrides: Any) -> str | None:
    from datetime import UTC, datetime

    from gates.policy_change import ChangeState, change_operator_problem

    judged: dict[str, Any] = {
        "state": ChangeState.WAITING,
        "proposer": "fin_rev_ana",
        "operators": ["fin_cos_raf"],
        "verified": True,
        "kept": 0,
        "directory_version": "v1",
        "now": datetime(2026, 12, 2, 9, tzinfo=UTC),
    } | overrides
    return change_operator_problem(_action(action, who), **judged)


def test_operators_cancel_or_note_a_change_but_not_their_own_nor_without_the_role():
    from gates.policy_change import ChangeState

    assert _problem("cancel") is None and _problem("note") is None
    assert "takes cancel or note, not reassign" in (_problem("reassign") or "")
    assert "fin_rev_ana proposed this change and may not operate it" in (_problem("cancel", "fin_rev_ana") or "")
    assert "has no operator role" in (_problem("cancel", "fin_rev_ben") or "")
    assert _problem("cancel", "fin_rev_ben", verified=False) is None  # asserted mode: roles are not checked
    assert "already approved" in (_problem("cancel", state=ChangeState.APPROVED) or "")
    assert _problem("note", state=ChangeState.RECORDING) is None and "already recording" in (
        _problem("cancel", state=ChangeState.RECORDING) or ""
    )
    assert "only cancel is possible" in (_problem("note", kept=30) or "") and _problem("cancel", kept=30) is None
    assert "is starting" in (_problem("cancel", proposer=None) or "")


def test_a_change_cancelled_before_its_brief_records_its_opening_and_the_cancel():
    from datetime import UTC, datetime

    from gates.gate import AcceptedDecision
    from gates.policy_change import ChangeRecord, change_events

    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    cancel = AcceptedDecision(
        outcome="cancelled", decided_by="temporal:cancel-request", reason="r", via="operator", level=-1, at=now
    )
    record = ChangeRecord(
        change_id="policy_change:discount_policy_v3_3",
        run_id="run-1",
        kind="renewal_discount_exception",
        policy="discount_policy_v3_3",
        proposed_digest="",
        active=None,
        proposer="fin_rev_ana",
        proposer_reason="why",
        outcome="cancelled",
        decided_by=cancel.decided_by,
        decided_via="operator",
        reason="r",
        decision=cancel,
        brief=None,
        opened_at=now,
        decided_at=now,
    )
    events = change_events(record, None, activates=None)
    assert [(e.kind.value, e.event_key) for e in events] == [
        ("case_opened", "run-1/case_opened/1"),
        ("cancelled", "run-1/cancelled/1"),
    ]
