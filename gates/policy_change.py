"""A policy change as a case: the request, the diff against the active version, who must approve, the brief.

Pure domain (no I/O, no Temporal). `hitl policy propose FILE` sends a `PolicyChangeRequest`; the
`PolicyChange` workflow (workflows/policy_change.py) parses it with the same strict loader as a
policy file on disk, compares it with the version in force (`diff_policies`), asks the owners
(`approval_plan`) at a gate built here (`change_gate_definition`) and, only when approved, has the
proposed text activated. Everything the reviewer reads is in `ChangeBrief`.

Who decides: the owners the proposed version names (else the active one's). One owner's approval
suffices, unless the change raises a rule to `auto` (compared with the active version; a new rule
at `auto` counts as raised): then a quorum of owners, `owner_quorum` or a majority. Without owners
in either version the change goes straight to the policy gate's last level.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gates.agreement import Agreement
from gates.audit import AuditEvent, AuditKind
from gates.bounds import MAX_OPERATOR_ACTIONS
from gates.cases import PersonId, Text
from gates.duties import conflict_of
from gates.gate import (
    MAX_PROOF_CHARS,
    AcceptedDecision,
    GateState,
    Identity,
    OperatorAction,
    OperatorActionKind,
    OperatorRecord,
    RejectedAttempt,
)
from gates.identity import TrustSnapshot
from gates.policy import MAX_POLICY_FILE_BYTES, GateDefinition, GateLevel, Policy, Rule, parse_policy_file
from gates.policy_activation import policy_digest
from gates.quorum import MAX_SEATS, Quorum
from gates.text import md_block, md_inline, storable
from gates.whatif import WhatIfReport, WhatIfTotals

# The workflow ID of a change: one per proposed version (`policy_change:discount_policy_v3_3`).
CHANGE_ID_PREFIX = "policy_change:"
WORKFLOW_TYPE = "PolicyChange"
# The synthetic group of the gate's first level: the policy's owners (people the policy names, not a directory group).
OWNERS_GROUP = "policy_owners"
# What a brief carries of the what-if report and the agreement figures (the rest: `hitl policy whatif`).
MAX_BRIEF_CASES = 20
MAX_BRIEF_DISAGREEMENTS = 5


def change_id_for(policy_ref: str) -> str:
    return f"{CHANGE_ID_PREFIX}{policy_ref}"


class PolicyChangeRequest(BaseModel):
    """What `hitl policy propose` starts the workflow with: the file's text, as read, and who proposes it why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    file_name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*\.yaml$", max_length=120)] = Field(
        description="The proposed file's name: it must be `<policy_ref>.yaml`, as for a file in the policy folder"
    )
    policy_text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_POLICY_FILE_BYTES)]
    proposer: PersonId
    reason: Text = Field(description="Why, in the proposer's words")
    proof: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PROOF_CHARS)] | None = Field(
        default=None, description="A signed token naming the proposer (`hitl token`), required in verified mode", repr=False
    )

    def policy(self) -> Policy:
        """The proposed policy, parsed and validated as a file on disk would be (PolicyError names the file and rule)."""
        return parse_policy_file(self.policy_text.encode("utf-8"), PurePath(self.file_name))


# -- the diff ------------------------------------------------------------------------------------


class RuleChange(BaseModel):
    rule_id: str
    changes: list[str] = Field(description="e.g. 'min_level 1 -> 2', 'automation assist -> auto'")


class PolicyDiff(BaseModel):
    """What the proposed version changes against the active one (everything is added when none is active)."""

    active: str | None = Field(description="The active version's ref; None when none is known")
    proposed: str
    rules_added: list[str] = Field(default_factory=list)
    rules_removed: list[str] = Field(default_factory=list)
    rules_changed: list[RuleChange] = Field(default_factory=list)
    gate_changes: list[str] = Field(default_factory=list)
    other_changes: list[str] = Field(default_factory=list, description="Owners, quorum of owners, description, auto outcome")

    @property
    def touched_rules(self) -> list[str]:
        """Rules whose past decisions say something about this change: changed or removed ones."""
        return [c.rule_id for c in self.rules_changed] + self.rules_removed

    def empty(self) -> bool:
        return not (self.rules_added or self.rules_removed or self.rules_changed or self.gate_changes or self.other_changes)


def automation_of(rule: Rule) -> str:
    """The rule's automation level as text (`shadow`, `assist`, `auto`)."""
    return str(getattr(rule.automation, "value", rule.automation))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, timedelta):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str) if isinstance(value, (dict, list)) else str(value)


def _rule_changes(before: Rule, after: Rule) -> list[str]:
    changes = []
    for name in type(after).model_fields:
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        if name == "automation":
            changes.append(f"automation {automation_of(before)} -> {automation_of(after)}")
        elif name in ("min_level",):
            changes.append(f"min_level {old + 1} -> {new + 1}")  # shown 1-based, as levels are everywhere
        else:
            changes.append(f"{name}: {_shown(old)} -> {_shown(new)}")
    return changes


def _gate_changes(before: GateDefinition, after: GateDefinition) -> list[str]:
    changes = []
    for name in type(after).model_fields:
        if name == "levels":
            continue
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changes.append(f"gate {name}: {_shown(old)} -> {_shown(new)}")
    old_levels, new_levels = before.levels, after.levels
    for index in range(max(len(old_levels), len(new_levels))):
        old = old_levels[index] if index < len(old_levels) else None
        new = new_levels[index] if index < len(new_levels) else None
        if old == new:
            continue
        if old is None:
            changes.append(f"gate level {index + 1} added: {_level(new)}")
        elif new is None:
            changes.append(f"gate level {index + 1} removed: {_level(old)}")
        else:
            changes.append(f"gate level {index + 1}: {_level(old)} -> {_level(new)}")
    return changes


def _level(level: GateLevel | None) -> str:
    if level is None:
        return "none"
    return f"{level.group} ({level.title}, remind after {level.remind_after}, escalate after {level.escalate_after})"


def diff_policies(active: Policy | None, proposed: Policy) -> PolicyDiff:
    """Rules added, removed and changed (conditions, min_level, automation, quorum, ...), gate and owner changes."""
    if active is None:
        return PolicyDiff(active=None, proposed=proposed.ref, rules_added=[r.id for r in proposed.rules])
    before = {r.id: r for r in active.rules}
    after = {r.id: r for r in proposed.rules}
    diff = PolicyDiff(
        active=active.ref,
        proposed=proposed.ref,
        rules_added=[i for i in after if i not in before],
        rules_removed=[i for i in before if i not in after],
        rules_changed=[
            RuleChange(rule_id=i, changes=changes)
            for i in after
            if i in before and (changes := _rule_changes(before[i], after[i]))
        ],
        gate_changes=_gate_changes(active.gate, proposed.gate),
    )
    for name in ("kind", "description", "auto_outcome", "owners", "owner_quorum"):
        old, new = getattr(active, name, None), getattr(proposed, name, None)
        if old != new:
            diff.other_changes.append(f"{name}: {_shown(old)} -> {_shown(new)}")
    return diff


def raised_to_auto(active: Policy | None, proposed: Policy) -> list[str]:
    """Rules at `auto` in the proposed version that were not at `auto` in the active one (new rules included)."""
    before = {r.id: automation_of(r) for r in active.rules} if active is not None else {}
    return [r.id for r in proposed.rules if automation_of(r) == "auto" and before.get(r.id) != "auto"]


# -- who must approve ------------------------------------------------------------------------------


class ApprovalPlan(BaseModel):
    """Who decides a change and how many of them must approve."""

    owners: list[str] = Field(description="The policy's owners: the proposed version's, else the active one's")
    owners_from: str | None = Field(description="The ref of the version the owners were read from; None: no owners")
    raised_to_auto: list[str] = Field(default_factory=list)
    approvals_needed: int = Field(description="Distinct approvals that activate the change")
    escalation_group: str = Field(description="The policy gate's last level group, where an unanswered change goes")

    def describe(self) -> str:
        if not self.owners:
            return f"no owners named: the policy gate's last level ({self.escalation_group}) decides"
        who = ", ".join(self.owners)
        if self.approvals_needed > 1:
            raised = ", ".join(self.raised_to_auto)
            return f"{self.approvals_needed} of the owners ({who}) must approve: the change raises {raised} to auto"
        return f"one of the owners ({who}) approves"


def approval_plan(active: Policy | None, proposed: Policy) -> ApprovalPlan:
    """Owners of the proposed version (else the active one's); a quorum only when a rule is raised to auto."""
    owners_from: Policy | None = proposed if proposed.owners else active if active is not None and active.owners else None
    owners = list(dict.fromkeys(owners_from.owners)) if owners_from is not None else []
    raised = raised_to_auto(active, proposed)
    needed = 1
    if raised and owners_from is not None:
        needed = max(1, min(owners_from.owners_needed, len(owners), MAX_SEATS))
    return ApprovalPlan(
        owners=owners,
        owners_from=owners_from.ref if owners_from is not None else None,
        raised_to_auto=raised,
        approvals_needed=needed,
        escalation_group=proposed.gate.levels[-1].group,
    )


def change_gate_definition(proposed: Policy, plan: ApprovalPlan) -> GateDefinition:
    """The change's gate: the owners with the policy gate's first level timing, then its last level; a timeout rejects."""
    first, last = proposed.gate.levels[0], proposed.gate.levels[-1]
    levels = [last]
    if plan.owners:
        owners = GateLevel(
            group=OWNERS_GROUP, title="Policy owner", remind_after=first.remind_after, escalate_after=first.escalate_after
        )
        levels = [owners, last]
    return GateDefinition(
        name=proposed.gate.name, title=f"{proposed.gate.title} policy change", levels=levels, timeout_outcome="reject"
    )


def change_quorum(plan: ApprovalPlan) -> Quorum | None:
    """A quorum of owners: one seat per approval needed, all of the owners' group, so only distinct owners
    fill them (the last level's group, once escalated to, may still reject); approvals survive an escalation.
    One seat when one approval suffices: otherwise the gate's rule that a higher level may decide early
    would let a member of the last level (not an owner) approve the change alone. None without owners
    (the last level decides)."""
    if not plan.owners:
        return None
    return Quorum(approvals=plan.approvals_needed, seats=[OWNERS_GROUP] * plan.approvals_needed, keep_on_escalation=True)


# -- the brief ---------------------------------------------------------------------------------------


class WhatIfSummary(BaseModel):
    """The what-if report as a brief carries it: totals, and the first cases that would change."""

    totals: WhatIfTotals
    rejected_would_pass: list[str]
    changed: list[str] = Field(description="'<case id>: <changes>' for the first MAX_BRIEF_CASES cases that would change")
    more_changed: int = 0

    @classmethod
    def of(cls, report: WhatIfReport) -> WhatIfSummary:
        changed = [f"{c.case_id}: {'; '.join(c.changes)}" for c in report.cases if c.status == "changed"]
        return cls(
            totals=report.totals,
            rejected_would_pass=report.rejected_would_pass[:MAX_BRIEF_CASES],
            changed=changed[:MAX_BRIEF_CASES],
            more_changed=max(0, len(changed) - MAX_BRIEF_CASES),
        )


class ChangeBrief(BaseModel):
    """What a reviewer reads before deciding a change (`hitl policy review CHANGE`)."""

    change_id: str
    kind: str
    proposed: str
    proposed_digest: str
    active: str | None
    active_source: str = Field(description="'activation', 'initial activation' (the bootstrap, just now) or 'none'")
    proposer: str
    reason: str = Field(description="The proposer's own words")
    diff: PolicyDiff
    plan: ApprovalPlan
    whatif: WhatIfSummary | None = None
    agreement: list[Agreement] = Field(default_factory=list, description="For the rules the change touches")
    digest: str = Field(description="Over the proposed text and the active version: a decision may name it")


def change_digest(proposed_digest: str, active: str | None, active_digest: str | None) -> str:
    seen = json.dumps({"proposed": proposed_digest, "active": active, "active_digest": active_digest}, sort_keys=True)
    return "sha256:" + hashlib.sha256(seen.encode()).hexdigest()


def touched_agreement(agreements: list[Agreement], kind: str, rules: list[str]) -> list[Agreement]:
    """Agreement figures of the rules a change touches (any version of the kind's policy), disagreements bounded."""
    wanted = set(rules)
    return [
        a.model_copy(update={"disagreements": a.disagreements[:MAX_BRIEF_DISAGREEMENTS]})
        for a in agreements
        if a.kind == kind and a.rule in wanted
    ]


# -- the state a reviewer reads ------------------------------------------------------------------------


class ChangeState(StrEnum):
    PREPARING = "preparing"
    WAITING = "waiting"
    RECORDING = "recording"
    APPROVED = "approved"
    NOT_ACTIVATED = "approved, not activated"  # the approval is recorded; putting it in force failed (see `not_activated`)
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    REFUSED = "refused"


class ChangeView(BaseModel):
    """The `policy_change_state` query's answer."""

    change_id: str
    state: ChangeState
    refusal: str | None = None
    brief: ChangeBrief | None = None
    level: int | None = Field(default=None, description="0-based level the gate is at, while it waits")
    level_title: str | None = None
    deadline: datetime | None = None
    may_decide: list[str] = Field(default_factory=list)
    approvals: list[AcceptedDecision] = Field(default_factory=list)
    still_needed: list[str] = Field(default_factory=list)
    rejected_attempts: list[RejectedAttempt] = Field(default_factory=list)
    decision: AcceptedDecision | None = None
    activated: str | None = Field(default=None, description="The version activated, once approved and recorded")
    not_activated: str | None = Field(default=None, description="Why an approved change was not put in force")
    operator_actions: list[OperatorRecord] = Field(default_factory=list)


def change_view(
    change_id: str, state: ChangeState, brief: ChangeBrief | None, gate: GateState | None, now: datetime
) -> ChangeView:
    view = ChangeView(change_id=change_id, state=state, brief=brief)
    if gate is None:
        return view
    view.approvals, view.rejected_attempts, view.decision = list(gate.approvals), list(gate.rejected_attempts), gate.decision
    if gate.open:
        view.level, view.level_title = gate.level, gate.definition.levels[gate.level].title
        view.deadline = gate.escalate_at()
        view.may_decide, view.still_needed = gate.may_decide(now), gate.still_needed()
    return view


class ChangeResult(BaseModel):
    change_id: str
    outcome: str
    decided_by: str
    reason: str
    activated: str | None = Field(description="The version activated; None when the change was rejected or timed out")
    not_activated: str | None = Field(default=None, description="Why an approved change was not put in force")


def change_summary(request: PolicyChangeRequest) -> str:
    """The change's one line in the UI (static summary)."""
    return f"Policy change: {md_inline(PurePath(request.file_name).stem)} proposed by {md_inline(request.proposer)}"


def change_details(request: PolicyChangeRequest) -> str:
    """The UI's static details: the policy, and the proposer's reason quoted as their words."""
    ref = PurePath(request.file_name).stem
    return "\n\n".join(
        [
            f"**PolicyChange** of {md_inline(ref)}: activated only when approved by its owners",
            f"Proposed by {md_inline(request.proposer)}; proposed text {md_inline(policy_digest(request.policy_text))}",
            f"**reason**, as {md_inline(request.proposer)} wrote it:\n\n{md_block(request.reason)}",
        ]
    )


# -- messages of the activities (activities/policy_change.py) -------------------------------------------


class PrepareChangeInput(BaseModel):
    change_id: str
    request: PolicyChangeRequest


class PreparedChange(BaseModel):
    """The active version (with its text, so the workflow keeps what the change was compared with) and the brief."""

    active_text: str | None
    brief: ChangeBrief


class ChangeRecord(BaseModel):
    """The decision of a change, as `policy_changes` keeps it: a trace like a case's, in a table of its own
    (precedent lookups, `hitl report` and agreement read decision_traces, and a change is never a precedent).
    `run_id` is the change's first run's: one record whichever run (after continue-as-new) writes it."""

    change_id: str
    run_id: str
    kind: str
    policy: str = Field(description="The proposed version's ref")
    proposed_digest: str
    active: str | None
    proposer: str
    proposer_reason: str
    proposer_identity: Identity | None = None
    outcome: str
    decided_by: str
    decided_via: str
    reason: str
    approvals: list[AcceptedDecision] = Field(default_factory=list)
    decision: AcceptedDecision
    brief: ChangeBrief | None = Field(description="None only for a change cancelled before its brief was written")
    rejected_attempts: list[RejectedAttempt] = Field(default_factory=list)
    operator_actions: list[OperatorRecord] = Field(default_factory=list)
    opened_at: datetime
    decided_at: datetime


class RecordChangeInput(BaseModel):
    record: ChangeRecord
    policy_text: str
    audit: list[AuditEvent] = Field(default_factory=list)


class ChangeReceipt(BaseModel):
    record_id: int
    activated: str | None = Field(description="The version activated (approved changes)")
    activated_at: datetime | None = None
    not_activated: str | None = Field(default=None, description="Why an approved change was not put in force")


def change_events(record: ChangeRecord, gate: GateState | None, *, activates: str | None) -> list[AuditEvent]:
    """The change's gate events for the audit log, keyed by its first run like a case's (gates/audit_trail.py):
    written once, with the record, so a retry (or a later run after continue-as-new) adds nothing."""
    events: list[AuditEvent] = []

    def add(kind: AuditKind, n: int, at: datetime, body: dict[str, Any]) -> None:
        events.append(
            AuditEvent(
                event_key=f"{record.run_id}/{kind.value}/{n}", case_id=record.change_id, kind=kind, at=at, body=storable(body)
            )
        )

    add(
        AuditKind.CASE_OPENED,
        1,
        record.opened_at,
        {
            "kind": WORKFLOW_TYPE,
            "policy_kind": record.kind,
            "policy": record.policy,
            "proposed_digest": record.proposed_digest,
            "active": record.active,
            "requester": record.proposer,
            "reason": record.proposer_reason,
        },
    )
    decided: list[AcceptedDecision] = []
    if gate is not None:
        for opening in gate.openings:
            opened_body: dict[str, Any] = {
                "gate": gate.definition.name,
                "round": opening.round,
                "level": opening.level + 1,
                "group": opening.group,
            }
            add(AuditKind.GATE_OPENED, opening.round, opening.at, opened_body | {"may_decide": opening.may_decide})
        for n, reminder in enumerate(gate.reminders, start=1):
            add(AuditKind.REMINDED, n, reminder.at, {"level": reminder.level + 1, "group": reminder.group})
        for n, escalation in enumerate(gate.escalations, start=1):
            moved = {"from_level": escalation.from_level + 1, "to_level": escalation.to_level + 1}
            add(AuditKind.ESCALATED, n, escalation.at, moved | {"to_group": escalation.to_group, "reason": escalation.reason})
        for n, attempt in enumerate(gate.rejected_attempts, start=1):
            refused = {"via": attempt.via, "reviewer": attempt.reviewer, "error": attempt.error}
            add(AuditKind.DECISION_REFUSED, n, attempt.at, refused)
        decided = [*gate.approvals, *gate.rejections]
    for n, action in enumerate(record.operator_actions, start=1):
        add(
            AuditKind.OPERATOR_ACTION,
            n,
            action.at,
            {
                "action": action.action,
                "operator": action.operator,
                "reason": action.reason,
                "result": action.result,
                "identity": action.identity.model_dump(mode="json") if action.identity is not None else None,
            },
        )
    if record.decision not in decided:
        decided.append(record.decision)
    for n, decision in enumerate(sorted(decided, key=lambda d: d.at), start=1):
        kind = (
            AuditKind.TIMED_OUT
            if decision.via == "timeout"
            else AuditKind.CANCELLED
            if decision.outcome == "cancelled"
            else AuditKind.DECISION_ACCEPTED
        )
        body: dict[str, Any] = {
            "outcome": decision.outcome,
            "decided_by": decision.decided_by,
            "reason": decision.reason,
            "via": decision.via,
            "level": decision.level + 1,
            "group": decision.group,
            "identity": decision.identity.model_dump(mode="json") if decision.identity is not None else None,
            "acting_for": decision.acting_for,
            "directory_version": decision.directory_version,
        }
        if decision == record.decision:
            body["activates"] = activates
        add(kind, n, decision.at, body)
    return events


# -- operators ------------------------------------------------------------------------------------------


def change_operator_problem(
    action: OperatorAction,
    *,
    state: ChangeState,
    proposer: str | None,
    operators: list[str] | None,
    verified: bool,
    kept: int,
    directory_version: str | None,
    now: datetime,
) -> str | None:
    """Why this operator action cannot be taken on a change now, or None: cancel and note only; not by the
    proposer; in verified mode only with the directory's operator role for the policy's gate (`operators`,
    as last read; the handler reads them again)."""
    if state == ChangeState.REFUSED:
        return "this start was refused and is not a policy change"
    if action.action not in (OperatorActionKind.CANCEL, OperatorActionKind.NOTE):
        return f"a policy change takes cancel or note, not {action.action.value}: its owners decide it (hitl policy review)"
    if proposer is None:
        return "the change is starting; try again in a moment"
    if problem := conflict_of(
        action.operator, requester=proposer, subject=None, delegations=[], now=now, doing="operate", proposal=True
    ):
        return problem
    if verified and operators is not None and action.operator not in operators:
        return (
            f"{action.operator} has no operator role for this policy's gate in the directory "
            f"(version {directory_version or 'none loaded'}); an administrator grants it in the directory file"
        )
    # a note stays possible while recording (the record activity is what may be stuck)
    if state not in (ChangeState.PREPARING, ChangeState.WAITING) and (
        state != ChangeState.RECORDING or action.action == OperatorActionKind.CANCEL
    ):
        return f"the change is already {state.value}"
    if action.action != OperatorActionKind.CANCEL and kept >= MAX_OPERATOR_ACTIONS:
        return f"this change already keeps {MAX_OPERATOR_ACTIONS} operator actions, the most it takes; only cancel is possible"
    return None


# -- continue-as-new -------------------------------------------------------------------------------------


class ChangeCarryOver(BaseModel):
    """A waiting change's whole state, handed to its next run when it continues as new. The next run
    trusts it only as the continuation of this same change (Temporal sets `continued_run_id`, which
    no starter can, and the IDs must match)."""

    carried_over: bool = True
    workflow_id: str
    first_execution_run_id: str
    request: PolicyChangeRequest
    proposer_identity: Identity
    brief: ChangeBrief
    gate: GateState
    early: list[RejectedAttempt] = Field(default_factory=list)
    operator_actions: list[OperatorRecord] = Field(default_factory=list)
    trust: TrustSnapshot | None = None
    keys_refreshed_at: datetime | None = None
    opened_at: datetime
