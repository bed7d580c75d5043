"""The decision loop, shared by the three case workflows.

gather context -> find precedents -> evaluate policy -> summarize -> (policy decides | gate waits
for a human, reminding and escalating on durable timers) -> record the decision trace.

Orchestration only: every I/O step is an activity, every rule lives in `gates`. Decisions arrive
as the `decide` signal (UI, `temporal workflow signal`) or the `submit_decision` update (CLI,
services); both go through the same `GateState` checks. A bad submission never raises inside a
handler: the update's validator rejects it before it reaches history, and the signal path records
it as a rejected attempt.

Since HARDENED_PATCH no input can wedge, lose or fake a case: every handler and the run method take
whatever payloads arrive and judge them in `workflows/guard.py`; a start under an ID that is not its
own case ID, or with a timeout, cron schedule, memo or UI text the case cannot honour, is refused at
once (its attributes cleared, so it cannot pose as a case); the workflow owns its search attributes
from its first task; a waiting case continues as new before its history grows past Temporal's
limits; what it writes is fitted under the payload limit; late signals reach the trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from activities.case_activities import (
        AdviseInput,
        PrecedentMatches,
        PrecedentQuery,
        ResolvePolicyInput,
        SummarizeInput,
    )
    from activities.directory import Roster, RosterRequest
    from activities.notify import Notification
    from activities.start_metadata import StartMetadata, StartMetadataRequest
    from gates import bounds
    from gates.brief import Proposal, ReviewerQuestion
    from gates.cases import REQUEST_MODELS, CaseRequest
    from gates.evidence import (
        ConnectorResult,
        ContextBundle,
        MissingContext,
        SourceRequest,
    )
    from gates.fit import fit_json
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
    from gates.presentation import (
        ask_markdown,
        current_details,
        static_details,
        static_summary,
    )
    from gates.text import md_block, neutralize
    from gates.trace import (
        AgentNote,
        CaseCarryOver,
        CaseResult,
        CaseState,
        CaseSummary,
        CaseView,
        DecisionTrace,
        LateAdditions,
        RecordDecisionInput,
        RecordReceipt,
        fitted_carry_over,
        fitted_trace,
        gate_view,
    )
    from workflows import search_attributes as sa
    from workflows.guard import InputProblem, preview, reviewer_of, single_json

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
# Everything since this patch: guarded input, refused starts, owned attributes, continue-as-new,
# fitted records, late attempts in the trace, heartbeats. Cases started before it keep their path.
HARDENED_PATCH = "guarded-input-owned-attributes-continue-as-new"
# Regular activities heartbeat (workers/heartbeat.py) so that after a worker crash an attempt is
# retried within this, not after its whole start-to-close timeout.
HEARTBEAT_TIMEOUT = timedelta(seconds=10)


# A starter's execution or run timeout at least this long is taken as none: no gate waits that
# long, and it is what the time-skipping test server sets when the starter gives none.
NO_TIMEOUT = timedelta(days=3650)


class CaseRefused(Exception):
    """A start the case cannot honour; the message says why, in one line."""


def _refused(message: str, type_: str) -> ApplicationError:
    return ApplicationError(message, type=type_, non_retryable=True)


Submitted = TypeVar("Submitted", bound=BaseModel)


def _submission(payloads: Sequence[Any], model: type[Submitted], *, what: str, invalid: str, refusal: str) -> Submitted:
    """The one `model` an update carries, or the refusal its validator raises (nothing is written)."""
    try:
        return model.model_validate(single_json(payloads, what=what))
    except InputProblem as problem:
        raise _refused(str(problem), refusal) from None
    except ValidationError as err:
        raise _refused(f"{invalid}: {validation_problems(err)}", refusal) from None


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
        self._hardened: bool | None = None  # HARDENED_PATCH: set by the first run step or signal
        self._parked_at_gate = False  # the main loop is waiting in `_wait_at_gate`
        self._started: datetime | None = None
        self._runs_before = 0  # runs of this case before this one (continue-as-new)
        self._signals_this_run = 0
        self._early_received = 0  # attempts ever kept in _early_attempts (which holds a bounded number)
        self._refusal: str | None = None
        self._trimmed: list[str] = []

    def _hardening(self) -> bool:
        """Whether this run takes the HARDENED_PATCH path (decided once, in a step that may write history)."""
        if self._hardened is None:
            self._hardened = workflow.patched(HARDENED_PATCH)
        return self._hardened

    # -- decisions in ---------------------------------------------------------------------------

    @workflow.signal(
        name="decide",
        description=(
            'Record a reviewer\'s decision. JSON: {"outcome": "approve" | "reject" | "request_info", '
            '"reviewer": "<your id>", "reason": "<why>"}. Invalid or unauthorized decisions are kept as rejected attempts.'
        ),
    )
    def decide(self, *payloads: RawValue) -> None:
        """Never raises: whatever arrives (no data, several payloads, any encoding, any JSON) is
        either a decision the gate accepts or a rejected attempt with its reason."""
        now = workflow.now()
        self._signals_this_run += 1
        self._hardening()
        try:
            value: Any = single_json(payloads, what="the decide signal")
        except InputProblem as problem:
            self._keep_attempt(RejectedAttempt.of(at=now, via="signal", reviewer=None, payload=preview(payloads), error=str(problem)))
            self._publish_from_handler()
            return
        not_accepting = self._not_accepting()
        if not_accepting is not None:
            self._keep_attempt(
                RejectedAttempt.of(at=now, via="signal", reviewer=reviewer_of(value), payload=value, error=not_accepting)
            )
        else:
            assert self._gate is not None
            self._gate.submit_raw(value, "signal", now)
        self._publish_from_handler()

    def _keep_attempt(self, attempt: RejectedAttempt) -> None:
        keep_attempt(self._early_attempts, attempt)
        self._early_received += 1

    def _attempts_received(self) -> int:
        """Every rejected attempt this case has kept, including those later dropped by the bound."""
        return self._early_received + (self._gate.attempts_received if self._gate else 0)

    @workflow.update(
        name="submit_decision",
        description="Decide and get the result back; rejected with the reason when the decision is not allowed.",
    )
    def submit_decision(self, *payloads: RawValue) -> DecisionReceipt:
        decision = self._decision_in(payloads)
        problem = self._problem_with(decision)
        if problem:  # a concurrent update may have decided between validation and now
            raise _refused(problem, "DecisionRejected")
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
    def _validate_decision(self, *payloads: RawValue) -> None:
        problem = self._problem_with(self._decision_in(payloads))
        if problem:
            raise _refused(problem, "DecisionRejected")

    @staticmethod
    def _decision_in(payloads: Sequence[Any]) -> Decision:
        """The one Decision the update carries; refused (not retryable, nothing written) otherwise."""
        return _submission(payloads, Decision, what="submit_decision", invalid="invalid decision", refusal="DecisionRejected")

    def _not_accepting(self) -> str | None:
        """Why no decision can be taken at all right now, or None when the gate should judge it."""
        gate = self._gate
        if gate is not None and (gate.open or self._state == CaseState.WAITING or self._decision is not None):
            return None  # the gate answers, including "already decided: ..."
        if self._decision is not None:
            d = self._decision
            return f"case already decided: {d.outcome} by {d.decided_by}"
        if self._state == CaseState.REFUSED:
            return "this start was refused and is not a case"
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
    async def operator_action(self, *payloads: RawValue) -> OperatorReceipt:
        action = self._operator_action_in(payloads)
        problem = self._operator_problem(action)  # state may have moved since validation
        if problem:
            raise _refused(problem, "OperatorActionRejected")
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
                raise _refused(f"group {action.group} has no active members", "OperatorActionRejected")
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
    def _validate_operator_action(self, *payloads: RawValue) -> None:
        problem = self._operator_problem(self._operator_action_in(payloads))
        if problem:
            raise _refused(problem, "OperatorActionRejected")

    @staticmethod
    def _operator_action_in(payloads: Sequence[Any]) -> OperatorAction:
        return _submission(
            payloads, OperatorAction, what="operator_action", invalid="invalid operator action", refusal="OperatorActionRejected"
        )

    def _operator_problem(self, action: OperatorAction) -> str | None:
        # Retry and note stay possible while recording (the record activity is what may be stuck);
        # they reach the case state and history, though the trace was composed before recording.
        if self._state == CaseState.REFUSED:
            return "this start was refused and is not a case"
        if self._state == CaseState.DECIDED or (
            self._state == CaseState.RECORDING and action.action not in (OperatorActionKind.RETRY, OperatorActionKind.NOTE)
        ):
            return f"case is already {self._state.value}"
        if self._hardened and action.action != OperatorActionKind.CANCEL and len(self._operator_actions) >= bounds.MAX_OPERATOR_ACTIONS:
            return f"this case already keeps {bounds.MAX_OPERATOR_ACTIONS} operator actions, the most it takes; only cancel is still possible"
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
    def case_state(self, *payloads: RawValue) -> CaseView:
        """Takes no input; any that is sent is ignored."""
        if self._refusal is not None:
            raise _refused(f"this start was refused: {self._refusal}", "CaseRefused")
        if self._request is None:  # queried before the first workflow task ran
            raise _refused("case is starting; ask again in a moment", "CaseStarting")
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

    async def run_case(self, payloads: Sequence[Any]) -> CaseResult:
        """The run method of every kind: admit the start (or resume a continued case), decide, record."""
        if not self._hardening():
            return await self._run_admitted(self._legacy_request(payloads), resumed=False)
        carried = self._carried_over(payloads)
        if carried is not None:
            self._restore(carried)
            return await self._run_admitted(self._request, resumed=True)  # type: ignore[arg-type]
        try:
            request = self._admissible_request(payloads)
        except CaseRefused as refusal:
            self._refuse(str(refusal))
        self._request = request
        self._started = workflow.now()
        self._lean = workflow.patched(LEAN_PATCH)
        problem = await self._start_metadata_problem(request)
        if problem:
            self._refuse(problem)
        return await self._run_admitted(request, resumed=False)

    def _legacy_request(self, payloads: Sequence[Any]) -> CaseRequest:
        """Before HARDENED_PATCH: the one start payload, decoded and validated; an invalid one fails the case."""
        try:
            return self._parsed_request(payloads)
        except CaseRefused as invalid:
            raise _refused(str(invalid), "InvalidCase") from None

    def _parsed_request(self, payloads: Sequence[Any]) -> CaseRequest:
        """One strict JSON payload that is a valid case of this kind, or CaseRefused naming what is wrong."""
        kind = self.spec.kind.value
        try:
            return REQUEST_MODELS[self.spec.kind].model_validate(single_json(payloads, what="the start payload"))
        except InputProblem as problem:
            raise CaseRefused(f"invalid {kind} case: {problem}") from None
        except ValidationError as err:
            raise CaseRefused(f"invalid {kind} case: {validation_problems(err)}") from None

    def _admissible_request(self, payloads: Sequence[Any]) -> CaseRequest:
        """The case request, if this start is one the case can honour; CaseRefused says why not.

        The starter chooses the workflow ID, the options and the attributes, so each is checked:
        one strict JSON payload that is a valid case of this kind, under exactly its own case ID
        (else a within-policy payload could be started under a privileged request's ID and be
        approved as that request), with no timeout (a case must end with a recorded outcome, never
        by timing out), no cron schedule and no memo."""
        kind = self.spec.kind.value
        request = self._parsed_request(payloads)
        info = workflow.info()
        if info.workflow_id != request.case_id():
            shown = neutralize(info.workflow_id[:200], keep_newlines=False)
            raise CaseRefused(
                f"workflow ID {shown!r} is not this case's ID: this payload is case {request.case_id()!r} "
                f"(a {kind} case runs under `{kind}:<business key>`; see `hitl schema`)"
            )
        if any(t is not None and t < NO_TIMEOUT for t in (info.execution_timeout, info.run_timeout)):
            raise CaseRefused(
                "a case must not be started with an execution or run timeout: it ends with a recorded "
                "outcome (its policy says what happens when reviewers do not decide in time)"
            )
        if info.cron_schedule:
            raise CaseRefused("a case must not be started with a cron schedule")
        if info.raw_memo:
            raise CaseRefused("a case must not be started with a memo: what the case shows comes from the case")
        return request

    async def _start_metadata_problem(self, request: CaseRequest) -> str | None:
        """The UI shows a start's static summary and details as the case's own words; only the
        case's own text (as `CaseClient` sends it) or none is accepted."""
        info = workflow.info()
        metadata = await self._local_read(
            "read_start_metadata",
            StartMetadataRequest(workflow_id=info.workflow_id, run_id=info.run_id),
            result_type=StartMetadata,
            activity_id="read-start-metadata",
            summary="read the start's static summary and details",
        )
        for name, sent, own in (
            ("static summary", metadata.static_summary, static_summary(request)),
            ("static details", metadata.static_details, static_details(request)),
        ):
            if sent is not None and sent != own:
                return (
                    f"the start's {name} is not this case's own text; start the case without one "
                    "(or through CaseClient, which sends the case's own): the UI shows it as the case's words"
                )
        return None

    def _refuse(self, reason: str) -> NoReturn:
        """End a start the case cannot honour: no attribute of the starter's stays (so it cannot pose
        as a case in the inbox or a lookup), and the failure says why."""
        self._refusal = reason
        self._state = CaseState.REFUSED
        self._upsert(
            [sa.CASE_STATE.value_set(CaseState.REFUSED.value)]
            + [key.value_unset() for key in sa.ALL_SEARCH_ATTRIBUTES if key != sa.CASE_STATE]
        )
        workflow.set_current_details(f"## Refused\n\nThis start is not a case:\n\n{md_block(reason)}")
        raise _refused(reason, "CaseRefused")

    def _carried_over(self, payloads: Sequence[Any]) -> CaseCarryOver | None:
        """The state handed over by this case's previous run, when this run continues it.

        Only Temporal sets `continued_run_id`, and the IDs must be this case's: a start cannot pass
        off a forged state. A retry or cron run (also continued) carries the original request."""
        info = workflow.info()
        if info.continued_run_id is None:
            return None
        try:
            value = single_json(payloads, what="the carried-over state")
        except InputProblem:
            return None
        if not (isinstance(value, dict) and value.get("carried_over") is True):
            return None
        carried = CaseCarryOver.model_validate(value)
        if (carried.workflow_id, carried.first_execution_run_id, carried.kind) != (
            info.workflow_id,
            info.first_execution_run_id,
            self.spec.kind,
        ):
            raise _refused("carried-over state of another case", "CaseRefused")
        return carried

    def _restore(self, carried: CaseCarryOver) -> None:
        self._request = REQUEST_MODELS[self.spec.kind].model_validate(carried.request)
        self._started = carried.started_at
        self._lean = True
        self._runs_before = carried.runs
        self._policy = carried.policy
        self._context = carried.context
        self._evaluation = carried.evaluation
        self._precedents = carried.precedents
        self._headline = carried.headline
        self._summary = carried.summary
        self._tags = carried.tags
        self._gate = carried.gate
        self._rounds = carried.rounds
        self._questions = carried.questions
        self._early_attempts = carried.early_attempts
        self._early_received = carried.attempts_received - carried.gate.attempts_received
        self._operator_actions = carried.operator_actions
        self._trimmed = carried.trimmed
        self._state = CaseState.WAITING

    def _carry_over(self) -> CaseCarryOver:
        """This case's state for its next run, fitted under the payload limit."""
        assert self._request is not None and self._policy is not None and self._evaluation is not None
        assert self._summary is not None and self._gate is not None and self._started is not None
        info = workflow.info()
        state = CaseCarryOver(
            workflow_id=info.workflow_id,
            first_execution_run_id=info.first_execution_run_id,
            runs=self._runs_before + 1,
            kind=self.spec.kind,
            request=self._request.model_dump(mode="json"),
            started_at=self._started,
            policy=self._policy,
            context=self._context,
            evaluation=self._evaluation,
            precedents=self._precedents,
            headline=self._headline,
            summary=self._summary,
            tags=self._tags,
            gate=self._gate,
            rounds=self._rounds,
            questions=self._questions,
            early_attempts=self._early_attempts,
            attempts_received=self._attempts_received(),
            operator_actions=self._operator_actions,
            trimmed=self._trimmed,
        )
        return fitted_carry_over(state)

    async def _run_admitted(self, request: CaseRequest, *, resumed: bool) -> CaseResult:
        self._request = request
        if not resumed:
            if not self._hardened:
                self._started = workflow.now()
                self._lean = workflow.patched(LEAN_PATCH)
            self._policy = await self._local_read(
                "resolve_policy",
                ResolvePolicyInput(kind=self.spec.kind),
                result_type=Policy,
                activity_id="resolve-policy",
                summary=f"resolve the current {self.spec.kind.value} policy",
            )
            self._upsert(self._case_attributes(request))
        else:
            self._publish()
        cancelled = False
        try:
            decision = await self._decide(resumed=resumed)
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
        assert self._started is not None
        receipt = await self._record(decision, self._started)
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

    def _case_attributes(self, request: CaseRequest) -> list:
        """The attributes a case sets when it opens. Since HARDENED_PATCH also every other attribute of
        ours unset: the workflow owns them from its first task, whatever the starter set."""
        assert self._policy is not None
        updates = [
            sa.CASE_KIND.value_set(self.spec.kind.value),
            sa.BUSINESS_KEY.value_set(request.business_key()),
            sa.POLICY.value_set(self._policy.ref),
            sa.REQUESTER.value_set(request.requester),
            sa.ASK.value_set(self.spec.ask(request)),
            sa.CASE_STATE.value_set(CaseState.GATHERING.value),
        ] + ([sa.AMOUNT_MINOR.value_set(m)] if (m := self.spec.amount_minor(request)) is not None else [])
        if self._hardened:
            owned = {update.key.name for update in updates}
            updates += [key.value_unset() for key in sa.ALL_SEARCH_ATTRIBUTES if key.name not in owned]
        return updates

    async def _decide(self, *, resumed: bool = False) -> AcceptedDecision:
        """Loop until a final decision: by policy, by a reviewer, by timeout, or by an operator."""
        while True:
            if not resumed:
                await self._gather_evaluate_summarize()
                assert self._evaluation is not None
                if not self._evaluation.requires_human and self._gate is None:
                    return self._decide_by_policy()
                await self._open_gate()
            resumed = False
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
                exclude_case_id=None if self._hardened else workflow.info().workflow_id,
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
                ask=ask_markdown(self._request),
                requester=self._request.requester,
                justification=self._request.justification,
                context=self._context,
                evaluation=self._evaluation,
                precedents=self._precedents,
                headline=self._headline,
                questions=self._questions[-bounds.QUESTIONS_IN_BRIEF :] if self._hardened else self._questions,
                earlier_questions=max(0, len(self._questions) - bounds.QUESTIONS_IN_BRIEF) if self._hardened else 0,
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
                heartbeat_timeout=self._heartbeat(),
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
                heartbeat_timeout=self._heartbeat(),
                retry_policy=GATHER_RETRY,
                summary=f"{source.source}: {', '.join(source.items)}",
            )
        except ActivityError as err:
            cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            error = f"{source.source} unavailable after retries: {cause}"
            return ConnectorResult(
                source=source.source, missing=[MissingContext(source=source.source, item=i, error=error) for i in source.items]
            )

    def _heartbeat(self) -> timedelta | None:
        return HEARTBEAT_TIMEOUT if self._hardened else None

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
        while True:
            level = gate.definition.levels[gate.level]
            # reminded at this level since it started (derived from the gate, so it survives continue-as-new)
            reminded = any(r.level == gate.level and r.at >= gate.level_started_at for r in gate.reminders)
            if not reminded:
                outcome = await self._wait_at_gate(gate.remind_at(), f"remind {gate.current_group}")
                if outcome == "decided":
                    return gate.decision  # type: ignore[return-value]
                if outcome == "escalate":
                    await self._escalate(f"operator {self._escalation_requested.operator}: {self._escalation_requested.reason}")  # type: ignore[union-attr]
                    continue
                if outcome == "continue":
                    await self._continue_as_new()
                    continue
                gate.record_reminder(workflow.now())
                await self._notify("reminder", f"Reminder: {self.spec.ask(self._request)} is waiting for {level.title}.")  # type: ignore[arg-type]
                self._publish()
            action = "time out" if gate.is_last_level() else f"escalate to {gate.group_at(gate.level + 1)}"
            outcome = await self._wait_at_gate(gate.escalate_at(), action)
            if outcome == "decided":
                return gate.decision  # type: ignore[return-value]
            if outcome == "escalate":
                await self._escalate(f"operator {self._escalation_requested.operator}: {self._escalation_requested.reason}")  # type: ignore[union-attr]
                continue
            if outcome == "continue":
                await self._continue_as_new()
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
        """Wait for a decision, an operator's escalation, the deadline, or the time to continue as
        new: 'decided', 'escalate', 'deadline' or 'continue'."""
        gate = self._gate
        assert gate is not None

        def settled() -> bool:
            return not gate.open or self._escalation_requested is not None or self._continue_as_new_due()

        timeout = until - workflow.now()
        if timeout > timedelta(0) and not settled():
            self._parked_at_gate = True
            try:
                await workflow.wait_condition(settled, timeout=timeout, timeout_summary=f"{action} after {timeout}")
            except TimeoutError:
                pass
            finally:
                self._parked_at_gate = False
        if not gate.open:
            return "decided"
        if self._escalation_requested is not None:
            return "escalate"
        if self._continue_as_new_due() and until > workflow.now():
            return "continue"
        return "deadline"

    def _continue_as_new_due(self) -> bool:
        """Temporal suggests it, this run took many signals (the server refuses more than
        SERVER_MAX_SIGNALS_PER_RUN per run), or the history passed our own bounds (gates/bounds.py)."""
        if not self._hardened:
            return False
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or self._signals_this_run >= bounds.CONTINUE_AS_NEW_AFTER_SIGNALS
            or info.get_current_history_size() >= bounds.CONTINUE_AS_NEW_AFTER_HISTORY_BYTES
            or info.get_current_history_length() >= bounds.CONTINUE_AS_NEW_AFTER_EVENTS
        )

    async def _continue_as_new(self) -> None:
        """Hand the waiting case to a fresh run with its state; returns only if a decision or an
        escalation came first (the loop handles it, then the case continues as new)."""
        gate = self._gate
        assert gate is not None
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() or not gate.open or self._escalation_requested is not None
        )
        if not gate.open or self._escalation_requested is not None:
            return
        workflow.continue_as_new(self._carry_over())

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
                heartbeat_timeout=self._heartbeat(),
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
            trimmed=self._trimmed,
        )
        decision_key = f"{info.workflow_id}#{info.first_execution_run_id}"
        if self._hardened:
            trace = fitted_trace(trace)
        recorded = self._late_mark()
        receipt = await workflow.execute_activity(
            "record_decision",
            RecordDecisionInput(decision_key=decision_key, trace=trace),
            result_type=RecordReceipt,
            activity_id="record-decision",
            start_to_close_timeout=QUICK,
            heartbeat_timeout=self._heartbeat(),
            retry_policy=RECORD_RETRY,
            summary=f"record {decision.outcome} by {decision.decided_by}",
        )
        if self._hardened:
            await self._record_late_additions(decision_key, recorded)
        return receipt

    def _late_mark(self) -> tuple[int, int]:
        """How much the trace holds: attempts received and operator actions taken so far."""
        return self._attempts_received(), len(self._operator_actions)

    async def _record_late_additions(self, decision_key: str, recorded: tuple[int, int]) -> None:
        """Decisions signalled while the trace was being written are refused ("already decided") and
        kept, and operators may still note or retry: add them to the trace until nothing is left
        unrecorded, so the record holds every attempt and every action."""
        round_no = 0
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            now_held = self._late_mark()
            if now_held == recorded:
                return
            round_no += 1
            gate = self._gate
            attempts = sorted(self._early_attempts + (gate.rejected_attempts if gate else []), key=lambda a: a.at)
            fitted, _ = fit_json(
                {
                    "rejected_attempts": [a.model_dump(mode="json") for a in attempts],
                    "operator_actions": [a.model_dump(mode="json") for a in self._operator_actions],
                },
                bounds.MAX_CASE_PAYLOAD_BYTES // 2,
            )
            await workflow.execute_activity(
                "record_late_additions",
                LateAdditions(decision_key=decision_key, **fitted),
                activity_id=f"record-late-additions-{round_no}",
                start_to_close_timeout=QUICK,
                heartbeat_timeout=self._heartbeat(),
                retry_policy=RECORD_RETRY,
                summary="add what arrived while recording to the trace",
            )
            recorded = now_held

    # -- what the UI and the inbox see ------------------------------------------------------

    def _publish(self) -> None:
        """Search attributes for the inbox and saved views, current details for the UI, in one step."""
        gate = self._gate
        waiting = self._state == CaseState.WAITING and gate is not None and gate.open
        updates: list[SearchAttributeUpdate[Any]] = [sa.CASE_STATE.value_set(self._state.value)]
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
        workflow.set_current_details(
            current_details(
                state=self._state.value,
                decision=self._decision,
                gate=gate,
                brief=self._summary.brief if self._summary is not None else None,
            )
        )

    def _publish_from_handler(self) -> None:
        """Publish after a decision handler, unless the main loop is about to in this same activation.

        A decision that closes the gate wakes the loop parked at the gate, which publishes the next
        state (recording, or gathering after request_info) before it awaits anything: in lean runs
        one upsert instead of two."""
        if self._lean and self._parked_at_gate and self._gate is not None and not self._gate.open:
            return
        if self._hardened and self._request is None:
            return  # before the run's first step: the case publishes its own attributes once admitted
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
