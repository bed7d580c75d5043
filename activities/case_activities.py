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
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent import (
    AgentSettings,
    AgentUnavailable,
    agent_configured,
    request_agent_advice,
)
from gates.brief import (
    Proposal,
    ReviewerQuestion,
    precedent_headline,
    propose,
    render_brief,
)
from gates.cases import CaseKind
from gates.evidence import ContextBundle
from gates.policy import (
    Policy,
    PolicyError,
    PolicyEvaluation,
    bundled_policy_dir,
    load_policies,
)
from gates.precedent import Precedent, PrecedentFeatures
from gates.text import storable
from gates.trace import (
    AgentNote,
    CaseSummary,
    DecisionTrace,
    LateAdditions,
    RecordDecisionInput,
    RecordReceipt,
)

log = logging.getLogger("hitl.activities")

# How much of a past decision's reason a precedent carries into a new case's brief and state.
PRECEDENT_REASON_CHARS = 500


class CaseActivitySettings(AgentSettings, Protocol):
    """The part of `workers.config.Settings` these activities read (activities do not import workers)."""

    policy_dir: Path | None


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
        return cls(
            brief=brief,
            evidence_labels=[e.label for e in context.items],
            policy_findings=[f"{f.rule_id}: {f.detail}" for f in evaluation.findings],
        )


def _storable_trace(trace: DecisionTrace) -> DecisionTrace:
    """The trace as is when PostgreSQL can store it (nearly always), else with NUL and unpaired
    surrogates replaced (`gates.text.storable`)."""
    try:
        if "\\u0000" not in trace.model_dump_json():
            return trace
    except ValueError:  # an unpaired surrogate cannot be encoded
        pass
    return DecisionTrace.model_validate(storable(trace.model_dump(mode="json")))


class PolicyCache:
    """Parsed policies per directory, re-read only when a file's name, size or mtime changed.

    Parsing and validating every policy file cost about 29 ms of CPU per case start (bench/); an
    edited or added file is picked up by the next `resolve_policy`, an invalid one fails it as before."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._policies: dict[CaseKind, Policy] = {}

    @staticmethod
    def key(directory: Path) -> tuple:
        stats = ((p.name, p.stat()) for p in sorted(directory.glob("*.yaml")))
        return (str(directory),) + tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)

    def load(self, directory: Path) -> dict[CaseKind, Policy]:
        key = self.key(directory)
        if key != self._key:
            self._policies = load_policies(directory)  # an invalid file raises PolicyError, and is re-read next call
            self._key = key
        return self._policies


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
        rows = await self._pool.fetch(
            # a precedent's reason is another reviewer's words, cited in this case's brief: a bounded excerpt
            f"""SELECT case_id, kind, policy, reason_codes, amount_band, tags, outcome, decided_by,
                      left(reason, {PRECEDENT_REASON_CHARS}) AS reason, decided_at
               FROM precedents
               WHERE kind = $1 AND amount_band = $2 AND ($3::text IS NULL OR case_id <> $3)
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
        """The deterministic brief and proposal; the agent's advice beside it (never instead of it) when
        one is configured, asked here for older histories or flagged for `advise_case` otherwise."""
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
            earlier_questions=case.earlier_questions,
        )
        if not case.advise_inline:
            return CaseSummary(
                brief=brief, proposal=proposal, agent=AgentNote(used=False), advice_pending=agent_configured(self._settings)
            )
        return CaseSummary(brief=brief, proposal=proposal, agent=await self.advise_case(AdviseInput.of(brief, case.context, case.evaluation)))

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

    @activity.defn(name="record_late_additions")
    async def record_late_additions(self, late: LateAdditions) -> None:
        """Set the trace's rejected attempts and operator actions to the case's full lists:
        idempotent, and a later call (with more) supersedes an earlier one."""
        attempts = storable([a.model_dump(mode="json") for a in late.rejected_attempts])
        actions = storable([a.model_dump(mode="json") for a in late.operator_actions])
        updated = await self._pool.execute(
            """UPDATE decision_traces
                  SET trace = jsonb_set(jsonb_set(trace, '{rejected_attempts}', $2::jsonb), '{operator_actions}', $3::jsonb)
                WHERE decision_key = $1""",
            late.decision_key,
            json.dumps(attempts),
            json.dumps(actions),
        )
        if updated == "UPDATE 0":
            raise ApplicationError(f"no decision trace with key {late.decision_key}", type="TraceMissing")
