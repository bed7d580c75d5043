"""What the workflows send to their activities and get back: one pydantic model per input and output.

Pure (pydantic only), so the workflow code and the tests can import them without the I/O modules
that implement the activities (asyncpg, httpx). These payloads are in every stored history: a field
added needs a default, and a field renamed or removed breaks replay (tests/unit/test_replay.py).
The domain models that activities also take or return stay with their domain: `SourceRequest` and
`ConnectorResult` (gates.evidence), `Policy` (gates.policy), `CaseSummary` and `AgentNote`
(gates.trace, of which the decision trace is made).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from gates.audit import AuditEvent
from gates.brief import ReviewerQuestion
from gates.cases import CaseKind
from gates.duties import Delegation  # the gate's own type (gates.gate keeps them); the roster carries them
from gates.evidence import ConnectorResult, ContextBundle, SourceRequest
from gates.gate import OperatorRecord, RejectedAttempt
from gates.identity import TrustRequest, TrustSnapshot
from gates.policy import Policy, PolicyEvaluation
from gates.precedent import Precedent
from gates.trace import DecisionTrace

# -- policy, precedents, brief (activities/case_activities.py) ---------------------------------


class ResolvePolicyInput(BaseModel):
    kind: CaseKind


class PrecedentQuery(BaseModel):
    kind: CaseKind
    amount_band: str
    tags: list[str]
    exclude_case_id: str | None = Field(
        default=None,
        description="Older cases passed their own ID. A case's trace is written only once it is decided, after its "
        "last lookup, so since HARDENED_PATCH none is excluded: an earlier decision under the same case ID "
        "(the same business key) is a precedent like any other.",
    )
    limit: int = 10


class PrecedentMatches(BaseModel):
    precedents: list[Precedent]
    headline: str


class SummarizeInput(BaseModel):
    kind: CaseKind
    ask: str
    requester: str
    justification: str
    context: ContextBundle
    evaluation: PolicyEvaluation
    precedents: list[Precedent]
    headline: str
    questions: list[ReviewerQuestion] = Field(description="The questions the brief repeats (the latest few)")
    earlier_questions: int = Field(default=0, description="Questions asked before those, named only by count")
    advise_inline: bool = Field(
        default=True,
        description="Ask the agent inside this activity (histories from before `advise_case`); "
        "False: only say whether one is configured, and the workflow asks it through `advise_case`.",
    )


class AdviseInput(BaseModel):
    brief: str
    evidence_labels: list[str]
    policy_findings: list[str]

    @classmethod
    def of(cls, brief: str, context: ContextBundle, evaluation: PolicyEvaluation) -> AdviseInput:
        """The agent's question about a written brief: the brief and the labels it may cite."""
        return cls(
            brief=brief,
            evidence_labels=[e.label for e in context.items],
            policy_findings=[f"{f.rule_id}: {f.detail}" for f in evaluation.findings],
        )


# -- recording (activities/case_activities.py) ---------------------------------------------------


class RecordDecisionInput(BaseModel):
    decision_key: str = Field(description="Chosen by the workflow; the same key never writes twice")
    trace: DecisionTrace
    audit: list[AuditEvent] = Field(
        default_factory=list, description="Gate events the case's audit log does not hold yet (gates/audit_trail.py)"
    )


class RecordReceipt(BaseModel):
    trace_id: int
    newly_recorded: bool
    otel_trace_id: str | None


class LateAdditions(BaseModel):
    """What reached the case while its decision was being recorded (refused decisions, operator
    notes), added to its trace: the full lists, so writing them twice changes nothing."""

    decision_key: str
    rejected_attempts: list[RejectedAttempt] = Field(description="All of the case's kept attempts, oldest first")
    operator_actions: list[OperatorRecord] = Field(description="All of the case's operator actions")
    audit: list[AuditEvent] = Field(
        default_factory=list, description="Gate events the case's audit log does not hold yet (gates/audit_trail.py)"
    )


# -- the reviewer directory (activities/directory.py) -------------------------------------------


class RosterRequest(BaseModel):
    groups: list[str] = Field(description="Reviewer group ids, e.g. ['finance_reviewers', 'finance_directors']")
    people: list[str] = Field(
        default_factory=list, description="Others whose delegations matter too, e.g. the requester and the subject"
    )
    gate: str | None = Field(default=None, description="The gate's name, for operator roles and the groups serving it")


class Roster(BaseModel):
    """Who may act at a gate, from the directory in force. Histories hold older, smaller rosters:
    every field after `members` has a default."""

    members: dict[str, list[str]] = Field(description="Active members of each asked group; an unknown group has none")
    people: dict[str, str] = Field(default_factory=dict, description="Display name of every person the roster names")
    directory_version: str | None = Field(
        default=None, description="The directory version read; None: no directory file loaded (the world_* tables)"
    )
    inactive: dict[str, list[str]] = Field(
        default_factory=dict, description="Inactive members of each asked group that has any (routing explained)"
    )
    delegations: list[Delegation] = Field(
        default_factory=list,
        description="Delegations not yet ended whose delegator or delegate is in an asked group or in the request's people",
    )
    operators: list[str] = Field(default_factory=list, description="Active people with an operator role for the gate")
    serving: dict[str, list[int]] = Field(
        default_factory=dict, description="Every group serving the gate, with the levels (0-based) it may serve"
    )
    active_people: list[str] | None = Field(
        default=None,
        description="Of the request's `people`, those active in the directory; None: not reported (no directory file)",
    )


# -- notifications (activities/notify.py) ---------------------------------------------------------

NotificationKind = Literal[
    "reminder", "escalation", "timeout", "info_requested", "info_reminder", "info_unanswered", "decided"
]


class Quote(BaseModel):
    """Someone's own words a notification carries (a question, a reason): every channel shows them
    quoted as that person's, never formatted, so they cannot pass for the system's."""

    person: str = Field(description="Who wrote them (a person id)")
    label: str = Field(description="What they are, e.g. 'question', 'reason', 'answer'")
    text: str


class Notification(BaseModel):
    """One message to a gate's reviewers. `notification_key` makes sending it idempotent."""

    notification_key: str = Field(
        min_length=1, description="Chosen by the workflow, e.g. '<case_id>/<run>/reminder/level-0/1'"
    )
    case_id: str
    kind: NotificationKind
    gate: str = Field(description="finance / ops / security")
    level: int = Field(description="Escalation level of the gate, 0 for the first reviewers")
    reviewer_group: str
    recipients: list[str] = Field(description="Reviewer ids reminded by this notification")
    message: str = Field(description="Short Markdown text for the reviewers")
    case_url: str | None = Field(default=None, description="Where a reviewer opens the case")
    audit: list[AuditEvent] = Field(
        default_factory=list, description="Gate events the case's audit log does not hold yet (gates/audit_trail.py)"
    )
    # Since the email and Slack channels (activities/channels/); None or empty in older histories.
    ask: str | None = Field(default=None, description="What the case asks for (the kind's ask line), for subjects")
    deadline: datetime | None = Field(default=None, description="When the current level escalates or times out")
    quotes: list[Quote] = Field(default_factory=list, description="People's own words, shown quoted as theirs")
    # Since request_info waits for the answer (workflows/info_wait.py).
    asked: list[str] = Field(default_factory=list, description="info_*: the person asked a reviewer's question")
    requester: str | None = Field(default=None, description="decided: who asked for the case, told its outcome")


class NotificationReceipt(BaseModel):
    notification_id: int
    channels: list[str] = Field(description="['outbox'], then each configured channel: 'email', 'slack'")
    delivered: bool
    error: str | None = None


# -- the start's user metadata (activities/start_metadata.py) -----------------------------------


class StartMetadataRequest(BaseModel):
    workflow_id: str
    run_id: str


class StartMetadata(BaseModel):
    static_summary: str | None = None
    static_details: str | None = None


# -- combined reads (since COMBINED_PATCH, workflows/case.py): one local activity where there were two


class OpenCaseRequest(BaseModel):
    """What a case reads as it starts: its start's UI text (to refuse a start that poses) and its policy."""

    start: StartMetadataRequest
    policy: ResolvePolicyInput


class CaseOpening(BaseModel):
    metadata: StartMetadata
    policy: Policy
    agent_configured: bool | None = Field(
        default=None,
        description="Whether the worker asks an agent for advice on each brief (since LOCAL_GATHERS_PATCH the "
        "workflow writes the brief itself and needs to know); None in older histories",
    )


class OpenAndGatherRequest(BaseModel):
    """A case's opening read and its first round of evidence in one local activity (since
    LOCAL_GATHERS_PATCH): the sources depend on the request alone."""

    opening: OpenCaseRequest
    sources: list[SourceRequest]


class SourceAttempt(BaseModel):
    """One source as the opening read asked it: its answer, or why the case asks it again as an activity."""

    source: str
    result: ConnectorResult | None = None
    error: str | None = None


class OpenedAndGathered(BaseModel):
    opening: CaseOpening
    gathered: list[SourceAttempt]


class GateReadRequest(BaseModel):
    """What a gate reads as it first opens: who sits in its groups, and the issuers' keys of now."""

    roster: RosterRequest
    trust: TrustRequest = Field(default_factory=TrustRequest)
    audit: list[AuditEvent] = Field(
        default_factory=list, description="Gate events the case's audit log does not hold yet (gates/audit_trail.py)"
    )


class GateReads(BaseModel):
    roster: Roster
    trust: TrustSnapshot


class PrecedentsAndGateRequest(BaseModel):
    """A case's precedents and its gate's reads in one local activity (since LOCAL_GATHERS_PATCH): the
    roster of every group the policy may ask for, since the evaluation that says which comes after."""

    precedents: PrecedentQuery
    gate: GateReadRequest


class PrecedentsAndGate(BaseModel):
    precedents: PrecedentMatches
    gate: GateReads | None = Field(description="None: the gate's reads failed; the gate reads them as it opens")


# -- the `hitl check` probe (activities/stack_check.py) ------------------------------------------


class StackCheckInput(BaseModel):
    check_id: str


class StackCheckResult(BaseModel):
    check_id: str
    worker_identity: str
    row_id: int


# -- scheduled audit checkpoints (activities/audit_checkpoints.py) -------------------------------


class CheckpointRequest(BaseModel):
    """What a scheduled checkpoint asks: nothing yet (the key and the folder are the worker's settings)."""


class CheckpointReceipt(BaseModel):
    signed: bool = Field(description="False when the log is empty: nothing to sign yet")
    global_seq: int | None = None
    row_hash: str | None = None
    key_id: str | None = None
    path: str | None = Field(default=None, description="Where the checkpoint file was written")
    rows_checked: int = 0
