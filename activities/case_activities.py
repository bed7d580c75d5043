"""Activities of the decision loop other than the connectors: policy, precedent, brief, record.

All I/O of a case lives here. Each activity takes one pydantic model and is idempotent:
reads are reads, and the one write (`record_decision`) is keyed by the workflow's decision key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import asyncpg
from opentelemetry import trace as otel_trace
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from gates.brief import Proposal, ReviewerQuestion, precedent_headline, propose, render_brief
from gates.cases import CaseKind
from gates.evidence import ContextBundle
from gates.policy import Policy, PolicyError, PolicyEvaluation, bundled_policy_dir, load_policies
from gates.precedent import Precedent, PrecedentFeatures
from gates.trace import AgentNote, CaseSummary, RecordDecisionInput, RecordReceipt
from activities.agent import AgentSettings, AgentUnavailable, agent_configured, request_agent_advice

log = logging.getLogger("hitl.activities")


class CaseActivitySettings(AgentSettings, Protocol):
    """The part of `workers.config.Settings` these activities read (activities do not import workers)."""

    policy_dir: Path | None


class ResolvePolicyInput(BaseModel):
    kind: CaseKind


class PrecedentQuery(BaseModel):
    kind: CaseKind
    amount_band: str
    tags: list[str]
    exclude_case_id: str
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
    questions: list[ReviewerQuestion]


class CaseActivities:
    def __init__(self, pool: asyncpg.Pool, settings: CaseActivitySettings):
        self._pool = pool
        self._settings = settings

    def activities(self) -> list:
        return [self.resolve_policy, self.find_precedents, self.summarize_case, self.record_decision]

    @activity.defn(name="resolve_policy")
    async def resolve_policy(self, request: ResolvePolicyInput) -> Policy:
        """The newest valid policy for the kind. Called once per case; the answer is kept in history."""
        directory = Path(self._settings.policy_dir) if self._settings.policy_dir else bundled_policy_dir()
        try:
            return load_policies(directory)[request.kind]
        except PolicyError as err:
            # A broken policy file is not fixed by retrying; operators see this message on the case.
            raise ApplicationError(str(err), type="PolicyError", non_retryable=True) from err

    @activity.defn(name="find_precedents")
    async def find_precedents(self, query: PrecedentQuery) -> PrecedentMatches:
        rows = await self._pool.fetch(
            """SELECT case_id, kind, policy, reason_codes, amount_band, tags, outcome, decided_by, reason, decided_at
               FROM precedents
               WHERE kind = $1 AND amount_band = $2 AND case_id <> $3
                 AND (cardinality($4::text[]) = 0 OR tags && $4::text[])
               ORDER BY decided_at DESC
               LIMIT $5""",
            query.kind.value,
            query.amount_band,
            query.exclude_case_id,
            query.tags,
            query.limit,
        )
        precedents = [Precedent(**dict(row)) for row in rows]
        return PrecedentMatches(precedents=precedents, headline=precedent_headline(query.kind, query.tags, precedents))

    @activity.defn(name="summarize_case")
    async def summarize_case(self, case: SummarizeInput) -> CaseSummary:
        """The deterministic brief, plus the agent's advice when one is configured (never instead of it)."""
        proposal: Proposal = propose(case.evaluation, case.precedents, case.context)
        brief = render_brief(
            ask=case.ask,
            requester=case.requester,
            justification=case.justification,
            context=case.context,
            evaluation=case.evaluation,
            precedents=case.precedents,
            headline=case.headline,
            proposal=proposal,
            questions=case.questions,
        )
        return CaseSummary(brief=brief, proposal=proposal, agent=await self._agent_note(brief, case))

    async def _agent_note(self, brief: str, case: SummarizeInput) -> AgentNote:
        if not agent_configured(self._settings):
            return AgentNote(used=False)
        try:
            advice = await request_agent_advice(
                self._settings,
                brief_markdown=brief,
                evidence_labels=[e.label for e in case.context.items],
                policy_findings=[f"{f.rule_id}: {f.detail}" for f in case.evaluation.findings],
            )
        except AgentUnavailable as err:
            log.warning("agent summarizer unavailable, using the deterministic brief: %s", err)
            return AgentNote(used=False, error=str(err))
        return AgentNote(used=True, advice=advice.model_dump())

    @activity.defn(name="record_decision")
    async def record_decision(self, record: RecordDecisionInput) -> RecordReceipt:
        """Write the trace and its precedent once: a retry or a duplicate finds the first row."""
        trace = record.trace
        span_context = otel_trace.get_current_span().get_span_context()
        if span_context.is_valid and trace.otel_trace_id is None:
            trace = trace.model_copy(update={"otel_trace_id": format(span_context.trace_id, "032x")})
        async with self._pool.acquire() as conn, conn.transaction():
            trace_id = await conn.fetchval(
                """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy,
                       gate, outcome, decided_by, decided_via, reason, reason_codes, otel_trace_id, opened_at,
                       decided_at, trace)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb)
                   ON CONFLICT (decision_key) DO NOTHING
                   RETURNING id""",
                record.decision_key,
                trace.case_id,
                trace.run_id,
                trace.decision_trace,
                trace.features.kind.value,
                trace.business_key,
                trace.features.policy,
                trace.human_gate,
                trace.outcome,
                trace.decided_by,
                trace.decided_via,
                trace.reason,
                trace.reason_codes,
                trace.otel_trace_id,
                trace.opened_at,
                trace.decided_at,
                trace.model_dump_json(),
            )
            if trace_id is None:
                existing = await conn.fetchrow(
                    "SELECT id, otel_trace_id FROM decision_traces WHERE decision_key = $1", record.decision_key
                )
                return RecordReceipt(trace_id=existing["id"], newly_recorded=False, otel_trace_id=existing["otel_trace_id"])
            features: PrecedentFeatures = trace.features
            await conn.execute(
                """INSERT INTO precedents (decision_trace_id, case_id, kind, policy, reason_codes, amount_band, tags,
                       outcome, decided_by, reason, decided_at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)""",
                trace_id,
                trace.case_id,
                features.kind.value,
                features.policy,
                features.reason_codes,
                features.amount_band,
                features.tags,
                trace.outcome,
                trace.decided_by,
                trace.reason,
                trace.decided_at,
            )
        log.info("recorded decision trace %s for %s: %s by %s", trace_id, trace.case_id, trace.outcome, trace.decided_by)
        return RecordReceipt(trace_id=trace_id, newly_recorded=True, otel_trace_id=trace.otel_trace_id)

