"""The decision loop, shared by the three case workflows.

gather context -> find precedents -> evaluate policy -> summarize -> (policy decides | gate waits
for a human, reminding and escalating on durable timers) -> record the decision trace.

Orchestration only: every I/O step is an activity, every rule lives in `gates`. Decisions arrive
as the `decide` signal (UI, `temporal workflow signal`) or the `submit_decision` update (CLI,
services); both go through the same `GateState` checks. A bad submission never raises inside a
handler: the update's validator rejects it before it reaches history, and the signal path records
it as a rejected attempt.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.case_activities import AdviseInput, PrecedentMatches, PrecedentQuery, ResolvePolicyInput, SummarizeInput
    from activities.directory import Roster, RosterRequest
    from activities.notify import Notification
    from gates.brief import Proposal, ReviewerQuestion
    from pydantic import ValidationError

    from gates.cases import REQUEST_MODELS, CaseRequest
    from gates.evidence import ConnectorResult, ContextBundle, MissingContext, SourceRequest
    from gates.gate import (
        AcceptedDecision,
        Decision,
        DecisionOutcome,
        DecisionReceipt,
        GateState,
        OperatorAction,
        OperatorActionKind,
        OperatorReceipt,
        OperatorRecord,
        RejectedAttempt,
        keep_attempt,
        validation_problems,
    )
    from gates.kinds import CaseSpec
    from gates.policy import Policy, PolicyEvaluation, evaluate
    from gates.precedent import Precedent, PrecedentFeatures
    from gates.trace import (
        AgentNote,
        CaseResult,
        CaseState,
        CaseSummary,
        CaseView,
        DecisionTrace,
        RecordDecisionInput,
        RecordReceipt,
        gate_view,
    )
    from workflows import search_attributes as sa

QUICK = timedelta(seconds=30)
# Sources: retry transient failures (timeouts, 5xx) a few times, then treat the source as missing.
GATHER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=4)
# Notifications are best effort after a few tries: a dead webhook must not hold up a decision.
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=5)
# Recording retries until it succeeds (PostgreSQL down is waited out), and writes once by key.
RECORD_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Reads of our own files and database (the policy, precedents, the roster, the deterministic
# brief) run as local activities: no workflow task, scheduled, started or completed events of
# their own, which the benchmark found to be most of a case's cost. A read still failing after
# LOCAL_RETRY's few quick attempts (about 3 s) runs again as a regular activity, so `hitl ops
# stuck` shows it and `hitl ops retry` can reset it. (The SDK does not end a local activity's
# retries at its schedule-to-close timeout while they run inside one workflow task, so attempts
# bound them.) Calls to other systems (connectors, the agent, notifications) stay regular
# activities, and so does `record_decision`: recorded locally, the decision's workflow task would
# also complete the case, and a signal arriving meanwhile fails that task (UnhandledCommand) and
# with it every update it was answering.
# Cases started before this patch keep regular activities and publishing every attribute.
LEAN_PATCH = "local-reads-and-changed-only-upserts"
LOCAL_ATTEMPT_TIMEOUT = timedelta(seconds=5)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1), maximum_attempts=5
)
ADVISE_TIMEOUT = timedelta(seconds=90)


class CaseWorkflow:
    """Base of the per-kind workflows; subclasses set `spec` and a typed `run`."""

    spec: ClassVar[CaseSpec]

    def __init__(self) -> None:
        self._request: CaseRequest | None = None
        self._state = CaseState.GATHERING
        self._policy: Policy | None = None
        self._context = ContextBundle()
        self._evaluation: PolicyEvaluation | None = None
        self._precedents: list[Precedent] = []
        self._headline: str | None = None
        self._summary: CaseSummary | None = None
        self._tags: list[str] = []
        self._gate: GateState | None = None
        self._rounds: list[AcceptedDecision] = []
        self._questions: list[ReviewerQuestion] = []
        self._early_attempts: list[RejectedAttempt] = []
        self._decision: AcceptedDecision | None = None
        self._operator_actions: list[OperatorRecord] = []
        self._escalation_requested: OperatorRecord | None = None
        self._cancel_requested: OperatorRecord | None = None
        self._lean = False  # LEAN_PATCH: set once at the start of the run
        self._parked_at_gate = False  # the main loop is waiting in `_wait_at_gate`

    # -- decisions in ---------------------------------------------------------------------------

    @workflow.signal(
        name="decide",
        description=(
            'Record a reviewer\'s decision. JSON: {"outcome": "approve" | "reject" | "request_info", '
            '"reviewer": "<your id>", "reason": "<why>"}. Invalid or unauthorized decisions are kept as rejected attempts.'
        ),
    )
    def decide(self, payload: RawValue) -> None:
        now = workflow.now()
        try:
            value: Any = workflow.payload_converter().from_payload(payload.payload)
        except Exception as err:  # undecodable bytes: keep the attempt, never fail the task
            keep_attempt(
                self._early_attempts,
                RejectedAttempt.of(at=now, via="signal", reviewer=None, payload=None, error=f"payload is not JSON: {err}"),
            )
            self._publish()
            return
        not_accepting = self._not_accepting()
        if not_accepting is not None:
            reviewer = value.get("reviewer") if isinstance(value, dict) else None
            keep_attempt(
                self._early_attempts,
                RejectedAttempt.of(at=now, via="signal", reviewer=reviewer, payload=value, error=not_accepting),
            )
        else:
            assert self._gate is not None
            self._gate.submit_raw(value, "signal", now)
        self._publish_from_handler()

    @workflow.update(
        name="submit_decision",
        description="Decide and get the result back; rejected with the reason when the decision is not allowed.",
    )
    def submit_decision(self, decision: Decision) -> DecisionReceipt:
        problem = self._problem_with(decision)
        if problem:  # a concurrent update may have decided between validation and now
            raise ApplicationError(problem, type="DecisionRejected", non_retryable=True)
        assert self._gate is not None
        accepted = self._gate.accept(decision, "update", workflow.now())
        self._publish_from_handler()
        return DecisionReceipt(
            case_id=workflow.info().workflow_id,
            accepted=True,
            outcome=accepted.outcome,
            reviewer=accepted.decided_by,
            level=accepted.level,
            message=f"{accepted.outcome} by {accepted.decided_by} accepted at level {accepted.level + 1}",
        )

    @submit_decision.validator
    def _validate_decision(self, decision: Decision) -> None:
        problem = self._problem_with(decision)
        if problem:
            raise ApplicationError(problem, type="DecisionRejected", non_retryable=True)

    def _not_accepting(self) -> str | None:
        """Why no decision can be taken at all right now, or None when the gate should judge it."""
        gate = self._gate
        if gate is not None and (gate.open or self._state == CaseState.WAITING or self._decision is not None):
            return None  # the gate answers, including "already decided: ..."
        if self._decision is not None:
            d = self._decision
            return f"case already decided: {d.outcome} by {d.decided_by}"
        return f"case is not waiting for a decision (state: {self._state.value})"

    def _problem_with(self, decision: Decision) -> str | None:
        not_accepting = self._not_accepting()
        if not_accepting is not None:
            return not_accepting
        assert self._gate is not None
        return self._gate.problem_with(decision)

    @workflow.update(
        name="operator_action",
        description="Operators: escalate now, reassign the current level to a group, cancel, or note a retry. Kept in the trace.",
    )
    async def operator_action(self, action: OperatorAction) -> OperatorReceipt:
        problem = self._operator_problem(action)  # state may have moved since validation
        if problem:
            raise ApplicationError(problem, type="OperatorActionRejected", non_retryable=True)
        record = OperatorRecord(
            action=action.action.value, operator=action.operator, reason=action.reason, group=action.group, at=workflow.now()
        )
        gate = self._gate
        needs_temporal_cancel = False
        if action.action == OperatorActionKind.ESCALATE:
            assert gate is not None
            level = gate.level
            self._escalation_requested = record
            await workflow.wait_condition(lambda: self._escalation_requested is None or not gate.open)
            record.result = f"escalated from level {level + 1} to level {gate.level + 1} ({gate.current_group})"
        elif action.action == OperatorActionKind.REASSIGN:
            assert gate is not None and action.group is not None
            roster = await self._local_read(
                "load_reviewer_roster",
                RosterRequest(groups=[action.group]),
                result_type=Roster,
                activity_id=f"load-reviewer-roster-{action.group}-{len(self._operator_actions)}",
                summary=f"who sits in {action.group}",
            )
            members = roster.members.get(action.group, [])
            if not members:
                raise ApplicationError(
                    f"group {action.group} has no active members", type="OperatorActionRejected", non_retryable=True
                )
            gate.reassign(action.group, members)
            record.result = f"level {gate.level + 1} reassigned to {action.group} ({', '.join(members)})"
        elif action.action == OperatorActionKind.CANCEL:
            if gate is not None and gate.open:
                gate.close_by_operator("cancelled", action.operator, action.reason, workflow.now())
                record.result = "cancelled while waiting for a decision"
            else:
                # Work in progress (a gathering activity retrying, say) only stops on Temporal's
                # cancellation; this record says who asked and why when it arrives.
                self._cancel_requested = record
                needs_temporal_cancel = True
                record.result = f"cancellation requested in state {self._state.value}; cancel the workflow to interrupt it"
        else:
            record.result = "noted"
        self._operator_actions.append(record)
        self._publish()
        return OperatorReceipt(result=record.result, needs_temporal_cancel=needs_temporal_cancel)

    @operator_action.validator
    def _validate_operator_action(self, action: OperatorAction) -> None:
        problem = self._operator_problem(action)
        if problem:
            raise ApplicationError(problem, type="OperatorActionRejected", non_retryable=True)

    def _operator_problem(self, action: OperatorAction) -> str | None:
        # Retry and note stay possible while recording (the record activity is what may be stuck);
        # they reach the case state and history, though the trace was composed before recording.
        if self._state == CaseState.DECIDED or (
            self._state == CaseState.RECORDING and action.action not in (OperatorActionKind.RETRY, OperatorActionKind.NOTE)
        ):
            return f"case is already {self._state.value}"
        if action.action in (OperatorActionKind.ESCALATE, OperatorActionKind.REASSIGN):
            gate = self._gate
            if gate is None or not gate.open:
                return f"case is not waiting at a gate (state: {self._state.value})"
            if action.action == OperatorActionKind.ESCALATE and gate.is_last_level():
                return f"already at the last level ({gate.definition.levels[gate.level].title}); decide or cancel instead"
            if action.action == OperatorActionKind.ESCALATE and self._escalation_requested is not None:
                return "an escalation is already in progress"
            if action.action == OperatorActionKind.REASSIGN and not action.group:
                return "reassign needs a group"
        return None

    @workflow.query(name="case_state", description="The brief, findings, proposal, gate, deadlines and who may decide now.")
    def case_state(self) -> CaseView:
        if self._request is None:  # queried before the first workflow task ran
            raise ApplicationError("case is starting; ask again in a moment", type="CaseStarting")
        attempts = list(self._early_attempts) + (list(self._gate.rejected_attempts) if self._gate else [])
        return CaseView(
            case_id=workflow.info().workflow_id,
            kind=self.spec.kind.value,
            state=self._state,
            ask=self.spec.ask(self._request),
            requester=self._request.requester,
            policy=self._policy.ref if self._policy else "",
            brief=self._summary.brief if self._summary else None,
            findings=self._evaluation.findings if self._evaluation else [],
            reason_codes=[c.value for c in self._evaluation.reason_codes] if self._evaluation else [],
            proposal=self._summary.proposal if self._summary else None,
            precedent_headline=self._headline,
            precedents=self._precedents,
            gate=gate_view(self._gate) if self._gate and self._state == CaseState.WAITING else None,
            decision=self._decision,
            rounds=self._rounds,
            rejected_attempts=sorted(attempts, key=lambda a: a.at),
            questions=self._questions,
            operator_actions=self._operator_actions,
        )

    # -- the loop -------------------------------------------------------------------------------

    def validate_request(self, raw: RawValue) -> CaseRequest:
        """Decode and validate the start payload; an invalid one fails the case (never its task)."""
        model = REQUEST_MODELS[self.spec.kind]
        try:
            return model.model_validate(workflow.payload_converter().from_payload(raw.payload))
        except ValidationError as err:
            raise ApplicationError(f"invalid {self.spec.kind.value} case: {validation_problems(err)}", type="InvalidCase", non_retryable=True) from None
        except Exception as err:  # not JSON at all
            raise ApplicationError(f"invalid {self.spec.kind.value} case: {err}", type="InvalidCase", non_retryable=True) from None

    async def run_case(self, request: CaseRequest) -> CaseResult:
        self._request = request
        started = workflow.now()
        self._lean = workflow.patched(LEAN_PATCH)
        self._policy = await self._local_read(
            "resolve_policy",
            ResolvePolicyInput(kind=self.spec.kind),
            result_type=Policy,
            activity_id="resolve-policy",
            summary=f"resolve the current {self.spec.kind.value} policy",
        )
        self._upsert(
            [
                sa.CASE_KIND.value_set(self.spec.kind.value),
                sa.BUSINESS_KEY.value_set(request.business_key()),
                sa.POLICY.value_set(self._policy.ref),
                sa.REQUESTER.value_set(request.requester),
                sa.ASK.value_set(self.spec.ask(request)),
                sa.CASE_STATE.value_set(CaseState.GATHERING.value),
            ]
            + ([sa.AMOUNT_MINOR.value_set(m)] if (m := self.spec.amount_minor(request)) is not None else [])
        )
        cancelled = False
        try:
            decision = await self._decide()
        except asyncio.CancelledError:
            # Cancelled through Temporal (`hitl ops cancel`, the UI, the CLI): record who asked, then end as cancelled.
            cancelled = True
            note = self._cancel_requested
            decision = AcceptedDecision(
                outcome="cancelled",
                decided_by=f"operator:{note.operator}" if note else "temporal:cancel-request",
                reason=note.reason if note else "the workflow was cancelled through Temporal",
                via="operator",
                level=self._gate.level if self._gate else -1,
                at=workflow.now(),
            )
        self._decision = decision
        receipt = await self._record(decision, started)
        self._state = CaseState.DECIDED
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError("case cancelled; decision trace recorded")
        return CaseResult(
            case_id=workflow.info().workflow_id,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            decided_via=decision.via,
            reason=decision.reason,
            trace_id=receipt.trace_id,
        )

    async def _decide(self) -> AcceptedDecision:
        """Loop until a final decision: by policy, by a reviewer, by timeout, or by an operator."""
        while True:
            await self._gather_evaluate_summarize()
            assert self._evaluation is not None
            if not self._evaluation.requires_human and self._gate is None:
                return self._decide_by_policy()
            await self._open_gate()
            decision = await self._wait_for_decision()
            if decision.outcome != DecisionOutcome.REQUEST_INFO.value:
                return decision
            # request_info: back to gathering with the reviewer's question, then back to this gate.
            self._rounds.append(decision)
            self._questions.append(ReviewerQuestion(round=len(self._rounds), reviewer=decision.decided_by, question=decision.reason))
            self._state = CaseState.GATHERING
            self._publish()

    async def _gather_evaluate_summarize(self) -> None:
        assert self._request is not None and self._policy is not None
        self._state = CaseState.GATHERING
        requests = self.spec.sources(self._request)
        round_no = len(self._rounds) + 1
        results = await asyncio.gather(*(self._gather(source, round_no) for source in requests))
        self._context = ContextBundle.merge(list(results))
        preliminary = self.spec.facts(self._request, self._context, precedent_count=0)
        self._tags = self.spec.tags(preliminary)
        matches = await self._local_read(
            "find_precedents",
            PrecedentQuery(
                kind=self.spec.kind,
                amount_band=self.spec.band(self._request),
                tags=self._tags,
                exclude_case_id=workflow.info().workflow_id,
            ),
            result_type=PrecedentMatches,
            activity_id=f"find-precedents-{round_no}",
            summary="look up similar past decisions",
        )
        self._precedents, self._headline = matches.precedents, matches.headline
        facts = self.spec.facts(self._request, self._context, precedent_count=len(self._precedents))
        self._evaluation = evaluate(self._policy, facts, [p.outcome for p in self._precedents])
        summary = await self._local_read(
            "summarize_case",
            SummarizeInput(
                kind=self.spec.kind,
                ask=self.spec.ask(self._request),
                requester=self._request.requester,
                justification=self._request.justification,
                context=self._context,
                evaluation=self._evaluation,
                precedents=self._precedents,
                headline=self._headline,
                questions=self._questions,
                advise_inline=not self._lean,
            ),
            result_type=CaseSummary,
            activity_id=f"summarize-{round_no}",
            start_to_close_timeout=ADVISE_TIMEOUT,
            summary="write the brief and propose a path",
        )
        if summary.advice_pending:  # an agent is configured: an external call, so a regular activity
            agent = await workflow.execute_activity(
                "advise_case",
                AdviseInput.of(summary.brief, self._context, self._evaluation),
                result_type=AgentNote,
                activity_id=f"advise-{round_no}",
                start_to_close_timeout=ADVISE_TIMEOUT,
                summary="ask the agent for advice on the brief",
            )
            summary = summary.model_copy(update={"agent": agent, "advice_pending": False})
        self._summary = summary

    async def _local_read(
        self, activity: str, arg: Any, *, result_type: type, activity_id: str, summary: str,
        start_to_close_timeout: timedelta = QUICK,
    ) -> Any:
        """A read of our own files or database: a local activity in lean runs, falling back to a
        regular one when it keeps failing; a regular one in older runs."""
        if self._lean:
            try:
                return await workflow.execute_local_activity(
                    activity,
                    arg,
                    result_type=result_type,
                    activity_id=activity_id,
                    start_to_close_timeout=LOCAL_ATTEMPT_TIMEOUT,
                    retry_policy=LOCAL_RETRY,
                    summary=summary,
                )
            except FailureError as err:  # temporalio 1.35 raises a local activity's own failure, not an ActivityError
                if is_cancelled_exception(err):
                    raise
                workflow.logger.warning("%s failed as a local activity, running it as a regular one: %s", activity, err)
        return await workflow.execute_activity(
            activity,
            arg,
            result_type=result_type,
            activity_id=activity_id,
            start_to_close_timeout=start_to_close_timeout,
            summary=summary,
        )

    async def _gather(self, source: SourceRequest, round_no: int) -> ConnectorResult:
        try:
            return await workflow.execute_activity(
                f"gather_{source.source}",
                source,
                result_type=ConnectorResult,
                activity_id=f"gather-{source.source}-{round_no}",
                start_to_close_timeout=QUICK,
                retry_policy=GATHER_RETRY,
                summary=f"{source.source}: {', '.join(source.items)}",
            )
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            error = f"{source.source} unavailable after retries: {cause}"
            return ConnectorResult(
                source=source.source, missing=[MissingContext(source=source.source, item=i, error=error) for i in source.items]
            )

    def _decide_by_policy(self) -> AcceptedDecision:
        assert self._policy is not None and self._evaluation is not None
        allowed = ", ".join(f.rule_id for f in self._evaluation.findings)
        return AcceptedDecision(
            outcome=self._policy.auto_outcome,
            decided_by=f"policy:{self._policy.ref}",
            reason=f"no rule requires a human; allowed by {allowed}",
            via="policy",
            level=-1,
            at=workflow.now(),
        )

    async def _open_gate(self) -> None:
        assert self._policy is not None and self._evaluation is not None and self._request is not None
        now = workflow.now()
        if self._gate is None:
            groups = [level.group for level in self._policy.gate.levels]
            roster = await self._local_read(
                "load_reviewer_roster",
                RosterRequest(groups=groups),
                result_type=Roster,
                activity_id="load-reviewer-roster",
                summary=f"who sits in {', '.join(groups)}",
            )
            self._gate = GateState(
                definition=self._policy.gate,
                requester=self._request.requester,
                roster=roster.members,
                level=self._evaluation.start_level,
                opened_at=now,
                level_started_at=now,
            )
        else:  # back from request_info: same gate, fresh deadlines, never a lower level
            self._gate.level = max(self._gate.level, self._evaluation.start_level)
            self._gate.level_started_at = now
            self._gate.round = len(self._rounds) + 1
            self._gate.decision = None
            self._gate.open = True
        self._state = CaseState.WAITING
        self._publish()

    async def _wait_for_decision(self) -> AcceptedDecision:
        gate = self._gate
        assert gate is not None
        reminded_level = -1
        while True:
            level = gate.definition.levels[gate.level]
            if reminded_level != gate.level:
                outcome = await self._wait_at_gate(gate.remind_at(), f"remind {gate.current_group}")
                if outcome == "decided":
                    return gate.decision  # type: ignore[return-value]
                if outcome == "escalate":
                    await self._escalate(f"operator {self._escalation_requested.operator}: {self._escalation_requested.reason}")  # type: ignore[union-attr]
                    continue
                gate.record_reminder(workflow.now())
                reminded_level = gate.level
                await self._notify("reminder", f"Reminder: {self.spec.ask(self._request)} is waiting for {level.title}.")  # type: ignore[arg-type]
                self._publish()
            action = "time out" if gate.is_last_level() else f"escalate to {gate.group_at(gate.level + 1)}"
            outcome = await self._wait_at_gate(gate.escalate_at(), action)
            if outcome == "decided":
                return gate.decision  # type: ignore[return-value]
            if outcome == "escalate":
                await self._escalate(f"operator {self._escalation_requested.operator}: {self._escalation_requested.reason}")  # type: ignore[union-attr]
                continue
            if gate.is_last_level():
                decision = gate.time_out(workflow.now())
                await self._notify("timeout", f"Timed out at {level.title}: recorded as {decision.outcome}.")
                return decision
            await self._escalate(f"no decision from {gate.current_group} within {level.escalate_after}")

    async def _escalate(self, reason: str) -> None:
        gate = self._gate
        assert gate is not None
        escalation = gate.escalate(workflow.now(), reason=reason)
        self._escalation_requested = None
        await self._notify(
            "escalation",
            f"Escalated to {gate.definition.levels[escalation.to_level].title}: {self.spec.ask(self._request)}",  # type: ignore[arg-type]
        )
        self._publish()

    async def _wait_at_gate(self, until, action: str) -> str:
        """Wait for a decision, an operator's escalation, or the deadline: 'decided', 'escalate' or 'deadline'."""
        gate = self._gate
        assert gate is not None

        def settled() -> bool:
            return not gate.open or self._escalation_requested is not None

        timeout = until - workflow.now()
        if timeout > timedelta(0) and not settled():
            self._parked_at_gate = True
            try:
                await workflow.wait_condition(settled, timeout=timeout, timeout_summary=f"{action} after {timeout}")
            except asyncio.TimeoutError:
                pass
            finally:
                self._parked_at_gate = False
        if not gate.open:
            return "decided"
        return "escalate" if self._escalation_requested is not None else "deadline"

    async def _notify(self, kind: str, message: str) -> None:
        gate = self._gate
        assert gate is not None
        info = workflow.info()
        key = f"{info.workflow_id}/{info.first_execution_run_id}/r{gate.round}/{kind}/level-{gate.level}"
        try:
            await workflow.execute_activity(
                "notify_reviewers",
                Notification(
                    notification_key=key,
                    case_id=info.workflow_id,
                    kind=kind,  # type: ignore[arg-type]
                    gate=gate.definition.name,
                    level=gate.level,
                    reviewer_group=gate.current_group,
                    recipients=gate.may_decide(),
                    message=message,
                ),
                activity_id=f"notify-{kind}-r{gate.round}-level-{gate.level}",
                start_to_close_timeout=QUICK,
                retry_policy=NOTIFY_RETRY,
                summary=f"{kind}: {gate.current_group}",
            )
        except ActivityError as err:
            workflow.logger.warning("notification %s not delivered: %s", key, err.cause or err)

    async def _record(self, decision: AcceptedDecision, started) -> RecordReceipt:
        assert self._request is not None
        self._state = CaseState.RECORDING
        self._publish()
        info = workflow.info()
        gate = self._gate
        # A case cancelled early may have no policy, evaluation or brief yet: record what there is.
        policy_ref = self._policy.ref if self._policy else "unresolved"
        evaluation, summary = self._evaluation, self._summary
        reason_codes = [c.value for c in evaluation.reason_codes] if evaluation else []
        trace = DecisionTrace(
            decision_trace=self.spec.kind.value,
            entities={**self.spec.entities(self._request), "policy": policy_ref},
            inputs=self._context.consulted(),
            human_gate=gate.definition.name if gate else None,
            case_id=info.workflow_id,
            business_key=self._request.business_key(),
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            request=self._request.model_dump(mode="json"),
            brief=summary.brief if summary else "",
            findings=evaluation.findings if evaluation else [],
            reason_codes=reason_codes,
            proposal=summary.proposal if summary else Proposal(outcome="none", rationale="no brief was written"),
            agent=summary.agent if summary else AgentNote(used=False),
            precedent_headline=self._headline or "",
            precedents_cited=[p.case_id for p in self._precedents],
            features=PrecedentFeatures(
                kind=self.spec.kind,
                policy=policy_ref,
                reason_codes=reason_codes,
                amount_band=self.spec.band(self._request),
                tags=self._tags,
            ),
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            decided_via=decision.via,
            reason=decision.reason,
            decided_level=decision.level if decision.level >= 0 else None,
            rounds=self._rounds,
            questions=self._questions,
            reminders=gate.reminders if gate else [],
            escalations=gate.escalations if gate else [],
            operator_actions=self._operator_actions,
            rejected_attempts=sorted(self._early_attempts + (gate.rejected_attempts if gate else []), key=lambda a: a.at),
            opened_at=started,
            gate_opened_at=gate.opened_at if gate else None,
            decided_at=decision.at,
        )
        return await workflow.execute_activity(
            "record_decision",
            RecordDecisionInput(decision_key=f"{info.workflow_id}#{info.first_execution_run_id}", trace=trace),
            result_type=RecordReceipt,
            activity_id="record-decision",
            start_to_close_timeout=QUICK,
            retry_policy=RECORD_RETRY,
            summary=f"record {decision.outcome} by {decision.decided_by}",
        )

    # -- what the UI and the inbox see ------------------------------------------------------

    def _publish(self) -> None:
        """Search attributes for the inbox and saved views, current details for the UI, in one step."""
        gate = self._gate
        waiting = self._state == CaseState.WAITING and gate is not None and gate.open
        updates = [sa.CASE_STATE.value_set(self._state.value)]
        if self._evaluation is not None:
            updates.append(sa.REASON_CODES.value_set([c.value for c in self._evaluation.reason_codes]))
        if gate is not None:
            updates += [
                sa.GATE.value_set(gate.definition.name),
                sa.ESCALATION_LEVEL.value_set(gate.level),
                sa.REVIEWER_GROUP.value_set(gate.current_group),
                sa.GATE_OPENED_AT.value_set(gate.opened_at),
            ]
            if waiting:
                updates += [sa.ELIGIBLE_GROUPS.value_set(gate.eligible_groups()), sa.NEXT_DEADLINE.value_set(gate.escalate_at())]
            else:
                updates += [sa.ELIGIBLE_GROUPS.value_unset(), sa.NEXT_DEADLINE.value_unset()]
        if self._decision is not None:
            updates.append(sa.OUTCOME.value_set(self._decision.outcome))
        self._upsert(updates)
        workflow.set_current_details(self._current_details())

    def _publish_from_handler(self) -> None:
        """Publish after a decision handler, unless the main loop is about to in this same activation.

        A decision that closes the gate wakes the loop parked at the gate, which publishes the next
        state (recording, or gathering after request_info) before it awaits anything: in lean runs
        one upsert instead of two."""
        if self._lean and self._parked_at_gate and self._gate is not None and not self._gate.open:
            return
        self._publish()

    def _upsert(self, updates: list) -> None:
        """Upsert search attributes; lean runs send only the values that changed (against the
        workflow's own view of its attributes, which each upsert updates), and nothing when none did."""
        if self._lean:
            current = workflow.info().typed_search_attributes
            updates = [u for u in updates if current.get(u.key) != u.value]
            if not updates:
                return
        workflow.upsert_search_attributes(updates)

    def _current_details(self) -> str:
        """Markdown for the UI's Current Details panel: what a reviewer needs to decide from the case page."""
        gate = self._gate
        lines = [f"## {self._state.value.capitalize()}", ""]
        if self._decision is not None:
            d = self._decision
            lines += [f"**{d.outcome}** by {d.decided_by} ({d.via}): {d.reason}", ""]
        if gate is not None and gate.open:
            level = gate.definition.levels[gate.level]
            lines += [
                f"- **{gate.definition.title} gate**, level {gate.level + 1} of {len(gate.definition.levels)}: "
                f"{level.title} (`{gate.current_group}`)",
                f"- **May decide now**: {', '.join(gate.may_decide()) or 'nobody on the roster'}",
                f"- **Reminder** {gate.remind_at():%Y-%m-%d %H:%M} UTC; "
                + ("**times out**" if gate.is_last_level() else "**escalates**")
                + f" {gate.escalate_at():%Y-%m-%d %H:%M} UTC",
                "",
                "Decide with **More Actions → Send a Signal → `decide`**, data:",
                "",
                "```json",
                json.dumps({"outcome": "approve", "reviewer": "<your id>", "reason": "<why>"}),
                "```",
                "",
                "`outcome` is `approve`, `reject` or `request_info`. Press **R** to refresh this panel after sending.",
                "",
            ]
            if gate.rejected_attempts:
                last = gate.rejected_attempts[-1]
                lines += [f"Last rejected attempt: {last.reviewer or 'unknown'}: {last.error}", ""]
        if self._summary is not None:
            lines.append(self._summary.brief)
        return "\n".join(lines)
