"""In-memory stand-ins for every activity the case workflows call, registered under the same names.

The workflow cannot tell them from the real ones: each takes the real input model and returns the
real result model. What the real activities read from PostgreSQL (evidence, the reviewer directory,
precedents) is a small demo world held in memory, and what they write (the decision trace, the
reviewer notifications) is kept here for the test to read. Policies are the bundled ones, and the
brief is written by the same pure functions the real `summarize_case` uses, so a case walks the
same path it walks on the real stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError

from gates.audit import AuditEvent
from gates.brief import precedent_headline
from gates.cases import CaseKind
from gates.composition import written_brief
from gates.duties import Delegation
from gates.evidence import ConnectorResult, EvidenceItem, MissingContext, SourceRequest
from gates.identity import TrustRequest, TrustSnapshot
from gates.messages import (
    AdviseInput,
    CaseOpening,
    GateReadRequest,
    GateReads,
    LateAdditions,
    Notification,
    NotificationReceipt,
    OpenAndGatherRequest,
    OpenCaseRequest,
    OpenedAndGathered,
    PrecedentMatches,
    PrecedentQuery,
    PrecedentsAndGate,
    PrecedentsAndGateRequest,
    RecordDecisionInput,
    RecordReceipt,
    ResolvePolicyInput,
    Roster,
    RosterRequest,
    SourceAttempt,
    StartMetadata,
    StartMetadataRequest,
    SummarizeInput,
)
from gates.policy import Policy
from gates.precedent import Precedent
from gates.trace import AgentNote, CaseSummary, DecisionTrace
from tests.unit.factories import policy

# What the systems of record answer, per source and item, whatever the lookup key: one world in
# which every example case (demo/examples.py) takes the path the README describes.
DEMO_EVIDENCE: dict[str, dict[str, Any]] = {
    "crm": {
        "enterprise_arr": 1_200_000,
        "tier": "enterprise",
        "contract_terms": "3-year MSA renewed annually; net 45",
        "account_owner": "ae_sam",
        "open_incidents": 1,
        "service_impact": True,
    },
    "chat": {
        "vp_approval_thread": {
            "channel": "#deal-acme",
            "title": "Acme renewal: discount after the EU outage",
            "messages": 6,
            "participants": ["ae_sam", "vp_sales_lee"],
            "approval_stated_by": "vp_sales_lee",
            "customer_commitment": "We will honour 28% if they sign the 3-year term",
            "last_message_at": "2026-08-28T14:05:00Z",
        }
    },
    "vendor_master": {"vendor_status": "approved", "risk_rating": "low", "preferred": True, "ytd_spend_usd": 42_000.0},
    "finance": {"budget_total_usd": 900_000.0, "budget_remaining_usd": 480_000.0, "budget_owner": "vp_ops_raj"},
    "procurement": {"prior_purchases": 3, "largest_prior_purchase_usd": 60_000.0},
    "iam": {
        "subject_active": True,
        "subject_manager": "eng_mgr_priya",
        "current_entitlements": ["prod_db:read_replica"],
        "entitlement_owners": ["sec_lead_viktor"],
        "prior_exceptions": 0,
    },
}

# How long a stalled source's next attempt waits: the case stays gathering for the whole test.
STALLED_RETRY = timedelta(hours=1)

# The reviewer groups the bundled policies name, with the demo world's active members.
DEMO_ROSTER: dict[str, list[str]] = {
    "finance_reviewers": ["fin_rev_ana", "fin_rev_ben"],
    "finance_directors": ["fin_dir_lina", "fin_dir_omar"],
    "cfo_office": ["cfo_jane", "fin_cos_raf"],
    "ops_reviewers": ["ops_rev_kim", "ops_rev_tom"],
    "ops_vp_approvers": ["vp_ops_raj", "vp_proc_dana"],
    "coo_office": ["coo_mia", "ops_cos_ivy"],
    "security_reviewers": ["sec_rev_eli", "sec_rev_zoe"],
    "security_leads": ["sec_lead_noor", "sec_lead_viktor"],
    "ciso_office": ["ciso_sam", "sec_cos_ada"],
}


def service_impact_precedents(count: int = 3) -> list[Precedent]:
    """Approved renewal discounts in the 20-30% band after an outage: with three of them, policy lets
    a Finance reviewer decide the Acme example instead of a director (DISC-3's precedent relief)."""
    return [
        Precedent(
            case_id=f"renewal_discount_exception:past_account_{n}/fy25",
            kind=CaseKind.RENEWAL,
            policy="discount_policy_v3_2",
            reason_codes=["threshold_breach"],
            amount_band="discount_20_30",
            tags=["service_impact", "enterprise"],
            outcome="approve",
            decided_by="fin_dir_omar",
            reason=f"service-impact credit after outage {n}",
            decided_at=datetime(2025, 3 + n, 1, tzinfo=UTC),
        )
        for n in range(count)
    ]


@dataclass
class FakeWorld:
    """The fake activities and the in-memory world they read and write.

    Change the world before starting a case (`evidence`, `roster`, `precedents`, `unavailable`,
    `stalled`, `agent_advice`); read what the case did afterwards (`notifications`, `traces`, `calls`,
    `audit`)."""

    evidence: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: dict(items) for s, items in DEMO_EVIDENCE.items()})
    roster: dict[str, list[str]] = field(default_factory=lambda: {g: list(m) for g, m in DEMO_ROSTER.items()})
    precedents: list[Precedent] = field(default_factory=service_impact_precedents)
    unavailable: dict[str, str] = field(default_factory=dict)  # source -> why it fails for good (no retry helps)
    stalled: set[str] = field(default_factory=set)  # sources that fail and are retried an hour later, for ever
    agent_advice: dict[str, Any] | None = None  # set: an agent is configured and advises this
    notifications: list[Notification] = field(default_factory=list)
    traces: dict[str, DecisionTrace] = field(default_factory=dict)  # decision key -> the trace as stored
    calls: list[str] = field(default_factory=list)  # activity names, in the order they were called
    audit: dict[str, AuditEvent] = field(default_factory=dict)  # event key -> the event, kept once, in arrival order
    # who may act: the issuers' keys (asserted: none needed) and the directory's delegations and roles
    trust: TrustSnapshot = field(default_factory=lambda: TrustSnapshot(mode="asserted"))
    issuer_down: str | None = None  # set: fetching the issuers' keys fails for good, with this reason
    delegations: list[Delegation] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    serving: dict[str, list[int]] = field(default_factory=dict)
    directory_version: str | None = None
    policies: dict[CaseKind, Policy] = field(default_factory=dict)  # instead of the bundled policy of a kind

    def activities(self) -> list:
        """Everything to register on the worker."""
        return [
            self.read_start_metadata,
            self.resolve_policy,
            self.find_precedents,
            self.summarize_case,
            self.advise_case,
            self.load_reviewer_roster,
            self.resolve_trust,
            self.open_case,
            self.read_gate,
            self.open_case_and_gather,
            self.read_precedents_and_gate,
            self.gather_crm,
            self.gather_chat,
            self.gather_vendor_master,
            self.gather_finance,
            self.gather_procurement,
            self.gather_iam,
            self.notify_reviewers,
            self.record_decision,
            self.record_late_additions,
        ]

    # -- reading what the case did ----------------------------------------------------------------

    def trace(self, handle: WorkflowHandle) -> DecisionTrace:
        """The one trace this case recorded (its decision key is `<case id>#<first run id>`)."""
        key = f"{handle.id}#{handle.first_execution_run_id or handle.result_run_id}"
        assert key in self.traces, f"no trace recorded under {key}; recorded: {sorted(self.traces)}"
        return self.traces[key]

    # -- reads --------------------------------------------------------------------------------------

    @activity.defn(name="read_start_metadata")
    async def read_start_metadata(self, request: StartMetadataRequest) -> StartMetadata:
        """The start carried no UI text: accepted like the case's own text, which `CaseClient` sends."""
        self.calls.append("read_start_metadata")
        return StartMetadata()

    @activity.defn(name="resolve_policy")
    async def resolve_policy(self, request: ResolvePolicyInput) -> Policy:
        self.calls.append("resolve_policy")
        return self.policies.get(request.kind) or policy(request.kind)

    @activity.defn(name="find_precedents")
    async def find_precedents(self, query: PrecedentQuery) -> PrecedentMatches:
        """The real query's filter: same kind and band, sharing a tag (or any, for a case with none)."""
        self.calls.append("find_precedents")
        found = [
            p
            for p in self.precedents
            if p.kind == query.kind
            and p.amount_band == query.amount_band
            and p.case_id != query.exclude_case_id
            and (not query.tags or set(p.tags) & set(query.tags))
        ][: query.limit]
        return PrecedentMatches(precedents=found, headline=precedent_headline(query.kind, query.tags, found))

    @activity.defn(name="summarize_case")
    async def summarize_case(self, case: SummarizeInput) -> CaseSummary:
        """The deterministic brief and proposal, as the real activity writes them."""
        self.calls.append("summarize_case")
        brief, proposal = written_brief(case)
        if case.advise_inline:
            return CaseSummary(brief=brief, proposal=proposal, agent=self._advice())
        pending = self.agent_advice is not None
        return CaseSummary(brief=brief, proposal=proposal, agent=AgentNote(used=False), advice_pending=pending)

    @activity.defn(name="advise_case")
    async def advise_case(self, question: AdviseInput) -> AgentNote:
        self.calls.append("advise_case")
        return self._advice()

    def _advice(self) -> AgentNote:
        return AgentNote(used=True, advice=self.agent_advice) if self.agent_advice is not None else AgentNote(used=False)

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        self.calls.append("load_reviewer_roster")
        groups = list(dict.fromkeys(request.groups))
        return Roster(
            members={group: list(self.roster.get(group, [])) for group in groups},
            directory_version=self.directory_version,
            delegations=list(self.delegations),
            operators=list(self.operators),
            serving=dict(self.serving),
        )

    @activity.defn(name="resolve_trust")
    async def resolve_trust(self, request: TrustRequest) -> TrustSnapshot:
        self.calls.append("resolve_trust")
        if self.issuer_down is not None:
            raise ApplicationError(self.issuer_down, type="IssuerUnavailable", non_retryable=True)
        return self.trust

    @activity.defn(name="open_case")
    async def open_case(self, request: OpenCaseRequest) -> CaseOpening:
        """Both halves, as the real one reads them (their names are in `calls`)."""
        metadata = await self.read_start_metadata(request.start)
        configured = self.agent_advice is not None
        return CaseOpening(metadata=metadata, policy=await self.resolve_policy(request.policy), agent_configured=configured)

    @activity.defn(name="read_gate")
    async def read_gate(self, request: GateReadRequest) -> GateReads:
        self._keep_audit(request.audit)
        return GateReads(roster=await self.load_reviewer_roster(request.roster), trust=await self.resolve_trust(request.trust))

    @activity.defn(name="open_case_and_gather")
    async def open_case_and_gather(self, request: OpenAndGatherRequest) -> OpenedAndGathered:
        """The opening and one attempt at each source; a failing source is reported, as the real one does."""
        gathered = []
        for source in request.sources:
            try:
                gathered.append(SourceAttempt(source=source.source, result=await self._gather(source.source, source)))
            except ApplicationError as failed:
                gathered.append(SourceAttempt(source=source.source, error=str(failed)))
        return OpenedAndGathered(opening=await self.open_case(request.opening), gathered=gathered)

    @activity.defn(name="read_precedents_and_gate")
    async def read_precedents_and_gate(self, request: PrecedentsAndGateRequest) -> PrecedentsAndGate:
        """The gate's half reported as None when it fails, as the real one does."""
        precedents = await self.find_precedents(request.precedents)
        try:
            return PrecedentsAndGate(precedents=precedents, gate=await self.read_gate(request.gate))
        except ApplicationError:
            return PrecedentsAndGate(precedents=precedents, gate=None)

    # -- the systems of record (one activity per source, as activities/gather.py) -------------------

    async def _gather(self, source: str, request: SourceRequest) -> ConnectorResult:
        self.calls.append(f"gather_{source}")
        if source in self.stalled:
            # Gathering stuck in retries. Not an attempt that never answers: the time-skipping server
            # stops skipping time for good once an activity it handed out goes unanswered.
            raise ApplicationError(f"{source} is not answering", type="TransientSourceError", next_retry_delay=STALLED_RETRY)
        if source in self.unavailable:
            raise ApplicationError(self.unavailable[source], type="SourceDown", non_retryable=True)
        known = self.evidence.get(source, {})
        record = f"{source}://{'/'.join(request.key.values())}"
        return ConnectorResult(
            source=source,
            items=[EvidenceItem(source=source, item=i, value=known[i], ref=f"{record}/{i}") for i in request.items if i in known],
            missing=[MissingContext(source=source, item=i, error="not found") for i in request.items if i not in known],
        )

    @activity.defn(name="gather_crm")
    async def gather_crm(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("crm", request)

    @activity.defn(name="gather_chat")
    async def gather_chat(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("chat", request)

    @activity.defn(name="gather_vendor_master")
    async def gather_vendor_master(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("vendor_master", request)

    @activity.defn(name="gather_finance")
    async def gather_finance(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("finance", request)

    @activity.defn(name="gather_procurement")
    async def gather_procurement(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("procurement", request)

    @activity.defn(name="gather_iam")
    async def gather_iam(self, request: SourceRequest) -> ConnectorResult:
        return await self._gather("iam", request)

    # -- writes -------------------------------------------------------------------------------------

    def _keep_audit(self, events: list[AuditEvent]) -> None:
        """Once per event key, as the real log keeps them (activities/store/audit.py)."""
        for event in events:
            self.audit.setdefault(event.event_key, event)

    @activity.defn(name="notify_reviewers")
    async def notify_reviewers(self, notification: Notification) -> NotificationReceipt:
        """Kept once per notification key, as the real outbox keeps it."""
        self.calls.append("notify_reviewers")
        self._keep_audit(notification.audit)
        keys = [n.notification_key for n in self.notifications]
        if notification.notification_key not in keys:
            self.notifications.append(notification)
            keys.append(notification.notification_key)
        outbox_id = keys.index(notification.notification_key) + 1
        return NotificationReceipt(notification_id=outbox_id, channels=["outbox"], delivered=True)

    @activity.defn(name="record_decision")
    async def record_decision(self, record: RecordDecisionInput) -> RecordReceipt:
        """Written once per decision key: a retry or a duplicate finds the first one."""
        self.calls.append("record_decision")
        self._keep_audit(record.audit)
        keys = list(self.traces)
        if record.decision_key in self.traces:
            return RecordReceipt(trace_id=keys.index(record.decision_key) + 1, newly_recorded=False, otel_trace_id=None)
        self.traces[record.decision_key] = record.trace
        return RecordReceipt(trace_id=len(keys) + 1, newly_recorded=True, otel_trace_id=None)

    @activity.defn(name="record_late_additions")
    async def record_late_additions(self, late: LateAdditions) -> None:
        """The trace's attempts and operator actions replaced by the case's full lists, as the real UPDATE does."""
        self.calls.append("record_late_additions")
        self._keep_audit(late.audit)
        if late.decision_key not in self.traces:
            raise ApplicationError(f"no decision trace with key {late.decision_key}", type="TraceMissing")
        self.traces[late.decision_key] = self.traces[late.decision_key].model_copy(
            update={"rejected_attempts": late.rejected_attempts, "operator_actions": late.operator_actions}
        )
