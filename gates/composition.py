"""What others see of a case, composed from its file (gates.case_file): the reviewer view, the UI's
Current Details, the search attributes of the inbox, the decision trace, the late additions to it
and the state carried over.

Pure functions of the case's state, so the workflow only calls them and the unit tests can read
what a reviewer or an auditor would (tests/unit/test_case_composition.py). What is cut to fit
Temporal's payload limit is cut here too (gates.fit), and named in the record's `trimmed`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributeUpdate

from gates import search_attributes as sa
from gates.audit import AuditEvent
from gates.bounds import MAX_CASE_PAYLOAD_BYTES, QUESTIONS_IN_BRIEF
from gates.brief import Proposal, ReviewerQuestion, propose, render_brief
from gates.case_file import AtGate, CaseFile
from gates.cases import CaseRequest
from gates.fit import fit_json
from gates.gate import AcceptedDecision
from gates.identity import evidence_digest
from gates.info_request import InfoRequest
from gates.kinds import SPECS
from gates.messages import LateAdditions, SummarizeInput
from gates.policy import Policy, PolicyEvaluation
from gates.precedent import PrecedentFeatures
from gates.presentation import ask_markdown, current_details
from gates.text import md_block, md_inline
from gates.trace import (
    AgentNote,
    CaseCarryOver,
    CaseState,
    CaseView,
    DecisionTrace,
    fitted_carry_over,
    gate_view,
)


def summarize_input(
    case: CaseFile,
    request: CaseRequest,
    evaluation: PolicyEvaluation,
    headline: str,
    *,
    latest_questions: bool,
    advise_inline: bool,
) -> SummarizeInput:
    """What the brief is written from: the request, this round's evidence, evaluation and precedents,
    and the reviewers' questions (`latest_questions`, since HARDENED_PATCH: the latest few, the
    others counted). Once questions go to a person (`info_rounds`), each question shown comes with
    what came back, the answer quoted as its author's words (every round is in the trace)."""
    questions = with_answers(case.questions, case.info_rounds) if case.info_rounds else case.questions
    return SummarizeInput(
        kind=request.kind,
        ask=ask_markdown(request),
        requester=request.requester,
        justification=request.justification,
        context=case.context,
        evaluation=evaluation,
        precedents=case.precedents,
        headline=headline,
        questions=questions[-QUESTIONS_IN_BRIEF:] if latest_questions else questions,
        earlier_questions=max(0, len(questions) - QUESTIONS_IN_BRIEF) if latest_questions else 0,
        advise_inline=advise_inline,
    )


def with_answers(questions: list[ReviewerQuestion], rounds: list[InfoRequest]) -> list[ReviewerQuestion]:
    """The questions, each with whom it went to and what came back (matched by round)."""
    by_round = {info.round: info for info in rounds}
    shown = []
    for q in questions:
        info = by_round.get(q.round)
        if info is None:
            shown.append(q)
            continue
        shown.append(
            q.model_copy(
                update={
                    "asked": info.asked,
                    "outcome": info.outcome,
                    "answer": info.answer,
                    "answered_by": info.answered_by,
                    "due_at": info.due_at,
                    "attachment_name": info.attachment_name,
                    "attachment_text": info.attachment_text,
                }
            )
        )
    return shown


def digest_of(request: CaseRequest, policy: Policy, evaluation: PolicyEvaluation, case: CaseFile, proposal: Proposal) -> str:
    """The digest a decision names (trusted cases): over the canonical request, evidence, findings,
    proposal and policy version of this round, so a decision made on other evidence is stale."""
    seen = {
        "request": request.model_dump(mode="json"),
        "policy": policy.ref,
        "evidence": case.context.model_dump(mode="json"),
        "findings": [finding.model_dump(mode="json") for finding in evaluation.findings],
        "proposal": proposal.model_dump(mode="json"),
    }
    try:
        return evidence_digest(seen)
    except ValueError:
        # Outside RFC 8785's domain (an integer beyond 2**53 from a source, say): a case must not
        # wedge on it. Senders compare the digest the case shows; none recomputes it.
        return "sha256:" + hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()


def case_view(case: CaseFile, request: CaseRequest, *, case_id: str, now: datetime | None = None) -> CaseView:
    """What `hitl show`, the `case_state` query and services see: the brief, findings, proposal,
    precedents, and while the case waits its gate (level, deadlines, who may decide, and for a
    trusted case who may not and why, and the evidence digest)."""
    evaluation, summary = case.evaluation, case.summary
    # a rule in shadow: the proposal is recorded (the trace) but not shown while the case is undecided
    withheld = evaluation is not None and bool(evaluation.shadow_rules) and case.decision is None
    return CaseView(
        case_id=case_id,
        kind=request.kind.value,
        state=case.state,
        ask=SPECS[request.kind].ask(request),
        requester=request.requester,
        policy=case.policy.ref if case.policy else "",
        brief=summary.brief if summary else None,
        findings=evaluation.findings if evaluation else [],
        reason_codes=[c.value for c in evaluation.reason_codes] if evaluation else [],
        proposal=summary.proposal if summary and not withheld else None,
        precedent_headline=case.headline,
        precedents=case.precedents,
        gate=gate_view(case.gate, now) if case.gate and case.state == CaseState.WAITING else None,
        decision=case.decision,
        rounds=case.rounds,
        rejected_attempts=case.attempts(),
        questions=case.questions,
        operator_actions=case.operator_actions,
        info_request=case.info_request,
        info_rounds=case.info_rounds,
    )


def case_details(case: CaseFile) -> str:
    """The UI's Current Details panel for the case as it stands (gates.presentation.current_details);
    while it waits for an answer, the question first, quoted as the reviewer's words."""
    info = case.info_request
    if case.state == CaseState.AWAITING_INFO and info is not None:
        lines = [
            "## Awaiting info",
            "",
            f"Round {info.round}: {md_inline(info.asked_by)} asked {md_inline(info.asked)}, in their words:",
            "",
            md_block(info.question),
            "",
            f"Answer due by {info.due_at:%Y-%m-%d %H:%M} UTC (`hitl answer`); the gate reopens once it is answered.",
            "",
        ]
        if case.summary is not None:
            lines.append(case.summary.brief)
        return "\n".join(lines)
    return current_details(
        state=case.state.value,
        decision=case.decision,
        gate=case.gate,
        brief=case.summary.brief if case.summary is not None else None,
    )


def refused_details(reason: str) -> str:
    """The Current Details of a refused start: it is not a case, and the reason is shown as text."""
    return f"## Refused\n\nThis start is not a case:\n\n{md_block(reason)}"


def case_attributes(case: CaseFile, now: datetime | None = None) -> list[SearchAttributeUpdate[Any]]:
    """The search attributes the inbox and saved views filter on, for the case as it stands; the
    deadline and who may decide only while the gate is open (and for a trusted case, given `now`,
    who sits in an eligible group but may not decide now)."""
    gate = case.gate
    updates: list[SearchAttributeUpdate[Any]] = [sa.CASE_STATE.value_set(case.state.value)]
    if case.evaluation is not None:
        updates.append(sa.REASON_CODES.value_set([c.value for c in case.evaluation.reason_codes]))
    if gate is not None:
        updates += [
            sa.GATE.value_set(gate.definition.name),
            sa.ESCALATION_LEVEL.value_set(gate.level),
            sa.REVIEWER_GROUP.value_set(gate.current_group),
            sa.GATE_OPENED_AT.value_set(gate.opened_at),
        ]
        waiting = case.state == CaseState.WAITING and gate.open
        info = case.info_request
        if waiting:
            updates += [sa.ELIGIBLE_GROUPS.value_set(gate.eligible_groups()), sa.NEXT_DEADLINE.value_set(gate.escalate_at())]
        elif case.state == CaseState.AWAITING_INFO and info is not None:  # nobody decides; the answer is due
            updates += [sa.ELIGIBLE_GROUPS.value_unset(), sa.NEXT_DEADLINE.value_set(info.due_at)]
        else:
            updates += [sa.ELIGIBLE_GROUPS.value_unset(), sa.NEXT_DEADLINE.value_unset()]
        if case.trusted and now is not None:
            excluded = sorted(gate.excluded(now)) if waiting else []
            updates.append(sa.MAY_NOT_DECIDE.value_set(excluded) if excluded else sa.MAY_NOT_DECIDE.value_unset())
    if case.decision is not None:
        updates.append(sa.OUTCOME.value_set(case.decision.outcome))
    return updates


def opening_attributes(
    request: CaseRequest, policy: Policy, *, own_all: bool, trusted: bool = False
) -> list[SearchAttributeUpdate[Any]]:
    """The attributes a case sets when it opens. `own_all` (since HARDENED_PATCH): every other
    attribute of ours unset too, so the workflow owns them from its first task, whatever the starter
    set; `trusted` (since the trust patch) the trust patch's attribute as well."""
    spec = SPECS[request.kind]
    updates: list[SearchAttributeUpdate[Any]] = [
        sa.CASE_KIND.value_set(request.kind.value),
        sa.BUSINESS_KEY.value_set(request.business_key()),
        sa.POLICY.value_set(policy.ref),
        sa.REQUESTER.value_set(request.requester),
        sa.ASK.value_set(spec.ask(request)),
        sa.CASE_STATE.value_set(CaseState.GATHERING.value),
    ]
    if (amount := spec.amount_minor(request)) is not None:
        updates.append(sa.AMOUNT_MINOR.value_set(amount))
    if own_all:
        owned = {update.key.name for update in updates}
        updates += [key.value_unset() for key in sa.HARDENED_SEARCH_ATTRIBUTES if key.name not in owned]
    if trusted:
        updates.append(sa.MAY_NOT_DECIDE.value_unset())
    return updates


def refused_attributes() -> list[SearchAttributeUpdate[Any]]:
    """A refused start keeps no attribute of its starter's (it cannot pose as a case in the inbox
    or a lookup): its state says refused, and everything else is unset."""
    return [sa.CASE_STATE.value_set(CaseState.REFUSED.value)] + [
        key.value_unset() for key in sa.HARDENED_SEARCH_ATTRIBUTES if key != sa.CASE_STATE
    ]


def decision_trace(
    case: CaseFile, request: CaseRequest, decision: AcceptedDecision, *, started_at: datetime, workflow_id: str, run_id: str
) -> DecisionTrace:
    """The record of who decided what, on which evidence, under which policy (before fitting).

    A case cancelled early may have no policy, evaluation or brief yet: it records what there is."""
    spec = SPECS[request.kind]
    gate, evaluation, summary = case.gate, case.evaluation, case.summary
    policy_ref = case.policy.ref if case.policy else "unresolved"
    reason_codes = [c.value for c in evaluation.reason_codes] if evaluation else []
    return DecisionTrace(
        decision_trace=request.kind.value,
        entities={**spec.entities(request), "policy": policy_ref},
        inputs=case.context.consulted(),
        human_gate=gate.definition.name if gate else None,
        case_id=workflow_id,
        business_key=request.business_key(),
        workflow_id=workflow_id,
        run_id=run_id,
        request=request.model_dump(mode="json"),
        brief=summary.brief if summary else "",
        findings=evaluation.findings if evaluation else [],
        reason_codes=reason_codes,
        proposal=summary.proposal if summary else Proposal(outcome="none", rationale="no brief was written"),
        agent=summary.agent if summary else AgentNote(used=False),
        precedent_headline=case.headline or "",
        precedents_cited=[p.case_id for p in case.precedents],
        features=PrecedentFeatures(
            kind=request.kind, policy=policy_ref, reason_codes=reason_codes, amount_band=spec.band(request), tags=case.tags
        ),
        outcome=decision.outcome,
        decided_by=decision.decided_by,
        decided_via=decision.via,
        reason=decision.reason,
        decided_level=decision.level if decision.level >= 0 else None,
        rounds=case.rounds,
        questions=case.questions,
        reminders=gate.reminders if gate else [],
        escalations=gate.escalations if gate else [],
        operator_actions=case.operator_actions,
        rejected_attempts=case.attempts(),
        opened_at=started_at,
        gate_opened_at=gate.opened_at if gate else None,
        decided_at=decision.at,
        trimmed=case.trimmed,
        facts=spec.facts(request, case.context, precedent_count=len(case.precedents)) if evaluation else {},
        info_rounds=case.info_rounds,
        **(_trust_record(case, decision) if case.trusted else {}),
    )


def _trust_record(case: CaseFile, decision: AcceptedDecision) -> dict[str, Any]:
    """The trace's trust fields: how the case knew who decided, in whose seat, on which evidence."""
    gate = case.gate
    mode = case.trust.mode if case.trust is not None else "verified"
    return {
        "identity": decision.identity.mode if decision.identity is not None else mode,
        "decided_identity": decision.identity,
        "acting_for": decision.acting_for,
        "delegation": decision.delegation,
        "evidence_digest": decision.digest or (gate.digest if gate else None),
        "directory_version": decision.directory_version or (gate.directory_version if gate else None),
        "excluded": gate.excluded(decision.at) if gate is not None else {},
        "approvals": gate.approvals if gate is not None else [],
        "rejections": gate.rejections if gate is not None else [],
    }


def late_additions(case: CaseFile, decision_key: str, *, audit: list[AuditEvent] | None = None) -> LateAdditions:
    """The case's full lists of attempts and operator actions, for a trace already written: what
    arrived while it was being recorded is added, fitted under half the payload limit. `audit`: the
    gate events the audit log does not hold yet."""
    fitted, _ = fit_json(
        {
            "rejected_attempts": [a.model_dump(mode="json") for a in case.attempts()],
            "operator_actions": [a.model_dump(mode="json") for a in case.operator_actions],
        },
        MAX_CASE_PAYLOAD_BYTES // 2,
    )
    return LateAdditions(decision_key=decision_key, **fitted, audit=audit or [])


def carry_over(case: CaseFile, at_gate: AtGate, *, workflow_id: str, first_execution_run_id: str) -> CaseCarryOver:
    """A waiting case's state for its next run, fitted under the payload limit."""
    return fitted_carry_over(
        CaseCarryOver(
            workflow_id=workflow_id,
            first_execution_run_id=first_execution_run_id,
            runs=case.runs_before + 1,
            kind=at_gate.request.kind,
            request=at_gate.request.model_dump(mode="json"),
            started_at=at_gate.started_at,
            policy=at_gate.policy,
            context=case.context,
            evaluation=at_gate.evaluation,
            precedents=case.precedents,
            headline=case.headline,
            summary=at_gate.summary,
            tags=case.tags,
            gate=at_gate.gate,
            rounds=case.rounds,
            questions=case.questions,
            early_attempts=case.early_attempts,
            attempts_received=case.attempts_received(),
            operator_actions=case.operator_actions,
            trimmed=case.trimmed,
            trusted=case.trusted,
            audit_mark=case.audit_mark,
            info_rounds=case.info_rounds,
            agent_configured=case.agent_configured,
        )
    )


def written_brief(case: SummarizeInput) -> tuple[str, Proposal]:
    """The deterministic brief and proposal of a summarize request: what `summarize_case` writes
    (and the fast test tier's fake of it), with or without an agent beside it."""
    proposal = propose(case.evaluation, case.precedents, case.context)
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
    return brief, proposal
