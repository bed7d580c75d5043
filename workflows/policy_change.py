"""The `PolicyChange` workflow: a proposed policy version, gated like a case, activated only when approved.

start (refused unless its ID, payload, policy text, options and UI text are its own) -> the proposer's
proof verified -> `prepare_policy_change` writes the brief (diff, what-if, agreement) -> the gate
waits for the owners (reminder, escalation to the policy gate's last level, timeout = rejected) ->
`record_policy_change` records the decision and, if approved, activates the version.

Decisions come as the `submit_decision` update (so `hitl approve|reject CHANGE` work unchanged) or
the `decide` signal, through the same `GateState` rules as a case's: proofs verified here with the
issuers' keys from `resolve_trust` (workflows/trust.py), the proposer is the gate's requester and so
cannot decide, a quorum of owners when the change raises a rule to `auto`. The owners are checked
against the directory at the gate's opening and again before each decision: an owner inactive in
(or unknown to) the directory cannot approve.

No input can wedge, lose or fake a change: a waiting change continues as new (its state carried over,
its ID and approvals kept) before signals or refused updates fill its history; operators cancel or
note it with the `operator_action` update (a case's model, proofs and roles); a cancel through
Temporal is recorded as cancelled, nothing activated; an approval that cannot be put in force (the
version in force changed since the brief, say) is recorded as approved, not activated, with why.
Since its first stored history (tests/histories/policy_change--*.json), changes to its commands go
behind `workflow.patched`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.directory import DirectoryActivities
    from activities.policy_change import PolicyChangeActivities
    from activities.start_metadata import StartMetadataActivities
    from gates import composition as compose
    from gates import search_attributes as sa
    from gates.case_file import CaseFile
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
        keep_attempt,
        validation_problems,
    )
    from gates.identity import ProofRefused
    from gates.messages import NotificationKind, Quote, Roster, RosterRequest, StartMetadataRequest
    from gates.policy import Policy, PolicyError
    from gates.policy_change import (
        OWNERS_GROUP,
        WORKFLOW_TYPE,
        ChangeBrief,
        ChangeCarryOver,
        ChangeRecord,
        ChangeResult,
        ChangeState,
        ChangeView,
        PolicyChangeRequest,
        PrepareChangeInput,
        RecordChangeInput,
        change_details,
        change_events,
        change_gate_definition,
        change_id_for,
        change_operator_problem,
        change_quorum,
        change_summary,
        change_view,
    )
    from gates.text import md_block, md_inline, neutralize
    from workflows import activity_calls as calls
    from workflows import history_budget
    from workflows.guard import NO_TIMEOUT, InputProblem, preview, refusal, reviewer_of, single_json, submission
    from workflows.trust import CaseTrust, DirectoryUnavailable, apply_roster

PREPARE_TIMEOUT = timedelta(minutes=2)
RECORD_TIMEOUT = timedelta(minutes=1)
# Preparing reads the traces; a database that is down is waited out, a bad policy is not retried.
PREPARE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), non_retryable_error_types=["PolicyError"]
)


class ChangeRefused(Exception):
    """A start the change cannot honour; the message says why, in one line."""


def admissible_change(payloads: Sequence[Any], info: workflow.Info) -> tuple[PolicyChangeRequest, Policy]:
    """The request and its parsed policy, if this start is one the change can honour; ChangeRefused otherwise."""
    try:
        request = PolicyChangeRequest.model_validate(single_json(payloads, what="the start payload"))
    except InputProblem as problem:
        raise ChangeRefused(f"invalid policy change: {problem}") from None
    except ValidationError as err:
        raise ChangeRefused(f"invalid policy change: {validation_problems(err)}") from None
    try:
        policy = request.policy()
    except PolicyError as err:
        raise ChangeRefused(str(err)) from None
    if info.workflow_id != change_id_for(policy.ref):
        shown = neutralize(info.workflow_id[:200], keep_newlines=False)
        raise ChangeRefused(
            f"workflow ID {shown!r} is not this change's ID: proposing {policy.ref} runs as {change_id_for(policy.ref)!r}"
        )
    if any(t is not None and t < NO_TIMEOUT for t in (info.execution_timeout, info.run_timeout)):
        raise ChangeRefused("a policy change must not be started with an execution or run timeout: its gate's timeout rejects it")
    if info.cron_schedule:
        raise ChangeRefused("a policy change must not be started with a cron schedule")
    if info.raw_memo:
        raise ChangeRefused("a policy change must not be started with a memo")
    return request, policy


def carried_change(payloads: Sequence[Any], info: workflow.Info) -> ChangeCarryOver | None:
    """The state handed over by this change's previous run, when this run continues it; ChangeRefused for
    another change's. Only Temporal sets `continued_run_id`, and the IDs must be this change's."""
    if info.continued_run_id is None:
        return None
    try:
        value = single_json(payloads, what="the carried-over state")
    except InputProblem:
        return None
    if not (isinstance(value, dict) and value.get("carried_over") is True):
        return None
    try:
        carried = ChangeCarryOver.model_validate(value)
    except ValidationError as err:
        raise ChangeRefused(f"invalid carried-over state: {validation_problems(err)}") from None
    if (carried.workflow_id, carried.first_execution_run_id) != (info.workflow_id, info.first_execution_run_id):
        raise ChangeRefused("carried-over state of another change")
    return carried


# A decide signal that reaches a continued change in its first task, before the run has restored the
# carried state, waits for it; before this patch it was kept among the early attempts that the restore
# then overwrote. Decided lazily, in that handler only (as the case workflow's).
SIGNAL_AFTER_RESTORE_PATCH = "signal-waits-for-restored-state"


@workflow.defn(name=WORKFLOW_TYPE)
class PolicyChangeWorkflow:
    def __init__(self) -> None:
        self._keys = CaseFile()  # holds the issuers' keys CaseTrust reads and refreshes
        self._trust = CaseTrust(self._keys, lean=True)
        self._state = ChangeState.PREPARING
        self._refusal: str | None = None
        self._request: PolicyChangeRequest | None = None
        self._proposed: Policy | None = None
        self._proposer: Identity | None = None
        self._opened: datetime | None = None
        self._brief: ChangeBrief | None = None
        self._gate: GateState | None = None
        self._early: list[RejectedAttempt] = []  # signals before the gate opened
        self._activated: str | None = None
        self._not_activated: str | None = None
        self._operator_actions: list[OperatorRecord] = []
        self._operators: list[str] | None = None  # the directory's operators for the policy's gate, as last read
        self._cancel_requested: OperatorRecord | None = None  # an operator's cancel that needs Temporal's to interrupt
        self._signals_this_run = 0

    def _restoring(self) -> bool:
        """A continued run whose first task has not restored the carried state yet: Temporal hands the
        run its first signals and updates with that task, before the run method's first step."""
        return self._request is None and self._state != ChangeState.REFUSED and workflow.info().continued_run_id is not None

    async def _restored(self) -> None:
        await workflow.wait_condition(lambda: not self._restoring())

    # -- the run --------------------------------------------------------------------------------

    @workflow.run
    async def run(self, *payloads: RawValue) -> ChangeResult:
        info = workflow.info()
        try:
            carried = carried_change(payloads, info)
        except ChangeRefused as forged:
            raise refusal(str(forged), "CaseRefused") from None
        if carried is None:
            request, proposed = await self._admit(payloads, info)
        else:
            request, proposed = self._restore(carried)
        opened = self._opened
        assert opened is not None
        cancelled = False
        try:
            if carried is None:
                self._brief = await self._prepare(request, proposed, info)
                self._gate = await self._open_gate(request, proposed, self._brief)
            waiting_at = self._gate
            assert waiting_at is not None
            self._state = ChangeState.WAITING
            self._publish()
            decision = await self._wait(waiting_at)
        except asyncio.CancelledError:
            # cancelled through Temporal (the UI, `temporal workflow cancel`): recorded, nothing activated
            cancelled, decision = True, self._cancellation()
        self._state = ChangeState.RECORDING
        self._publish()
        gate, brief = self._gate, self._brief
        record = ChangeRecord(
            change_id=info.workflow_id,
            run_id=info.first_execution_run_id,
            kind=proposed.kind.value,
            policy=proposed.ref,
            proposed_digest=brief.proposed_digest if brief is not None else "",
            active=brief.active if brief is not None else None,
            proposer=request.proposer,
            proposer_reason=request.reason,
            proposer_identity=self._proposer,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            decided_via=decision.via,
            reason=decision.reason,
            approvals=(
                list(gate.approvals)
                if gate is not None and gate.quorum is not None
                else [decision]
                if decision.outcome == "approve"
                else []
            ),
            decision=decision,
            brief=brief,
            rejected_attempts=self._early + (list(gate.rejected_attempts) if gate is not None else []),
            operator_actions=list(self._operator_actions),
            opened_at=opened,
            decided_at=decision.at,
        )
        activates = proposed.ref if decision.outcome == DecisionOutcome.APPROVE.value and brief is not None else None
        receipt = await workflow.execute_activity_method(
            PolicyChangeActivities.record_policy_change,
            RecordChangeInput(
                record=record, policy_text=request.policy_text, audit=change_events(record, gate, activates=activates)
            ),
            start_to_close_timeout=RECORD_TIMEOUT,
            retry_policy=calls.RECORD_RETRY,
            summary=f"record {decision.outcome} by {decision.decided_by}" + (f", activate {activates}" if activates else ""),
        )
        self._activated, self._not_activated = receipt.activated, receipt.not_activated
        self._state = (
            ChangeState.APPROVED
            if receipt.activated
            else ChangeState.NOT_ACTIVATED
            if receipt.not_activated
            else ChangeState.CANCELLED
            if decision.outcome == "cancelled"
            else ChangeState.REJECTED
        )
        self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if cancelled:
            raise asyncio.CancelledError("policy change cancelled; its record is written, nothing activated")
        return ChangeResult(
            change_id=info.workflow_id,
            outcome=decision.outcome,
            decided_by=decision.decided_by,
            reason=decision.reason,
            activated=receipt.activated,
            not_activated=receipt.not_activated,
        )

    async def _admit(self, payloads: Sequence[Any], info: workflow.Info) -> tuple[PolicyChangeRequest, Policy]:
        """A fresh start: refused unless its ID, payload, options and UI text are its own and the proposer's proof holds."""
        self._opened = workflow.now()
        try:
            request, proposed = admissible_change(payloads, info)
        except ChangeRefused as refused:
            self._refuse(str(refused))
        history_budget.upsert([key.value_unset() for key in sa.HARDENED_SEARCH_ATTRIBUTES], lean=True)
        metadata = await calls.local_read(
            StartMetadataActivities.read_start_metadata,
            StartMetadataRequest(workflow_id=info.workflow_id, run_id=info.run_id),
            lean=True,
            activity_id="read-start-metadata",
            summary="read the start's static summary and details",
        )
        for name, sent, own in (
            ("static summary", metadata.static_summary, change_summary(request)),
            ("static details", metadata.static_details, change_details(request)),
        ):
            if sent is not None and sent != own:
                self._refuse(f"the start's {name} is not this change's own text; start it with `hitl policy propose`")
        await self._trust.resolve()
        try:
            self._proposer = await self._trust.verified(request.proposer, request.proof, channel="policy propose")
        except (ProofRefused, DirectoryUnavailable) as refused:
            self._refuse(str(refused))
        self._request, self._proposed = request, proposed
        self._publish()
        return request, proposed

    def _restore(self, carried: ChangeCarryOver) -> tuple[PolicyChangeRequest, Policy]:
        """A run that continues a waiting change: its state, as the previous run handed it over."""
        request = carried.request
        proposed = request.policy()  # parsed by the first run already: the same text, the same policy
        self._request, self._proposed, self._proposer = request, proposed, carried.proposer_identity
        self._brief, self._gate, self._opened = carried.brief, carried.gate, carried.opened_at
        self._early, self._operator_actions = list(carried.early), list(carried.operator_actions)
        self._keys.trust, self._keys.keys_refreshed_at = carried.trust, carried.keys_refreshed_at
        self._operators = carried.gate.operators
        return request, proposed

    async def _prepare(self, request: PolicyChangeRequest, proposed: Policy, info: workflow.Info) -> ChangeBrief:
        try:
            prepared = await workflow.execute_activity_method(
                PolicyChangeActivities.prepare_policy_change,
                PrepareChangeInput(change_id=info.workflow_id, request=request),
                start_to_close_timeout=PREPARE_TIMEOUT,
                retry_policy=PREPARE_RETRY,
                summary=f"diff {proposed.ref} against the active version, what-if over past cases, agreement",
            )
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                raise asyncio.CancelledError() from None  # Temporal's cancel reached the preparation
            if isinstance(err.cause, ApplicationError) and err.cause.type == "PolicyError":
                self._refuse(err.cause.message)  # e.g. this version number was activated with other content
            raise
        return prepared.brief

    def _cancellation(self) -> AcceptedDecision:
        """What a cancel through Temporal records: the operator who asked for it, if one did; the gate closes."""
        note, gate, now = self._cancel_requested, self._gate, workflow.now()
        decision = AcceptedDecision(
            outcome="cancelled",
            decided_by=f"operator:{note.operator}" if note else "temporal:cancel-request",
            reason=note.reason if note else "the policy change was cancelled through Temporal",
            via="operator",
            level=gate.level if gate is not None else -1,
            group=gate.current_group if gate is not None else None,
            at=now,
        )
        if gate is not None and gate.open:
            gate.decision, gate.open = decision, False
        return decision

    def _refuse(self, reason: str) -> NoReturn:
        """End a start the change cannot honour: none of the starter's attributes stays, and the failure says why."""
        self._refusal, self._state = reason, ChangeState.REFUSED
        history_budget.upsert(compose.refused_attributes(), lean=True)
        workflow.set_current_details(compose.refused_details(reason))
        raise refusal(reason, "CaseRefused")

    async def _open_gate(self, request: PolicyChangeRequest, proposed: Policy, brief: ChangeBrief) -> GateState:
        now = workflow.now()
        plan = brief.plan
        definition = change_gate_definition(proposed, plan)
        last = definition.levels[-1].group
        roster = await calls.local_read(
            DirectoryActivities.load_reviewer_roster,
            RosterRequest(groups=[last], people=[request.proposer, *plan.owners], gate=definition.name),
            lean=True,
            activity_id="load-reviewer-roster",
            summary=f"who sits in {last}; which owners are active",
        )
        trust = self._keys.trust
        gate = GateState(
            definition=definition,
            requester=request.proposer,
            roster={},
            level=0,
            opened_at=now,
            level_started_at=now,
            trusted=True,
            identity_mode=trust.mode if trust is not None else "verified",
            quorum=change_quorum(plan),
            proposal=True,
        )
        self._apply(gate, roster)
        gate.note_opening(now)
        return gate

    def _apply(self, gate: GateState, roster: Roster) -> None:
        """The directory's answer into the gate; the owners who sit are those active in it (all named ones
        when no directory file is loaded: nothing to check them against)."""
        apply_roster(gate, roster)
        brief = self._brief
        owners = brief.plan.owners if brief is not None else []
        if owners:
            active = roster.active_people
            sitting = [o for o in owners if active is None or o in active]
            gate.roster = {**gate.roster, OWNERS_GROUP: sitting}
            if away := [o for o in owners if o not in sitting]:
                gate.inactive = {**gate.inactive, OWNERS_GROUP: away}
        self._operators = gate.operators

    async def _refresh(self, gate: GateState) -> None:
        """The directory of now for the escalation group and the owners; if it is down, the last roster."""
        brief = self._brief
        groups = [level.group for level in gate.definition.levels if level.group != OWNERS_GROUP]
        people = [gate.requester, *(brief.plan.owners if brief is not None else [])]
        try:
            self._apply(gate, await self._trust.roster(gate.definition.name, groups, people))
        except DirectoryUnavailable as unavailable:
            workflow.logger.warning("deciding on the roster read before: %s", unavailable)

    def _continue_as_new_due(self) -> bool:
        return history_budget.continue_as_new_due(signals_this_run=self._signals_this_run)

    async def _wait(self, gate: GateState) -> AcceptedDecision:
        """Remind, escalate to the last level, time out (rejected) on durable timers, until a decision closes
        the gate; hand the waiting change to a fresh run before its history grows too long."""
        while True:
            reminded = any(r.level == gate.level and r.at >= gate.level_started_at for r in gate.reminders)
            until = gate.escalate_at() if reminded else gate.remind_at()
            action = "remind" if not reminded else "time out" if gate.is_last_level() else "escalate"
            timeout = until - workflow.now()
            if timeout > timedelta(0) and gate.open and not self._continue_as_new_due():
                try:
                    await workflow.wait_condition(
                        lambda: not gate.open or self._continue_as_new_due(),
                        timeout=timeout,
                        timeout_summary=f"{action} {gate.current_group} after {timeout}",
                    )
                except TimeoutError:
                    pass
            if not gate.open:
                break
            if self._continue_as_new_due() and until > workflow.now():
                await self._continue_as_new(gate)
                continue  # a decision came first
            title = gate.definition.levels[gate.level].title
            if not reminded:
                gate.record_reminder(workflow.now())
                await self._notify(gate, "reminder", f"Reminder: {self._ask()} is waiting for {title}.", gate.escalate_at())
            elif gate.is_last_level():
                gate.time_out(workflow.now())
                await self._notify(gate, "timeout", f"Timed out at {title}: {self._ask()} is rejected, nothing activated.", None)
            else:
                await self._refresh(gate)
                if gate.open:
                    after = gate.definition.levels[gate.level].escalate_after
                    gate.escalate(workflow.now(), reason=f"no decision from {gate.current_group} within {after}")
                    title = gate.definition.levels[gate.level].title
                    await self._notify(gate, "escalation", f"Escalated to {title}: {self._ask()}", gate.remind_at())
            self._publish()
        assert gate.decision is not None
        return gate.decision

    async def _continue_as_new(self, gate: GateState) -> None:
        """Hand the waiting change to a fresh run with its state; returns only if a decision came first."""
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or not gate.open)
        if not gate.open:
            return
        request, brief, proposer, opened = self._request, self._brief, self._proposer, self._opened
        assert request is not None and brief is not None and proposer is not None and opened is not None
        info = workflow.info()
        workflow.continue_as_new(
            ChangeCarryOver(
                workflow_id=info.workflow_id,
                first_execution_run_id=info.first_execution_run_id,
                request=request,
                proposer_identity=proposer,
                brief=brief,
                gate=gate,
                early=self._early,
                operator_actions=self._operator_actions,
                trust=self._keys.trust,
                keys_refreshed_at=self._keys.keys_refreshed_at,
                opened_at=opened,
            )
        )

    def _ask(self) -> str:
        brief = self._brief
        assert brief is not None
        return f"the policy change {brief.proposed} (hitl policy review {brief.change_id})"

    async def _notify(self, gate: GateState, kind: NotificationKind, message: str, deadline: datetime | None) -> None:
        """Best effort, as a case's: the proposer's reason goes along quoted as theirs."""
        brief = self._brief
        assert brief is not None
        quotes = [Quote(person=brief.proposer, label="reason", text=brief.reason)]
        await calls.notify(
            gate, kind, message, hardened=True, about=calls.About(ask=self._ask(), deadline=deadline, quotes=quotes)
        )

    # -- decisions in -----------------------------------------------------------------------------

    @workflow.update(
        name="submit_decision",
        description="Approve or reject the policy change (hitl approve|reject CHANGE); refused with the reason when not allowed.",
    )
    async def submit_decision(self, *payloads: RawValue) -> DecisionReceipt:
        if self._restoring():  # accepted unjudged (see the validator): judged now, as the validator would
            await self._restored()
            self._validate_decision(*payloads)
        decision = self._decision_in(payloads)
        try:
            identity = await self._trust.verified(decision.reviewer, decision.proof, channel="submit_decision")
            await self._refresh(self._gate_accepting(decision))
        except (ProofRefused, DirectoryUnavailable) as refused:
            raise refusal(str(refused), "DecisionRejected") from None
        gate = self._gate_accepting(decision)  # the state may have moved while the keys or the directory were read
        accepted = gate.accept(decision, "update", workflow.now(), identity)
        self._publish()
        message = f"{accepted.outcome} by {accepted.decided_by} accepted at level {accepted.level + 1}"
        if gate.open:
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

    def _check_identity(self, person: str, proof: str | None, *, channel: str, refused_as: str) -> None:
        """A validator's check of the sender's proof: refused before anything is written."""
        try:
            self._trust.identity(person, proof, channel=channel)
        except ProofRefused as refused:
            raise refusal(str(refused), refused_as) from None

    @staticmethod
    def _decision_in(payloads: Sequence[Any]) -> Decision:
        return submission(payloads, Decision, what="submit_decision", invalid="invalid decision", refused_as="DecisionRejected")

    def _problem(self, decision: Decision) -> str | GateState:
        """The gate that takes this decision now, or why it does not."""
        gate = self._gate
        if self._state == ChangeState.REFUSED:
            return f"this start was refused and is not a policy change: {self._refusal}"
        if gate is None:
            return "the change's brief is being prepared; try again in a moment"
        if decision.outcome == DecisionOutcome.REQUEST_INFO:
            return "a policy change is approved or rejected; ask the proposer directly, or reject it with your question"
        if decision.digest is not None and self._brief is not None and decision.digest != self._brief.digest:
            return "the change's brief changed since you looked: hitl policy review CHANGE"
        return gate.problem_with(decision, workflow.now()) or gate

    def _gate_accepting(self, decision: Decision) -> GateState:
        judged = self._problem(decision)
        if isinstance(judged, str):
            raise refusal(judged, "DecisionRejected")
        return judged

    @workflow.signal(
        name="decide",
        description=(
            'Approve or reject the policy change. JSON: {"outcome": "approve" | "reject", "reviewer": "<your id>", '
            '"reason": "<why>", "proof": "<token>"}. Refused decisions are kept as rejected attempts.'
        ),
    )
    async def decide(self, *payloads: RawValue) -> None:
        """Never raises: a decision the gate accepts, or a rejected attempt with its reason."""
        self._signals_this_run += 1
        if self._restoring() and workflow.patched(SIGNAL_AFTER_RESTORE_PATCH):
            await self._restored()
        now = workflow.now()
        try:
            value: Any = single_json(payloads, what="the decide signal")
        except InputProblem as problem:
            return self._keep(
                RejectedAttempt.of(at=now, via="signal", reviewer=None, payload=preview(payloads), error=str(problem))
            )
        try:
            decision = Decision.model_validate(value)
        except ValidationError as err:
            error = format_validation_error(err)
            return self._keep(RejectedAttempt.of(at=now, via="signal", reviewer=reviewer_of(value), payload=value, error=error))
        identity: Identity | None = None
        judged = self._problem(decision)
        if not isinstance(judged, str):
            try:
                identity = await self._trust.verified(decision.reviewer, decision.proof, channel="decide signal")
                await self._refresh(judged)
            except (ProofRefused, DirectoryUnavailable) as refused:
                judged = str(refused)
            else:
                judged = self._problem(decision)
        if isinstance(judged, str):
            return self._keep(
                RejectedAttempt.of(at=workflow.now(), via="signal", reviewer=decision.reviewer, payload=value, error=judged)
            )
        judged.accept(decision, "signal", workflow.now(), identity)
        self._publish()

    def _keep(self, attempt: RejectedAttempt) -> None:
        if self._gate is not None:
            keep_attempt(self._gate.rejected_attempts, attempt)
            self._gate.attempts_received += 1
        else:
            keep_attempt(self._early, attempt)
        self._publish()

    # -- operators ---------------------------------------------------------------------------------

    @workflow.update(
        name="operator_action",
        description="Operators: cancel the policy change (nothing activated) or note something on it. Kept in its record.",
    )
    async def operator_action(self, *payloads: RawValue) -> OperatorReceipt:
        if self._restoring():
            await self._restored()
            self._validate_operator_action(*payloads)
        action = self._operator_action_in(payloads)
        self._check_operator_action(action)
        try:
            identity = await self._trust.verified(action.operator, action.proof, channel="operator_action")
            if identity.mode == "verified":  # roles are checked in verified mode only: the directory's of now
                await self._reread_operator_roles()
        except (ProofRefused, DirectoryUnavailable) as refused:
            raise refusal(str(refused), "OperatorActionRejected") from None
        self._check_operator_action(action)  # with the roles of now, and the state after the reads
        record = OperatorRecord(
            action=action.action.value, operator=action.operator, reason=action.reason, at=workflow.now(), identity=identity
        )
        needs_temporal_cancel = False
        gate = self._gate
        if action.action == OperatorActionKind.CANCEL and gate is not None and gate.open:
            gate.close_by_operator("cancelled", action.operator, action.reason, workflow.now())
            record.result = "cancelled while waiting for a decision; nothing activated"
        elif action.action == OperatorActionKind.CANCEL:
            # the brief being prepared (an activity that may be retrying) stops only on Temporal's cancel
            self._cancel_requested, needs_temporal_cancel = record, True
            record.result = f"cancellation requested in state {self._state.value}; cancel the workflow to interrupt it"
        else:
            record.result = "noted"
        self._operator_actions.append(record)
        self._publish()
        return OperatorReceipt(result=record.result, needs_temporal_cancel=needs_temporal_cancel)

    @operator_action.validator
    def _validate_operator_action(self, *payloads: RawValue) -> None:
        if self._restoring():
            return
        action = self._operator_action_in(payloads)
        self._check_identity(action.operator, action.proof, channel="operator_action", refused_as="OperatorActionRejected")
        self._check_operator_action(action)

    @staticmethod
    def _operator_action_in(payloads: Sequence[Any]) -> OperatorAction:
        invalid, refused_as = "invalid operator action", "OperatorActionRejected"
        return submission(payloads, OperatorAction, what="operator_action", invalid=invalid, refused_as=refused_as)

    def _check_operator_action(self, action: OperatorAction) -> None:
        trust, gate = self._keys.trust, self._gate
        problem = change_operator_problem(
            action,
            state=self._state,
            proposer=self._request.proposer if self._request is not None else None,
            operators=self._operators,
            verified=trust is not None and trust.mode == "verified",
            kept=len(self._operator_actions),
            directory_version=gate.directory_version if gate is not None else None,
            now=workflow.now(),
        )
        if problem is None and action.action == OperatorActionKind.CANCEL and self._cancel_requested is not None:
            problem = "a cancellation is already requested; cancel the workflow through Temporal to interrupt it"
        if problem:
            raise refusal(problem, "OperatorActionRejected")

    async def _reread_operator_roles(self) -> None:
        """The directory's operators of now for the policy's gate (with the open gate's roster, if one is open)."""
        gate, proposed, request = self._gate, self._proposed, self._request
        if gate is not None and gate.open:
            await self._refresh(gate)  # keeps the roles read before when the directory is down
        elif proposed is not None and request is not None:
            try:
                self._operators = (await self._trust.roster(proposed.gate.name, [], [request.proposer])).operators
            except DirectoryUnavailable:
                if self._operators is None:
                    raise  # no roles read yet: refused, with the reason

    # -- what reviewers and the UI see ---------------------------------------------------------------

    @workflow.query(name="policy_change_state", description="The change's brief, gate, approvals and outcome.")
    def policy_change_state(self) -> ChangeView:
        view = change_view(workflow.info().workflow_id, self._state, self._brief, self._gate, workflow.now())
        view.refusal, view.activated, view.not_activated = self._refusal, self._activated, self._not_activated
        view.operator_actions = list(self._operator_actions)
        if self._gate is None:
            view.rejected_attempts = list(self._early)
        return view

    def _publish(self) -> None:
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        brief, gate = self._brief, self._gate
        if self._request is None:
            return "## Policy change\n\nstarting"
        lines = [f"## Policy change: {self._state.value}"]
        if brief is None:
            return "\n\n".join([*lines, "preparing the brief"])
        diff = brief.diff
        lines.append(f"{md_inline(brief.proposed)} against {md_inline(brief.active or 'no active version')}")
        if diff.rules_added or diff.rules_removed:
            lines.append(
                f"rules added: {', '.join(diff.rules_added) or 'none'}; removed: {', '.join(diff.rules_removed) or 'none'}"
            )
        for change in diff.rules_changed:
            lines.append(f"- {change.rule_id}: {'; '.join(change.changes)}")
        lines.append(brief.plan.describe())
        if gate is not None and gate.open:
            lines.append(f"waiting for {gate.definition.levels[gate.level].title} until {gate.escalate_at():%Y-%m-%d %H:%MZ}")
            if gate.quorum is not None:
                lines.append(
                    f"approved by: {', '.join(gate.approvers()) or 'nobody yet'}; still needed: {', '.join(gate.still_needed())}"
                )
        elif gate is not None and gate.decision is not None:
            lines.append(f"{gate.decision.outcome} by {md_inline(gate.decision.decided_by)}")
        if self._activated:
            lines.append(f"activated: {md_inline(self._activated)}")
        if self._not_activated:
            lines.append(f"approved, not activated: {md_inline(self._not_activated)}")
        lines.append(f"**reason**, as {md_inline(brief.proposer)} wrote it:\n\n{md_block(brief.reason)}")
        return "\n\n".join(lines)
