"""Activities of the decision loop other than the connectors: policy, precedent, brief, record.

All I/O of a case lives here. Each activity takes one pydantic model and is idempotent:
reads are reads, and the one write (`record_decision`) is keyed by the workflow's decision key.
"""

from __future__ import annotations

import json
import logging
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
from activities.policy_files import PolicyCache, bundled_policy_dir
from activities.store import precedents as store_precedents
from activities.store import traces
from gates.brief import precedent_headline
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
from gates.text import storable
from gates.trace import AgentNote, CaseSummary, DecisionTrace

log = logging.getLogger("hitl.activities")

# How much of a past decision's reason a precedent carries into a new case's brief and state.
PRECEDENT_REASON_CHARS = 500


class CaseActivitySettings(AgentSettings, Protocol):
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
        """The newest valid policy for the kind. Called once per case; the answer is kept in history."""
        directory = Path(self._settings.policy_dir) if self._settings.policy_dir else bundled_policy_dir()
        try:
            return self._policies.load(directory)[request.kind]
        except PolicyError as err:
            # A broken policy file is not fixed by retrying; operators see this message on the case.
            raise ApplicationError(str(err), type="PolicyError", non_retryable=True) from err

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
        """Write the trace and its precedent once: a retry or a duplicate finds the first row.

        Whatever text reached the trace (connector answers, payload previews), it is made storable
        first: PostgreSQL's text and jsonb refuse NUL and unpaired surrogates, and a recorder that
        failed on content would retry forever with no trace written."""
        trace = _storable_trace(record.trace)
        span_context = otel_trace.get_current_span().get_span_context()
        if span_context.is_valid and trace.otel_trace_id is None:
            trace = trace.model_copy(update={"otel_trace_id": format(span_context.trace_id, "032x")})
        async with self._pool.acquire() as conn, conn.transaction():
            trace_id = await traces.insert_trace(conn, record.decision_key, trace)
            if trace_id is None:
                existing = await traces.recorded_under(conn, record.decision_key)
                return RecordReceipt(trace_id=existing["id"], newly_recorded=False, otel_trace_id=existing["otel_trace_id"])
            await store_precedents.insert_precedent(conn, trace_id, trace)
        log.info("recorded decision trace %s for %s: %s by %s", trace_id, trace.case_id, trace.outcome, trace.decided_by)
        return RecordReceipt(trace_id=trace_id, newly_recorded=True, otel_trace_id=trace.otel_trace_id)

    @activity.defn(name="record_late_additions")
    async def record_late_additions(self, late: LateAdditions) -> None:
        """Set the trace's rejected attempts and operator actions to the case's full lists:
        idempotent, and a later call (with more) supersedes an earlier one."""
        attempts = storable([a.model_dump(mode="json") for a in late.rejected_attempts])
        actions = storable([a.model_dump(mode="json") for a in late.operator_actions])
        recorded = await traces.set_late_additions(
            self._pool, late.decision_key, rejected_attempts_json=json.dumps(attempts), operator_actions_json=json.dumps(actions)
        )
        if not recorded:
            raise ApplicationError(f"no decision trace with key {late.decision_key}", type="TraceMissing")
