"""The decision trace: the record of who decided what, on which evidence, under which policy.

Shaped like the seed document's `decision_trace` block (name, entities, inputs, human_gate),
extended with everything an auditor or the next similar case needs. It is written once per case
to PostgreSQL and becomes a precedent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from gates.audit_trail import AuditMark
from gates.bounds import MAX_CASE_PAYLOAD_BYTES
from gates.brief import Proposal, ReviewerQuestion
from gates.cases import CaseKind
from gates.evidence import ContextBundle
from gates.fit import fit_json
from gates.gate import (
    AcceptedDecision,
    Escalation,
    GateState,
    Identity,
    OperatorRecord,
    RejectedAttempt,
    Reminder,
)
from gates.info_request import InfoRequest
from gates.policy import Finding, Policy, PolicyEvaluation
from gates.precedent import Precedent, PrecedentFeatures
from gates.quorum import Quorum


class CaseState(StrEnum):
    GATHERING = "gathering"
    WAITING = "waiting"
    RECORDING = "recording"
    DECIDED = "decided"
    REFUSED = "refused"  # the start was refused (not its own ID, a bad payload, options it cannot honour)
    AWAITING_INFO = "awaiting_info"  # a reviewer asked a question; the case waits for its answer


class _OmitsEmptyInfoRounds(BaseModel):
    """Leaves `info_rounds` (and an open `info_request`) out of the JSON while empty: traces and
    carried-over states of cases that never waited for an answer keep their shape and size."""

    _info_fields: ClassVar[tuple[str, ...]] = ("info_rounds", "info_request")

    @model_serializer(mode="wrap")
    def _omit_empty_info(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self._info_fields:
            if name in data and data[name] in (None, []):
                del data[name]
        return data


class AgentNote(BaseModel):
    """What the optional agent summarizer advised, or why it was not used."""

    used: bool
    advice: dict[str, Any] | None = None
    error: str | None = None


class CaseSummary(BaseModel):
    """Output of the summarize step: the deterministic brief and proposal, plus optional agent advice."""

    brief: str
    proposal: Proposal
    agent: AgentNote
    advice_pending: bool = Field(default=False, description="An agent is configured: ask it through `advise_case`")


class DecisionTrace(_OmitsEmptyInfoRounds):
    decision_trace: str = Field(description="Trace name, e.g. renewal_discount_exception")
    entities: dict[str, str] = Field(description="account, renewal, policy, ...")
    inputs: list[str] = Field(description="Each source and item consulted, e.g. 'crm: enterprise_arr'")
    human_gate: str | None = Field(description="finance / ops / security; None when policy decided alone")
    case_id: str
    business_key: str
    workflow_id: str
    run_id: str
    otel_trace_id: str | None = None
    request: dict[str, Any]
    brief: str
    findings: list[Finding]
    reason_codes: list[str]
    proposal: Proposal
    agent: AgentNote
    precedent_headline: str
    precedents_cited: list[str]
    features: PrecedentFeatures
    outcome: str
    decided_by: str
    decided_via: str
    reason: str
    decided_level: int | None
    rounds: list[AcceptedDecision] = Field(default_factory=list, description="request_info decisions before the final one")
    questions: list[ReviewerQuestion] = Field(default_factory=list)
    reminders: list[Reminder] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    rejected_attempts: list[RejectedAttempt] = Field(default_factory=list)
    operator_actions: list[OperatorRecord] = Field(default_factory=list)
    opened_at: datetime
    gate_opened_at: datetime | None
    decided_at: datetime
    facts: dict[str, Any] = Field(
        default_factory=dict,
        description="Every fact the last evaluation could test (`hitl policy whatif` re-evaluates them); empty in older traces",
    )
    trimmed: list[str] = Field(
        default_factory=list, description="What was cut to fit the record under Temporal's payload limit (gates/fit.py)"
    )
    # Since the trust patch: who decided, proven how, in whose seat, on which evidence and directory.
    identity: Literal["verified", "asserted"] | None = Field(default=None, description="How the case knew who acted")
    decided_identity: Identity | None = None
    acting_for: str | None = Field(default=None, description="The delegator, when a delegate decided")
    delegation: str | None = None
    evidence_digest: str | None = None
    directory_version: str | None = None
    excluded: dict[str, str] = Field(default_factory=dict, description="Routing explained: who could not decide, and why")
    approvals: list[AcceptedDecision] = Field(default_factory=list, description="Every approval toward a quorum")
    rejections: list[AcceptedDecision] = Field(default_factory=list, description="Rejections that did not end the case alone")
    info_rounds: list[InfoRequest] = Field(
        default_factory=list, description="Every request_info question and its answer (or none); left out when empty"
    )


class CaseCarryOver(_OmitsEmptyInfoRounds):
    """A waiting case's whole state, handed to its next run when it continues as new.

    The next run trusts it only as the continuation of this same case (Temporal sets
    `continued_run_id`, which no starter can, and the IDs below must match)."""

    carried_over: Literal[True] = True
    workflow_id: str
    first_execution_run_id: str
    runs: int = Field(description="Runs of this case before the next one")
    kind: CaseKind
    request: dict[str, Any]
    started_at: datetime
    policy: Policy
    context: ContextBundle
    evaluation: PolicyEvaluation
    precedents: list[Precedent]
    headline: str | None
    summary: CaseSummary
    tags: list[str]
    gate: GateState
    rounds: list[AcceptedDecision]
    questions: list[ReviewerQuestion]
    early_attempts: list[RejectedAttempt]
    attempts_received: int
    operator_actions: list[OperatorRecord]
    trimmed: list[str] = Field(default_factory=list)
    trusted: bool = Field(default=False, description="Since the trust patch; the next run resolves the issuers' keys again")
    audit_mark: AuditMark = Field(default_factory=AuditMark, description="How much of the case its audit log holds")
    # Since request_info waits for the answer: every round, the open one (outcome `waiting`) last.
    info_rounds: list[InfoRequest] = Field(default_factory=list)
    agent_configured: bool | None = Field(
        default=None, description="Whether an agent advises on briefs, as read when the case opened; None: not read"
    )


# Room kept beside a fitted record for the notes of what was cut (added after fitting): at most
# twenty notes and a count of the rest (gates/fit.py).
TRIMMED_NOTES_RESERVE_BYTES = 4096


def fitted_trace(trace: DecisionTrace) -> DecisionTrace:
    """The trace under the payload limit, with what was cut named in `trimmed` (gates/fit.py):
    who decided what stays whole; free texts are shortened first, then old attempts dropped."""
    fitted, notes = fit_json(
        trace.model_dump(mode="json"),
        MAX_CASE_PAYLOAD_BYTES - TRIMMED_NOTES_RESERVE_BYTES,
        protect=("entities", "case_id", "workflow_id", "run_id", "outcome", "decided_by", "features", "decided_via"),
        droppable=("rejected_attempts", "operator_actions", "reminders"),
    )
    if not notes:
        return trace  # it fits as it is (nearly always)
    fitted["trimmed"] = list(fitted.get("trimmed") or []) + notes
    return DecisionTrace.model_validate(fitted)


def fitted_carry_over(state: CaseCarryOver) -> CaseCarryOver:
    """The carried-over state under the payload limit; what the case is (its request, policy and
    evaluation) is never cut, and each cut is named in `trimmed` for the trace."""
    fitted, notes = fit_json(
        state.model_dump(mode="json"),
        MAX_CASE_PAYLOAD_BYTES - TRIMMED_NOTES_RESERVE_BYTES,
        protect=("request", "policy", "evaluation", "workflow_id", "first_execution_run_id", "kind"),
        droppable=("rejected_attempts", "early_attempts", "reminders"),
    )
    if not notes:
        return state
    fitted["trimmed"] = list(fitted.get("trimmed") or []) + [f"run {state.runs}: {n}" for n in notes]
    return CaseCarryOver.model_validate(fitted)


class GateView(BaseModel):
    gate: str
    title: str
    level: int
    level_title: str
    group: str
    eligible_groups: list[str]
    may_decide: list[str]
    opened_at: datetime
    remind_at: datetime
    next_deadline: datetime
    deadline_action: str
    rejected_attempts: list[RejectedAttempt]
    reminders: list[Reminder]
    escalations: list[Escalation]
    excluded: dict[str, str] = Field(default_factory=dict, description="Routing explained: who may not decide now, and why")
    digest: str | None = Field(default=None, description="The evidence digest a decision names (`hitl show` prints it)")
    identity: Literal["verified", "asserted"] | None = None
    directory_version: str | None = None
    quorum: Quorum | None = None
    approvals: list[str] = Field(default_factory=list, description="Who has approved toward the quorum")
    still_needed: list[str] = Field(default_factory=list, description="What the quorum still needs")
    routing: list[str] = Field(default_factory=list, description="Why each level from the current one has its group")


class CaseView(BaseModel):
    """What `hitl show`, the UI's current details and services see of a case."""

    case_id: str
    kind: str
    state: CaseState
    ask: str
    requester: str
    policy: str
    brief: str | None
    findings: list[Finding]
    reason_codes: list[str]
    proposal: Proposal | None
    precedent_headline: str | None
    precedents: list[Precedent]
    gate: GateView | None
    decision: AcceptedDecision | None
    rounds: list[AcceptedDecision]
    rejected_attempts: list[RejectedAttempt]
    questions: list[ReviewerQuestion]
    operator_actions: list[OperatorRecord] = Field(default_factory=list)
    info_request: InfoRequest | None = Field(default=None, description="The open question the case waits on")
    info_rounds: list[InfoRequest] = Field(default_factory=list, description="Every question round, answered or not")


class CaseResult(BaseModel):
    """The workflow's result."""

    case_id: str
    outcome: str
    decided_by: str
    decided_via: str
    reason: str
    trace_id: int


def gate_view(gate: GateState, now: datetime | None = None) -> GateView:
    """The gate as reviewers see it; `now` (trusted gates) for who may decide through a delegation now."""
    level = gate.definition.levels[gate.level]
    at = now if now is not None else gate.level_started_at
    return GateView(
        gate=gate.definition.name,
        title=gate.definition.title,
        level=gate.level,
        level_title=level.title,
        group=gate.current_group,
        eligible_groups=gate.eligible_groups(),
        may_decide=gate.may_decide(now if gate.trusted else None),
        opened_at=gate.opened_at,
        remind_at=gate.remind_at(),
        next_deadline=gate.escalate_at(),
        deadline_action="times out" if gate.is_last_level() else f"escalates to {gate.definition.levels[gate.level + 1].title}",
        rejected_attempts=gate.rejected_attempts,
        reminders=gate.reminders,
        escalations=gate.escalations,
        excluded=gate.excluded(at) if gate.trusted else {},
        digest=gate.digest,
        identity=gate.identity_mode if gate.trusted else None,
        directory_version=gate.directory_version,
        quorum=gate.quorum,
        approvals=gate.approvers(),
        still_needed=gate.still_needed(),
        routing=gate.routing() if gate.trusted else [],
    )


__all__ = [
    "AgentNote",
    "CaseCarryOver",
    "CaseResult",
    "CaseState",
    "CaseSummary",
    "CaseView",
    "DecisionTrace",
    "GateView",
    "PolicyEvaluation",
    "fitted_carry_over",
    "fitted_trace",
    "gate_view",
]
