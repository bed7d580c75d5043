"""The decision loop, shared by the three case workflows.

gather context -> find precedents -> evaluate policy -> summarize -> (policy decides | gate waits
for a human, reminding and escalating on durable timers) -> record the decision trace.

Orchestration only: every I/O step is an activity, called by method reference so that its input
and result types are checked (workflows/activity_calls.py); every rule lives in `gates`. The case's
state is one `CaseFile` (gates/case_file.py); what others see of it (the reviewer view, the UI's
Current Details, the search attributes, the trace) is composed in gates/composition.py; the wait at
the gate, with its reminders, escalations and timeout, is workflows/gate_wait.py. Decisions arrive
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
from functools import partial
from typing import Any, ClassVar, NoReturn

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.case_activities import CaseActivities
    from activities.directory import DirectoryActivities
    from activities.openings import OpeningActivities
    from activities.start_metadata import StartMetadataActivities
    from gates import composition as compose
    from gates.brief import ReviewerQuestion
    from gates.case_file import AtGate, CaseFile, decided_by_policy
    from gates.cases import CaseRequest
    from gates.directory import narrowed_roster
    from gates.duties import Delegation
    from gates.evidence import ConnectorResult, ContextBundle, SourceRequest
    from gates.gate import (
        AcceptedDecision,
        Decision,
        DecisionOutcome,
        DecisionReceipt,
        GateState,
        Identity,
        OperatorAction,
        OperatorActionKind,
        OperatorReceipt,
        OperatorRecord,
        RejectedAttempt,
        format_validation_error,
    )
    from gates.identity import ProofRefused
    from gates.info_request import AnswerReceipt, InfoAnswer, InfoRequest
    from gates.kinds import CaseSpec
    from gates.messages import (
        AdviseInput,
        GateReadRequest,
        GateReads,
        OpenAndGatherRequest,
        OpenCaseRequest,
        PrecedentMatches,
        PrecedentQuery,
        PrecedentsAndGateRequest,
        RecordDecisionInput,
        RecordReceipt,
        ResolvePolicyInput,
        RosterRequest,
        SourceAttempt,
        StartMetadataRequest,
    )
    from gates.policy import Policy, PolicyEvaluation, evaluate
    from gates.trace import AgentNote, CaseResult, CaseState, CaseSummary, CaseView, fitted_trace
    from workflows import activity_calls as calls
    from workflows import history_budget
    from workflows.audit_outbox import AuditBatch, audit_batch
    from workflows.gate_wait import GateWait
    from workflows.guard import (
        CaseRefused,
        InputProblem,
        admissible_request,
        carried_over,
        parsed_request,
        preview,
        refusal,
        reviewer_of,
        single_json,
        start_metadata_problem,
        submission,
    )
    from workflows.info_wait import InfoWait
    from workflows.trust import TRUST_PATCH, CaseTrust, DirectoryUnavailable

# Reads of our own files and database as local activities (workflows/activity_calls.py), and
# upserts of changed attributes only. Cases started before it keep regular activities and
# publishing every attribute.
LEAN_PATCH = "local-reads-and-changed-only-upserts"
# Everything since this patch: guarded input, refused starts, owned attributes, continue-as-new,
# fitted records, late attempts in the trace, heartbeats. Cases started before it keep their path.
HARDENED_PATCH = "guarded-input-owned-attributes-continue-as-new"
# One marker for all of the above: a case started since takes every one of them (LEAN, HARDENED,
# TRUST) without recording three markers (each also upserts TemporalChangeVersion, so six events),
# and reads its start's UI text with its policy, and its gate's roster with the issuers' keys, in one
# local activity each (activities/openings.py). Cases started before keep the markers they recorded.
COMBINED_PATCH = "one-marker-combined-reads"
# One marker for all of the above, and fewer steps per case (BENCHMARKS.md, "Seventh run"): the
# opening read also asks the first round's sources, once and briefly (activities/openings.py), and a
# source that did not answer there is asked as the regular activity it was, so a slow or failing one
# still shows in `hitl ops stuck`; later rounds ask each source as a local activity first
# (workflows/activity_calls.py). The first round reads its precedents with its gate's roster (of every
# group its policy may ask for, narrowed once the evaluation says which) and the issuers' keys, in
# one local activity; and the workflow writes the deterministic brief itself (`written_brief`, as
# `summarize_case` does), knowing from its opening read whether an agent advises. Cases started
# before keep the markers they recorded.
LOCAL_GATHERS_PATCH = "one-marker-local-gathers-inline-brief"
# A request_info question goes to a person (the requester, or whom the reviewer names) and the case
# waits for the answer on timers of its own (workflows/info_wait.py), then gathers again and returns
# to the gate. Decided lazily, where a trusted case first takes a request_info decision, so cases that
# never ask record no marker; cases without it keep going straight back to gathering.
INFO_WAIT_PATCH = "request-info-waits-for-answer"
# A decide signal that reaches a continued run in its first task, before the run has restored the
# carried state, waits for it; before this patch it was judged against the empty state ("starting")
# and the attempt was then overwritten by the restore. Decided lazily, in that handler only.
SIGNAL_AFTER_RESTORE_PATCH = "signal-waits-for-restored-state"
# A one-off delegation (`hitl delegate`) lasts as long as the case waits; this only bounds it.
ONE_OFF_DELEGATION = timedelta(days=3650)


class CaseWorkflow:
    """Base of the per-kind workflows; subclasses set `spec` and a typed `run`."""

    spec: ClassVar[CaseSpec]

    def __init__(self) -> None:
        self._case = CaseFile()
        # How this run executes, not what the case knows:
        self._lean = False  # LEAN_PATCH: set once at the start of the run
        self._hardened = False  # HARDENED_PATCH: decided by the first run step or signal
        self._combined = False  # COMBINED_PATCH: decided with it
        self._local_gathers = False  # LOCAL_GATHERS_PATCH: decided with it
        self._patch_decided = False
        self._waiting: GateWait | None = None  # the main loop's wait at the gate, while it waits
        self._answering: InfoWait | None = None  # the main loop's wait for an answer, while it waits
        self._info_wait: bool | None = None  # INFO_WAIT_PATCH: decided at the first request_info decision
        self._signals_this_run = 0
        self._trust: CaseTrust | None = None  # TRUST_PATCH: set with `self._case.trusted`
        self._started: datetime | None = None  # when the case started (its first run's, for a continued case)
        self._first_round: list[SourceAttempt] | None = None  # asked with the opening read (LOCAL_GATHERS_PATCH)
        self._first_gate_reads: GateReads | None = None  # read with the first round's precedents (LOCAL_GATHERS_PATCH)

    def _hardening(self) -> bool:
        """Whether this run takes the HARDENED_PATCH path (decided once, in a step that may write history)."""
        if not self._patch_decided:
            self._local_gathers = workflow.patched(LOCAL_GATHERS_PATCH)
            self._combined = self._local_gathers or workflow.patched(COMBINED_PATCH)
            self._hardened = self._combined or workflow.patched(HARDENED_PATCH)
            self._patch_decided = True
        return self._hardened

    def _restoring(self) -> bool:
        """A continued run whose first task has not restored the carried state yet. Temporal hands
        the run its first signals and updates with that task, before the run method's first step;
        a handler then waits for the state instead of refusing the sender as "starting"."""
        return (
            self._case.request is None
            and self._case.state != CaseState.REFUSED
            and workflow.info().continued_run_id is not None
        )

    async def _restored(self) -> None:
        await workflow.wait_condition(lambda: not self._restoring())

    def _info_waits(self) -> bool:
        """Whether a request_info question goes to a person and the case waits for the answer
        (INFO_WAIT_PATCH, trusted cases only; decided once, in a handler or step that may write history)."""
        if self._info_wait is None:
            self._info_wait = self._case.trusted and self._trust is not None and workflow.patched(INFO_WAIT_PATCH)
        return self._info_wait

    async def _asked_problem(self, gate: GateState, decision: Decision) -> str | None:
        """Why this request_info question cannot go to the person it names (the requester by default):
        they must be a known, active person in the directory, read now. None for any other decision,
        and for cases that do not send questions to a person."""
        if decision.outcome != DecisionOutcome.REQUEST_INFO or self._trust is None or not self._info_waits():
            return None
        asked = self._asked(decision)
        if problem := self._case.ask_problem(decision.reviewer, asked):
            return problem
        roster = await self._trust.roster(gate.definition.name, [], [asked])  # DirectoryUnavailable: refused
        return self._case.ask_problem(decision.reviewer, asked, roster)

    def _asked(self, decision: Decision) -> str:
        assert self._case.request is not None
        return decision.ask or self._case.request.requester

    def _question_sent(self, gate: GateState, decision: Decision) -> InfoRequest | None:
        """After an accepted decision: a request_info question that closed the gate goes to the person
        asked, and the case waits for the answer (since INFO_WAIT_PATCH, decided already)."""
        taken = gate.decision
        if not self._info_wait or gate.open or taken is None or taken.outcome != DecisionOutcome.REQUEST_INFO.value:
            return None
        return self._case.ask_for_info(taken, self._asked(decision), workflow.now())

    # -- decisions in ---------------------------------------------------------------------------

    @workflow.signal(
        name="decide",
        description=(
            'Record a reviewer\'s decision. JSON: {"outcome": "approve" | "reject" | "request_info", '
            '"reviewer": "<your id>", "reason": "<why>"}. Invalid or unauthorized decisions are kept as rejected attempts.'
        ),
    )
    async def decide(self, *payloads: RawValue) -> None:
        """Never raises: whatever arrives (no data, several payloads, any encoding, any JSON) is
        either a decision the gate accepts or a rejected attempt with its reason."""
        self._signals_this_run += 1
        self._hardening()
        if self._restoring() and workflow.patched(SIGNAL_AFTER_RESTORE_PATCH):
            await self._restored()
        now = workflow.now()
        try:
            value: Any = single_json(payloads, what="the decide signal")
            judge, shown, reviewer = self._case.judging_gate(), value, reviewer_of(value)
        except InputProblem as problem:
            judge, shown, reviewer = str(problem), preview(payloads), None
        if isinstance(judge, str):
            self._case.keep_attempt(RejectedAttempt.of(at=now, via="signal", reviewer=reviewer, payload=shown, error=judge))
        elif self._trust is not None:
            await self._decide_trusted(judge, value)
        else:
            judge.submit_raw(value, "signal", now)
        self._publish_from_handler()

    async def _decide_trusted(self, gate: GateState, value: Any) -> None:
        """The signal path of a trusted case: the proof verified (keys fetched again for a key id not
        seen), the gate's rules applied, and the directory read again before the decision is taken."""
        assert self._trust is not None
        now = workflow.now()
        try:
            decision = Decision.model_validate(value)
        except ValidationError as err:
            gate.reject(value, "signal", now, format_validation_error(err), reviewer_of(value))
            return
        try:
            identity = await self._trust.verified(decision.reviewer, decision.proof, channel="decide signal")
            if not (problem := gate.problem_with(decision, workflow.now())):
                await self._trust.refresh_gate(gate)
                problem = await self._asked_problem(gate, decision)
        except (ProofRefused, DirectoryUnavailable) as refused:
            gate.reject(value, "signal", workflow.now(), str(refused), decision.reviewer)
            return
        if problem is None and (waiting_for := self._case.awaiting_problem()) is not None:
            problem = waiting_for  # another decision sent the case to wait for an answer during the reads
        if problem:
            gate.reject(value, "signal", workflow.now(), problem, decision.reviewer)
        elif gate.submit(decision, value, "signal", workflow.now(), identity) is not None:
            self._question_sent(gate, decision)

    @workflow.update(
        name="submit_decision",
        description="Decide and get the result back; rejected with the reason when the decision is not allowed.",
    )
    async def submit_decision(self, *payloads: RawValue) -> DecisionReceipt:
        if self._restoring():  # accepted unjudged (see the validator): judged now, as the validator would
            await self._restored()
            self._validate_decision(*payloads)
        decision = self._decision_in(payloads)
        identity: Identity | None = None
        if self._trust is not None:
            try:
                identity = await self._trust.verified(decision.reviewer, decision.proof, channel="submit_decision")
                await self._trust.refresh_gate(self._gate_accepting(decision))  # removed or inactive since: refused
                if problem := await self._asked_problem(self._gate_accepting(decision), decision):
                    raise refusal(problem, "DecisionRejected")
            except (ProofRefused, DirectoryUnavailable) as refused:
                raise refusal(str(refused), "DecisionRejected") from None
        gate = self._gate_accepting(decision)  # a concurrent update may have decided between validation and now
        accepted = gate.accept(decision, "update", workflow.now(), identity)
        question = self._question_sent(gate, decision)
        self._publish_from_handler()
        message = f"{accepted.outcome} by {accepted.decided_by} accepted at level {accepted.level + 1}"
        if question is not None:
            message += f"; the question went to {question.asked}, answer due by {question.due_at.isoformat(timespec='seconds')}"
        if gate.open:  # toward a quorum: kept, and the case waits for the rest
            message = f"{accepted.outcome} by {accepted.decided_by} recorded; still needed: {', '.join(gate.still_needed())}"
        return DecisionReceipt(
            case_id=workflow.info().workflow_id,
            accepted=True,
            outcome=accepted.outcome,
            reviewer=accepted.decided_by,
            level=accepted.level,
            message=message,
        )

    @submit_decision.validator
    def _validate_decision(self, *payloads: RawValue) -> None:
        if self._restoring():  # the handler judges it once the state is back (in this same task)
            return
        decision = self._decision_in(payloads)
        self._check_identity(decision.reviewer, decision.proof, channel="submit_decision", refused_as="DecisionRejected")
        self._gate_accepting(decision)
        if decision.ask is not None and not self._case.trusted:
            raise refusal(
                "this case was started before questions went to a person: leave out `ask` (it gathers again and returns)",
                "DecisionRejected",
            )
        if decision.ask is not None and (problem := self._case.ask_problem(decision.reviewer, decision.ask)):
            raise refusal(problem, "DecisionRejected")

    def _check_identity(self, person: str, proof: str | None, *, channel: str, refused_as: str) -> None:
        """A validator's check of the sender's proof (trusted cases); a key id not seen yet passes to the handler."""
        if self._trust is not None:
            try:
                self._trust.identity(person, proof, channel=channel)
            except ProofRefused as refused:
                raise refusal(str(refused), refused_as) from None

    @staticmethod
    def _decision_in(payloads: Sequence[Any]) -> Decision:
        """The one Decision the update carries; refused (not retryable, nothing written) otherwise."""
        return submission(payloads, Decision, what="submit_decision", invalid="invalid decision", refused_as="DecisionRejected")

    def _gate_accepting(self, decision: Decision) -> GateState:
        """The gate that accepts this decision now, or the refusal that says why it does not."""
        judge = self._case.judging_gate()
        if isinstance(judge, str):
            raise refusal(judge, "DecisionRejected")
        if problem := judge.problem_with(decision, workflow.now()):
            raise refusal(problem, "DecisionRejected")
        return judge

    @workflow.update(
        name="answer_info",
        description=(
            "Answer the question a reviewer asked (request_info): the person asked, or an operator. "
            'JSON: {"answerer": "<your id>", "text": "<your answer>"}; refused with the reason otherwise.'
        ),
    )
    async def answer_info(self, *payloads: RawValue) -> AnswerReceipt:
        if self._restoring():
            await self._restored()
            self._validate_answer(*payloads)
        answer = self._answer_in(payloads)
        identity: Identity | None = None
        if self._trust is not None:
            try:
                identity = await self._trust.verified(answer.answerer, answer.proof, channel="answer_info")
                info = self._case.info_request
                if info is not None and answer.answerer != info.asked and identity.mode == "verified":
                    await self._reread_operator_roles()  # an operator answering: the directory's roles of now
            except (ProofRefused, DirectoryUnavailable) as refused:
                raise refusal(str(refused), "AnswerRejected") from None
        self._check_answer(answer)  # answered, closed or cancelled meanwhile: refused, nothing kept
        taken = self._case.take_answer(answer, workflow.now(), identity)
        self._publish_from_handler()
        return AnswerReceipt(
            case_id=workflow.info().workflow_id,
            accepted=True,
            round=taken.round,
            message=(
                f"answer by {answer.answerer} to {taken.asked_by}'s question accepted; "
                "the case gathers again and returns to the gate"
            ),
        )

    @answer_info.validator
    def _validate_answer(self, *payloads: RawValue) -> None:
        if self._restoring():
            return
        answer = self._answer_in(payloads)
        self._check_identity(answer.answerer, answer.proof, channel="answer_info", refused_as="AnswerRejected")
        self._check_answer(answer)

    @staticmethod
    def _answer_in(payloads: Sequence[Any]) -> InfoAnswer:
        return submission(payloads, InfoAnswer, what="answer_info", invalid="invalid answer", refused_as="AnswerRejected")

    def _check_answer(self, answer: InfoAnswer) -> None:
        if self._case.request is None:
            raise refusal("case is starting; send it again in a moment", "AnswerRejected")
        if self._case.cancel_requested is not None:
            raise refusal("the case is being cancelled by an operator; nothing was kept", "AnswerRejected")
        if problem := self._case.answer_problem(answer):
            raise refusal(problem, "AnswerRejected")

    @workflow.update(
        name="operator_action",
        description="Operators: escalate now, reassign the current level to a group, cancel, or note a retry. Kept in the trace.",
    )
    async def operator_action(self, *payloads: RawValue) -> OperatorReceipt:
        if self._restoring():
            await self._restored()
            self._validate_operator_action(*payloads)
        action = self._operator_action_in(payloads)
        self._check_operator_action(action)  # state may have moved since validation
        identity: Identity | None = None
        if self._trust is not None:
            try:
                identity = await self._trust.verified(action.operator, action.proof, channel="operator_action")
                if identity.mode == "verified":  # roles are checked in verified mode only
                    await self._reread_operator_roles()
            except (ProofRefused, DirectoryUnavailable) as refused:
                raise refusal(str(refused), "OperatorActionRejected") from None
            self._check_operator_action(action)  # with the directory's roles of now
        record = OperatorRecord(
            action=action.action.value,
            operator=action.operator,
            reason=action.reason,
            group=action.group,
            at=workflow.now(),
            identity=identity,
        )
        needs_temporal_cancel = False
        match action.action, action.group:
            case OperatorActionKind.ESCALATE, _:
                gate = self._gate_for(action)
                level = gate.level
                self._case.escalation_requested = record
                await workflow.wait_condition(lambda: self._case.escalation_requested is None or not gate.open)
                record.result = f"escalated from level {level + 1} to level {gate.level + 1} ({gate.current_group})"
            case OperatorActionKind.REASSIGN, str(group):
                gate_name = self._case.gate.definition.name if self._trust and self._case.gate else None
                roster = await calls.local_read(
                    DirectoryActivities.load_reviewer_roster,
                    RosterRequest(groups=[group], gate=gate_name),
                    lean=self._lean,
                    activity_id=f"load-reviewer-roster-{group}-{len(self._case.operator_actions)}",
                    summary=f"who sits in {group}",
                )
                gate = self._gate_for(action)  # a decision or a cancel may have closed the gate during the read
                members = roster.members.get(group, [])
                if not members:
                    raise refusal(f"group {group} has no active members", "OperatorActionRejected")
                if self._trust is not None and (problem := gate.reassign_problem(group, roster.serving)):
                    raise refusal(problem, "OperatorActionRejected")
                gate.reassign(group, members)
                record.result = f"level {gate.level + 1} reassigned to {group} ({', '.join(members)})"
            case OperatorActionKind.DELEGATE, _ if action.delegate is not None:
                gate = self._gate_for(action)
                delegator, now = action.delegator or action.operator, workflow.now()
                gate.case_delegations.append(
                    Delegation(
                        delegator=delegator,
                        delegate=action.delegate,
                        starts_at=now,
                        ends_at=now + ONE_OFF_DELEGATION,
                        reason=f"delegated by {action.operator}",
                        for_case=True,
                    )
                )
                record.result = f"{action.delegate} may decide for {delegator} in this case"
            case OperatorActionKind.CANCEL, _ if self._case.info_request is not None:
                self._case.cancel_requested = record  # the wait for the answer ends with it, recorded as cancelled
                record.result = "cancelled while waiting for an answer"
            case OperatorActionKind.CANCEL, _ if (open_gate := self._case.gate) is not None and open_gate.open:
                open_gate.close_by_operator("cancelled", action.operator, action.reason, workflow.now())
                record.result = "cancelled while waiting for a decision"
            case OperatorActionKind.CANCEL, _:
                # Work in progress (a gathering activity retrying, say) only stops on Temporal's
                # cancellation; this record says who asked and why when it arrives.
                self._case.cancel_requested = record
                needs_temporal_cancel = True
                record.result = f"cancellation requested in state {self._case.state.value}; cancel the workflow to interrupt it"
            case _:
                record.result = "noted"
        self._case.operator_actions.append(record)
        self._publish()
        return OperatorReceipt(result=record.result, needs_temporal_cancel=needs_temporal_cancel)

    @operator_action.validator
    def _validate_operator_action(self, *payloads: RawValue) -> None:
        if self._restoring():
            return
        action = self._operator_action_in(payloads)
        self._check_identity(action.operator, action.proof, channel="operator_action", refused_as="OperatorActionRejected")
        self._check_operator_action(action)

    async def _reread_operator_roles(self) -> None:
        """The directory's operators of now (and the open gate's roster with them)."""
        assert self._trust is not None
        case = self._case
        if case.gate is not None and case.gate.open:
            await self._trust.refresh_gate(case.gate)  # keeps the roles read before when the directory is down
            case.operators = case.gate.operators
        elif case.policy is not None and case.request is not None:
            people = [p for p in (case.request.requester, case.request.subject()) if p]
            try:
                case.operators = (await self._trust.roster(case.policy.gate.name, [], people)).operators
            except DirectoryUnavailable:
                if case.operators is None:
                    raise  # no roles read yet: refused, with the reason

    @staticmethod
    def _operator_action_in(payloads: Sequence[Any]) -> OperatorAction:
        invalid, refused_as = "invalid operator action", "OperatorActionRejected"
        return submission(payloads, OperatorAction, what="operator_action", invalid=invalid, refused_as=refused_as)

    def _check_operator_action(self, action: OperatorAction) -> None:
        problem = self._case.operator_problem(action, bounded=self._hardened, now=workflow.now())
        if problem:
            raise refusal(problem, "OperatorActionRejected")

    def _gate_for(self, action: OperatorAction) -> GateState:
        """The open gate an escalate or reassign applies to, checked now; refused if it closed meanwhile."""
        gate = self._case.gate_for(action, bounded=self._hardened)
        if isinstance(gate, str):
            raise refusal(gate, "OperatorActionRejected")
        return gate

    @workflow.query(name="case_state", description="The brief, findings, proposal, gate, deadlines and who may decide now.")
    def case_state(self, *payloads: RawValue) -> CaseView:
        """Takes no input; any that is sent is ignored."""
        if self._case.refusal is not None:
            raise refusal(f"this start was refused: {self._case.refusal}", "CaseRefused")
        if self._case.request is None:  # queried before the first workflow task ran
            raise refusal("case is starting; ask again in a moment", "CaseStarting")
        return compose.case_view(self._case, self._case.request, case_id=workflow.info().workflow_id, now=workflow.now())

    # -- the loop -------------------------------------------------------------------------------

    async def run_case(self, payloads: Sequence[Any]) -> CaseResult:
        """The run method of every kind: admit the start (or resume a continued case), decide, record."""
        if not self._hardening():
            request = self._legacy_request(payloads)
            self._case.request = request
            self._lean = workflow.patched(LEAN_PATCH)
            return await self._run_admitted(request, workflow.now(), resumed=None)
        info = workflow.info()
        try:
            carried = carried_over(payloads, self.spec.kind, info)
        except CaseRefused as forged:
            raise refusal(str(forged), "CaseRefused") from None
        if carried is not None:
            self._case, at_gate = CaseFile.restored(carried)
            self._lean = True
            if self._case.trusted:
                self._trust = CaseTrust(self._case, lean=True)
            return await self._run_admitted(at_gate.request, at_gate.started_at, resumed=at_gate)
        try:
            request = admissible_request(payloads, self.spec.kind, info)
        except CaseRefused as refused:
            self._refuse(str(refused))
        self._case.request = request
        started = workflow.now()
        self._lean = self._combined or workflow.patched(LEAN_PATCH)
        if self._combined or workflow.patched(TRUST_PATCH):
            self._case.trusted = True
            self._trust = CaseTrust(self._case, lean=self._lean)
        start = StartMetadataRequest(workflow_id=info.workflow_id, run_id=info.run_id)
        policy: Policy | None = None
        opens = OpenCaseRequest(start=start, policy=ResolvePolicyInput(kind=self.spec.kind))
        if self._local_gathers:  # the first round's sources asked at once (they depend on the request alone)
            sources = self.spec.sources(request)
            read = await calls.local_read(
                OpeningActivities.open_case_and_gather,
                OpenAndGatherRequest(opening=opens, sources=sources),
                lean=True,
                activity_id="open-case-and-gather",
                summary=f"read the start's summary and details, resolve the current {self.spec.kind.value} policy, "
                f"ask {', '.join(s.source for s in sources)}",
            )
            metadata, policy = read.opening.metadata, read.opening.policy
            self._case.agent_configured, self._first_round = read.opening.agent_configured, read.gathered
        elif self._combined:
            opening = await calls.local_read(
                OpeningActivities.open_case,
                opens,
                lean=True,
                activity_id="open-case",
                summary=f"read the start's summary and details, resolve the current {self.spec.kind.value} policy",
            )
            metadata, policy = opening.metadata, opening.policy
        else:
            metadata = await calls.local_read(
                StartMetadataActivities.read_start_metadata,
                start,
                lean=self._lean,
                activity_id="read-start-metadata",
                summary="read the start's static summary and details",
            )
        if problem := start_metadata_problem(request, metadata):
            self._refuse(problem)
        return await self._run_admitted(request, started, resumed=None, policy=policy)

    def _legacy_request(self, payloads: Sequence[Any]) -> CaseRequest:
        """Before HARDENED_PATCH: the one start payload, decoded and validated; an invalid one fails the case."""
        try:
            return parsed_request(payloads, self.spec.kind)
        except CaseRefused as invalid:
            raise refusal(str(invalid), "InvalidCase") from None

    def _refuse(self, reason: str) -> NoReturn:
        """End a start the case cannot honour: no attribute of the starter's stays (so it cannot pose
        as a case in the inbox or a lookup), and the failure says why."""
        self._case.refusal = reason
        self._case.state = CaseState.REFUSED
        history_budget.upsert(compose.refused_attributes(), lean=self._lean)
        workflow.set_current_details(compose.refused_details(reason))
        raise refusal(reason, "CaseRefused")

    async def _run_admitted(
        self, request: CaseRequest, started: datetime, *, resumed: AtGate | None, policy: Policy | None = None
    ) -> CaseResult:
        """`policy`: the policy already resolved with the start's metadata (COMBINED_PATCH), if it was."""
        self._started = started
        if resumed is None:
            if policy is None:
                policy = await calls.local_read(
                    CaseActivities.resolve_policy,
                    ResolvePolicyInput(kind=self.spec.kind),
                    lean=self._lean,
                    activity_id="resolve-policy",
                    summary=f"resolve the current {self.spec.kind.value} policy",
                )
            self._case.policy = policy
            opening = compose.opening_attributes(request, policy, own_all=self._hardened, trusted=self._case.trusted)
            history_budget.upsert(opening, lean=self._lean)
        else:
            policy = resumed.policy
            self._publish()
        cancelled = False
        try:
            decision = await self._decide(request, policy, started, resumed)
        except asyncio.CancelledError:
            # Cancelled through Temporal (`hitl ops cancel`, the UI, the CLI): record who asked, then end as cancelled.
            cancelled = True
            decision = self._case.cancellation(workflow.now())
        self._case.decision = decision
        receipt = await self._record(request, decision, started)
        self._case.state = CaseState.DECIDED
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

    async def _decide(self, request: CaseRequest, policy: Policy, started: datetime, resumed: AtGate | None) -> AcceptedDecision:
        """Loop until a final decision: by policy, by a reviewer, by timeout, or by an operator."""
        at_gate, case = resumed, self._case
        while True:
            if at_gate is None:
                evaluation, summary = await self._gather_evaluate_summarize(request, policy)
                if not evaluation.requires_human and case.gate is None:
                    return decided_by_policy(policy, evaluation, workflow.now())
                gate = await self._open_gate(request, policy, evaluation, summary)
                at_gate = AtGate(request, started, policy, evaluation, summary, gate)
            resumed_awaiting = case.info_request is not None  # continued as new while waiting for an answer
            if not resumed_awaiting:
                self._waiting = GateWait(
                    case,
                    at_gate,
                    hardened=self._hardened,
                    publish=self._publish,
                    continue_as_new_due=self._continue_as_new_due,
                    reread_directory=partial(self._trust.refresh_gate, at_gate.gate) if self._trust is not None else None,
                )
                decision = await self._waiting.decision()
                self._waiting = None
                if decision.outcome != DecisionOutcome.REQUEST_INFO.value:
                    return decision
                # request_info: back to gathering with the reviewer's question, then back to this gate.
                case.rounds.append(decision)
                question = ReviewerQuestion(round=len(case.rounds), reviewer=decision.decided_by, question=decision.reason)
                case.questions.append(question)
            if case.info_request is not None:  # since INFO_WAIT_PATCH: the question went to a person; wait for the answer
                self._answering = InfoWait(
                    case,
                    at_gate,
                    publish=self._publish,
                    continue_as_new_due=self._continue_as_new_due,
                    resumed=resumed_awaiting,
                )
                ended = await self._answering.outcome()
                self._answering = None
                if isinstance(ended, AcceptedDecision):
                    return ended
            at_gate = None
            case.state = CaseState.GATHERING
            self._publish()

    async def _gather_evaluate_summarize(self, request: CaseRequest, policy: Policy) -> tuple[PolicyEvaluation, CaseSummary]:
        case, spec = self._case, self.spec
        case.state = CaseState.GATHERING
        round_no = len(case.rounds) + 1
        case.context = ContextBundle.merge(await self._gathered(request, round_no))
        case.tags = spec.tags(spec.facts(request, case.context, precedent_count=0))
        # Older cases excluded their own ID from the precedents (see PrecedentQuery.exclude_case_id).
        own_id = None if self._hardened else workflow.info().workflow_id
        query = PrecedentQuery(kind=spec.kind, amount_band=spec.band(request), tags=case.tags, exclude_case_id=own_id)
        if self._local_gathers and self._trust is not None and case.gate is None:
            matches = await self._read_precedents_and_gate(request, policy, query)
        else:
            matches = await calls.local_read(
                CaseActivities.find_precedents,
                query,
                lean=self._lean,
                activity_id=f"find-precedents-{round_no}",
                summary="look up similar past decisions",
            )
        case.precedents, case.headline = matches.precedents, matches.headline
        facts = spec.facts(request, case.context, precedent_count=len(case.precedents))
        evaluation = case.evaluation = evaluate(policy, facts, [p.outcome for p in case.precedents])
        question = compose.summarize_input(
            case, request, evaluation, matches.headline, latest_questions=self._hardened, advise_inline=not self._lean
        )
        if self._local_gathers and case.agent_configured is not None:  # written here, as summarize_case writes it
            brief, proposal = compose.written_brief(question)
            summary = CaseSummary(
                brief=brief, proposal=proposal, agent=AgentNote(used=False), advice_pending=case.agent_configured
            )
        else:
            summary = await calls.local_read(
                CaseActivities.summarize_case,
                question,
                lean=self._lean,
                activity_id=f"summarize-{round_no}",
                start_to_close_timeout=calls.ADVISE_TIMEOUT,
                summary="write the brief and propose a path",
            )
        if summary.advice_pending:  # an agent is configured: an external call, so a regular activity
            agent = await calls.advise(AdviseInput.of(summary.brief, case.context, evaluation), round_no, hardened=self._hardened)
            summary = summary.model_copy(update={"agent": agent, "advice_pending": False})
        case.summary = summary
        return evaluation, summary

    async def _gathered(self, request: CaseRequest, round_no: int) -> list[ConnectorResult]:
        """What each source of this round says. The first round's were asked with the case's opening
        read (LOCAL_GATHERS_PATCH): only those that did not answer there are asked again, as activities."""
        sources, asked, self._first_round = self.spec.sources(request), self._first_round, None
        if asked is not None:
            answers = {attempt.source: attempt for attempt in asked}
            return list(await asyncio.gather(*(self._answer_or_ask(s, answers.get(s.source), round_no) for s in sources)))
        local_first = self._local_gathers
        return list(
            await asyncio.gather(*(calls.gather(s, round_no, hardened=self._hardened, local_first=local_first) for s in sources))
        )

    async def _answer_or_ask(self, source: SourceRequest, attempt: SourceAttempt | None, round_no: int) -> ConnectorResult:
        if attempt is not None and attempt.result is not None:
            return attempt.result
        if attempt is not None:
            workflow.logger.warning("%s: not answered in the opening read, asked as activity: %s", source.source, attempt.error)
        return await calls.gather(source, round_no, hardened=self._hardened)

    async def _read_precedents_and_gate(self, request: CaseRequest, policy: Policy, query: PrecedentQuery) -> PrecedentMatches:
        """The first round's precedents, and what its gate will read as it opens (the roster of every
        group the policy may ask for, the issuers' keys), in one local activity; kept for `_open_gate`."""
        groups = [level.group for level in policy.gate.levels]
        groups += [seat for rule in policy.rules if rule.quorum is not None for seat in rule.quorum.seats]
        people = [p for p in (request.requester, request.subject()) if p]
        roster = RosterRequest(groups=list(dict.fromkeys(groups)), people=people, gate=policy.gate.name)
        batch = self._audit_batch()
        reads = await calls.local_read(
            OpeningActivities.read_precedents_and_gate,
            PrecedentsAndGateRequest(precedents=query, gate=GateReadRequest(roster=roster, audit=batch.events)),
            lean=True,
            activity_id="read-precedents-and-gate",
            summary=f"look up similar past decisions; who sits in {', '.join(roster.groups)}; the issuers' keys",
        )
        if reads.gate is not None:  # else the gate reads them (and writes the audit events) as it opens
            batch.written()
        self._first_gate_reads = reads.gate
        return reads.precedents

    async def _open_gate(
        self, request: CaseRequest, policy: Policy, evaluation: PolicyEvaluation, summary: CaseSummary
    ) -> GateState:
        now = workflow.now()  # the gate opens (or reopens) now, whatever the reads below take
        gate, trusted = self._case.gate, self._trust is not None
        digest = compose.digest_of(request, policy, evaluation, self._case, summary.proposal) if trusted else None
        combined = self._combined and gate is None and self._trust is not None
        if self._trust is not None and not combined:
            await self._trust.resolve()  # the issuers' keys of now, for this round
        if gate is None:
            groups = [level.group for level in policy.gate.levels]
            if trusted and evaluation.quorum is not None:
                groups += [seat for seat in evaluation.quorum.seats if seat not in groups]
            people = [p for p in (request.requester, request.subject()) if p] if trusted else []
            asked = RosterRequest(groups=groups, people=people, gate=policy.gate.name if trusted else None)
            if combined and self._trust is not None and (first := self._first_gate_reads) is not None:
                self._trust.adopt(first.trust)  # read with the precedents, a moment ago
                roster, self._first_gate_reads = narrowed_roster(first.roster, groups, people), None
            elif combined and self._trust is not None:  # the roster and the keys of now, in one read
                batch = self._audit_batch()
                reads = await calls.local_read(
                    OpeningActivities.read_gate,
                    GateReadRequest(roster=asked, audit=batch.events),
                    lean=True,
                    activity_id="read-gate",
                    summary=f"who sits in {', '.join(groups)}; the identity issuers' public keys",
                )
                batch.written()
                self._trust.adopt(reads.trust)
                roster = reads.roster
            else:
                roster = await calls.local_read(
                    DirectoryActivities.load_reviewer_roster,
                    asked,
                    lean=self._lean,
                    activity_id="load-reviewer-roster",
                    summary=f"who sits in {', '.join(groups)}",
                )
            gate = self._case.open_gate(
                policy, request, roster, level=evaluation.start_level, now=now, digest=digest, quorum=evaluation.quorum
            )
        else:
            level, quorum = evaluation.start_level, evaluation.quorum
            self._case.reopen_gate(gate, level=level, now=now, digest=digest, quorum=quorum)
            if self._trust is not None:
                await self._trust.refresh_gate(gate)
        if self._combined:
            gate.note_opening(now)
        self._publish()
        return gate

    # -- the record ------------------------------------------------------------------------------

    async def _record(self, request: CaseRequest, decision: AcceptedDecision, started: datetime) -> RecordReceipt:
        self._case.state = CaseState.RECORDING
        self._publish()
        info = workflow.info()
        trace = compose.decision_trace(
            self._case, request, decision, started_at=started, workflow_id=info.workflow_id, run_id=info.run_id
        )
        decision_key = f"{info.workflow_id}#{info.first_execution_run_id}"
        batch = self._audit_batch()
        record = RecordDecisionInput(
            decision_key=decision_key, trace=fitted_trace(trace) if self._hardened else trace, audit=batch.events
        )
        recorded = self._late_mark()
        summary = f"record {decision.outcome} by {decision.decided_by}"
        receipt = await calls.record_decision(record, summary=summary, hardened=self._hardened)
        batch.written()
        if self._hardened:
            await self._record_late_additions(decision_key, recorded)
        return receipt

    def _audit_batch(self) -> AuditBatch:
        """The gate events the case's next write carries to its audit log (workflows/audit_outbox.py)."""
        assert self._started is not None  # set once the case is admitted, before anything is written
        return audit_batch(self._case, self._started)

    def _continue_as_new_due(self) -> bool:
        return self._hardened and history_budget.continue_as_new_due(signals_this_run=self._signals_this_run)

    def _late_mark(self) -> tuple[int, int]:
        """How much the trace holds: attempts received and operator actions taken so far."""
        return self._case.attempts_received(), len(self._case.operator_actions)

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
            batch = self._audit_batch()
            await calls.record_late_additions(compose.late_additions(self._case, decision_key, audit=batch.events), round_no)
            batch.written()
            recorded = now_held

    # -- what the UI and the inbox see ------------------------------------------------------

    def _publish(self) -> None:
        """Search attributes for the inbox and saved views, current details for the UI, in one step."""
        history_budget.upsert(compose.case_attributes(self._case, workflow.now()), lean=self._lean)
        workflow.set_current_details(compose.case_details(self._case))

    def _publish_from_handler(self) -> None:
        """Publish after a decision handler, unless the main loop is about to in this same activation.

        A decision that closes the gate wakes the loop parked at the gate, which publishes the next
        state (recording, or gathering after request_info) before it awaits anything: in lean runs
        one upsert instead of two."""
        gate, parked = self._case.gate, self._waiting is not None and self._waiting.parked
        if self._lean and parked and gate is not None and not gate.open and self._case.info_request is None:
            return
        answering = self._answering is not None and self._answering.parked
        if self._lean and answering and self._case.info_request is None:
            return  # answered: the loop, woken, publishes that the case gathers again
        if self._hardened and self._case.request is None:
            return  # before the run's first step: the case publishes its own attributes once admitted
        self._publish()
