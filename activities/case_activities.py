"""Activities of the decision loop other than the connectors: policy, precedent, brief, record.

All I/O of a case lives here. Each activity takes one pydantic model and is idempotent:
reads are reads, and the one write (`record_decision`) is keyed by the workflow's decision key.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg
from opentelemetry import trace as otel_trace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent import (
    AgentSettings,
    AgentUnavailable,
    agent_configured,
    request_agent_advice,
)
from activities.notify import NotifyActivities, NotifySettings, decided_key
from activities.policy_files import ParsedByDigest, PolicyCache, bundled_policy_dir
from activities.store import audit as audit_log
from activities.store import policy_activations, traces
from activities.store import precedents as store_precedents
from gates.audit import AuditEvent, AuditKind
from gates.brief import precedent_headline
from gates.cases import CaseKind
from gates.composition import written_brief
from gates.messages import (
    AdviseInput,
    LateAdditions,
    PrecedentMatches,
    PrecedentQuery,
    RecordDecisionInput,
    RecordReceipt,
    ResolvePolicyInput,
    SummarizeInput,
)
from gates.policy import (
    Policy,
    PolicyError,
)
from gates.policy_activation import PolicyActivation
from gates.text import storable
from gates.trace import AgentNote, CaseSummary, DecisionTrace

log = logging.getLogger("hitl.activities")

# How much of a past decision's reason a precedent carries into a new case's brief and state.
PRECEDENT_REASON_CHARS = 500


class CaseActivitySettings(AgentSettings, NotifySettings, Protocol):
    """The part of `workers.config.Settings` these activities read (activities do not import workers)."""

    policy_dir: Path | None


def _storable_trace(trace: DecisionTrace) -> DecisionTrace:
    """The trace as is when PostgreSQL can store it (nearly always), else with NUL and unpaired
    surrogates replaced (`gates.text.storable`)."""
    try:
        if "\\u0000" not in trace.model_dump_json():
            return trace
    except ValueError:  # an unpaired surrogate cannot be encoded
        pass
    return DecisionTrace.model_validate(storable(trace.model_dump(mode="json")))


class CaseActivities:
    def __init__(self, pool: asyncpg.Pool, settings: CaseActivitySettings):
        self._pool = pool
        self._settings = settings
        self._policies = PolicyCache()
        self._notices = NotifyActivities(pool, settings)  # the requester's `decided` notification
        self._parsed = ParsedByDigest()

    def activities(self) -> list:
        return [
            self.resolve_policy,
            self.find_precedents,
            self.summarize_case,
            self.advise_case,
            self.record_decision,
            self.record_late_additions,
        ]

    @activity.defn(name="resolve_policy")
    async def resolve_policy(self, request: ResolvePolicyInput) -> Policy:
        """The kind's active policy version (policy_activations). Called once per case; the answer is
        kept in history, so a case keeps its version whatever is activated later.

        A kind with no activation yet activates the newest file of the policy directory first (the
        bootstrap, approved by nobody, recorded as such); after that, files are proposals only."""
        try:
            activation = await policy_activations.active_policy(self._pool, request.kind)
            if activation is None:
                activation = await self._bootstrap(request.kind)
            return self._parsed.get(activation.digest, activation.policy)
        except PolicyError as err:
            # A broken policy file is not fixed by retrying; operators see this message on the case.
            raise ApplicationError(str(err), type="PolicyError", non_retryable=True) from err

    async def _bootstrap(self, kind: CaseKind) -> PolicyActivation:
        directory = Path(self._settings.policy_dir) if self._settings.policy_dir else bundled_policy_dir()
        _, text = self._policies.texts(directory)[kind]
        return await policy_activations.activate_if_none(
            self._pool, policy_text=text, reason=f"initial activation: newest file in {directory} when no version was active"
        )

    @activity.defn(name="find_precedents")
    async def find_precedents(self, query: PrecedentQuery) -> PrecedentMatches:
        precedents = await store_precedents.find_precedents(
            self._pool,
            kind=query.kind,
            amount_band=query.amount_band,
            tags=query.tags,
            exclude_case_id=query.exclude_case_id,
            limit=query.limit,
            reason_chars=PRECEDENT_REASON_CHARS,
        )
        return PrecedentMatches(precedents=precedents, headline=precedent_headline(query.kind, query.tags, precedents))

    @activity.defn(name="summarize_case")
    async def summarize_case(self, case: SummarizeInput) -> CaseSummary:
        """The deterministic brief and proposal; the agent's advice beside it (never instead of it) when
        one is configured, asked here for older histories or flagged for `advise_case` otherwise."""
        brief, proposal = written_brief(case)
        if not case.advise_inline:
            return CaseSummary(
                brief=brief, proposal=proposal, agent=AgentNote(used=False), advice_pending=agent_configured(self._settings)
            )
        return CaseSummary(
            brief=brief, proposal=proposal, agent=await self.advise_case(AdviseInput.of(brief, case.context, case.evaluation))
        )

    def agent_configured(self) -> bool:
        """Whether `advise_case` would ask an agent (read with the case's opening since LOCAL_GATHERS_PATCH)."""
        return agent_configured(self._settings)

    @activity.defn(name="advise_case")
    async def advise_case(self, question: AdviseInput) -> AgentNote:
        """The optional agent's advice on a written brief; any failure is a note, never a failed case.

        A regular activity of its own because it calls an external service that can be slow."""
        if not agent_configured(self._settings):
            return AgentNote(used=False)
        try:
            advice = await request_agent_advice(
                self._settings,
                brief_markdown=question.brief,
                evidence_labels=question.evidence_labels,
                policy_findings=question.policy_findings,
            )
        except AgentUnavailable as err:
            log.warning("agent summarizer unavailable, using the deterministic brief: %s", err)
            return AgentNote(used=False, error=str(err))
        return AgentNote(used=True, advice=advice.model_dump())

    @activity.defn(name="record_decision")
    async def record_decision(self, record: RecordDecisionInput) -> RecordReceipt:
        """Write the run's trace once, and its precedent when a verified human decided: a retry of
        the same run finds the first row. A later run of a decided case ID (after a reset, or a re-run
        under the same ID) records its trace as a new row that supersedes the case's current one, whose
        precedent is retracted; the chain says so (trace_superseded). One truth per case: the newest.

        Whatever text reached the trace (connector answers, payload previews), it is made storable
        first: PostgreSQL's text and jsonb refuse NUL and unpaired surrogates, and a recorder that
        failed on content would retry forever with no trace written."""
        trace = _storable_trace(record.trace)
        span_context = otel_trace.get_current_span().get_span_context()
        if span_context.is_valid and trace.otel_trace_id is None:
            trace = trace.model_copy(update={"otel_trace_id": format(span_context.trace_id, "032x")})
        async with self._pool.acquire() as conn, conn.transaction():
            await traces.lock_case(conn, trace.case_id)
            existing = await traces.recorded_by_run(conn, record.decision_key, trace.run_id)
            if existing is not None:
                self._notices.deliver_soon(decided_key(record.decision_key))  # committed before: delivered yet?
                return RecordReceipt(trace_id=existing["id"], newly_recorded=False, otel_trace_id=existing["otel_trace_id"])
            previous = await traces.current_trace_of(conn, trace.case_id)
            if previous is not None and previous["decided_at"] > trace.decided_at:
                # a run that a reset ended, whose attempt still ran: the newer run's decision stays the truth
                raise ApplicationError(
                    f"{trace.case_id}: trace {previous['id']} records a later decision of this case than run {trace.run_id}'s; "
                    "not recorded (this run was reset or replaced)",
                    type="TraceSuperseded",
                    non_retryable=True,
                )
            trace_id = await traces.insert_trace(
                conn, record.decision_key, trace, supersedes=None if previous is None else previous["id"]
            )
            assert trace_id is not None  # under the case's lock, and this run had no row
            # the case's gate events and the trace's digest, in the audit log with the trace or not at all
            rows = await audit_log.append_with_trace_event(
                conn, record.audit, trace_id=trace_id, kind=AuditKind.TRACE_RECORDED, at=trace.decided_at
            )
            if previous is not None:
                await _supersede(
                    conn, previous, trace_id, decision_key=record.decision_key, case_id=trace.case_id, at=trace.decided_at
                )
            if store_precedents.deserves_precedent(trace):
                position = rows[-1].global_seq if rows else None  # none: the bench's no_audit_writes variant
                await store_precedents.insert_precedent(conn, trace_id, trace, trace_global_seq=position)
            # the requester's notification, with the trace or not at all; delivered once committed
            decided = await self._notices.record_decided(conn, record.decision_key, trace)
        log.info("recorded decision trace %s for %s: %s by %s", trace_id, trace.case_id, trace.outcome, trace.decided_by)
        self._notices.deliver_soon(decided)
        return RecordReceipt(trace_id=trace_id, newly_recorded=True, otel_trace_id=trace.otel_trace_id)

    @activity.defn(name="record_late_additions")
    async def record_late_additions(self, late: LateAdditions) -> None:
        """Set the trace's rejected attempts and operator actions to the case's full lists:
        idempotent, and a later call (with more) supersedes an earlier one."""
        attempts = storable([a.model_dump(mode="json") for a in late.rejected_attempts])
        actions = storable([a.model_dump(mode="json") for a in late.operator_actions])
        async with self._pool.acquire() as conn, conn.transaction():
            trace_id = await traces.set_late_additions(
                conn, late.decision_key, rejected_attempts_json=json.dumps(attempts), operator_actions_json=json.dumps(actions)
            )
            if trace_id is None:
                raise ApplicationError(f"no decision trace with key {late.decision_key}", type="TraceMissing")
            await audit_log.append_with_trace_event(
                conn, late.audit, trace_id=trace_id, kind=AuditKind.TRACE_AMENDED, at=datetime.now(UTC)
            )


async def _supersede(
    conn: asyncpg.Connection, previous: asyncpg.Record, trace_id: int, *, decision_key: str, case_id: str, at: datetime
) -> None:
    """Trace `trace_id` supersedes `previous`: retract the old trace's precedent and say so in the case's chain.
    The same decision key is a reset (same first run); another key, the case ID started again."""
    reason = "reset" if previous["decision_key"] == decision_key else "re-run"
    old_id = previous["id"]
    await store_precedents.retract_precedent(
        conn, old_id, reason=f"superseded by trace {trace_id} ({reason})", retracted_by="record_decision", identity=None, at=at
    )
    await audit_log.append_events(
        conn,
        [
            AuditEvent(
                event_key=f"trace/{trace_id}/{AuditKind.TRACE_SUPERSEDED.value}",
                case_id=case_id,
                kind=AuditKind.TRACE_SUPERSEDED,
                at=at,
                body={"old_trace_id": old_id, "new_trace_id": trace_id, "reason": reason},
            )
        ],
    )
    log.info("trace %s of %s supersedes trace %s (%s)", trace_id, case_id, old_id, reason)
