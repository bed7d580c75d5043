"""One case's state in one object: what the case workflow knows, keeps and carries to its next run.

The workflow (workflows/case.py) holds one `CaseFile`; its handlers and its loop change it, and the
pure functions of gates.composition turn it into what others see: the reviewer view, the UI's
Current Details, the decision trace, the state carried over on continue-as-new. The rules that
decide whether a submission reaches the gate now (`judging_gate`, `operator_problem`) live here too,
so the update validators, the handlers after an await, and the unit tests apply the same ones.

A case fills its file as it goes (the request, then the policy, then each round's evidence,
evaluation and brief, then the gate), so those fields are optional here. The loop does not read
them back: it passes what it has for certain, and `AtGate` is what a case waiting at its gate has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from gates.audit_trail import AuditMark
from gates.bounds import MAX_OPERATOR_ACTIONS
from gates.brief import ReviewerQuestion
from gates.cases import REQUEST_MODELS, CaseRequest
from gates.durations import exact_duration
from gates.duties import conflict_of
from gates.evidence import ContextBundle
from gates.gate import (
    AcceptedDecision,
    GateState,
    Identity,
    OperatorAction,
    OperatorActionKind,
    OperatorRecord,
    RejectedAttempt,
    keep_attempt,
)
from gates.identity import TrustSnapshot
from gates.info_request import InfoAnswer, InfoRequest
from gates.messages import Roster
from gates.policy import Policy, PolicyEvaluation
from gates.precedent import Precedent
from gates.quorum import Quorum
from gates.trace import CaseCarryOver, CaseState, CaseSummary


@dataclass
class CaseFile:
    """Everything one run of a case knows, from its first workflow task to its recorded decision."""

    state: CaseState = CaseState.GATHERING
    refusal: str | None = None  # why the start was refused (state REFUSED)
    request: CaseRequest | None = None  # set once the start is admitted
    policy: Policy | None = None  # resolved once, when the case opens
    runs_before: int = 0  # runs of this case before this one (continue-as-new)
    # the latest gathering round: what the sources said, the precedents, the evaluation and the brief
    context: ContextBundle = field(default_factory=ContextBundle)
    tags: list[str] = field(default_factory=list)
    precedents: list[Precedent] = field(default_factory=list)
    headline: str | None = None
    evaluation: PolicyEvaluation | None = None
    summary: CaseSummary | None = None
    # the gate, opened once and reopened after each request_info round
    gate: GateState | None = None
    rounds: list[AcceptedDecision] = field(default_factory=list)  # the request_info decisions
    questions: list[ReviewerQuestion] = field(default_factory=list)
    decision: AcceptedDecision | None = None  # the final one, once taken
    # attempts refused before the gate opened (or when it could not judge); the gate keeps its own
    early_attempts: list[RejectedAttempt] = field(default_factory=list)
    early_received: int = 0  # attempts ever kept in early_attempts (which holds a bounded number)
    operator_actions: list[OperatorRecord] = field(default_factory=list)
    escalation_requested: OperatorRecord | None = None  # an operator's escalate, until the loop performs it
    cancel_requested: OperatorRecord | None = None  # an operator's cancel of work in progress
    trimmed: list[str] = field(default_factory=list)  # what earlier runs cut to fit their payload limit
    # since TRUST_PATCH: proofs verified against these keys, separation of duties, the evidence digest
    trusted: bool = False
    trust: TrustSnapshot | None = None
    keys_refreshed_at: datetime | None = None  # the last fetch for a key id not seen (rate-limited)
    operators: list[str] | None = None  # the directory's operators for this case's gate, as last read
    audit_mark: AuditMark = field(default_factory=AuditMark)  # how much of this file the audit log holds
    # since INFO_WAIT_PATCH (workflows/case.py): every question sent to a person, the open one last
    info_rounds: list[InfoRequest] = field(default_factory=list)
    # Whether an agent advises on briefs, read as the case opened (since LOCAL_GATHERS_PATCH, when the
    # workflow writes the brief itself); None: not read, and the brief is written by `summarize_case`.
    agent_configured: bool | None = None

    @classmethod
    def restored(cls, carried: CaseCarryOver) -> tuple[CaseFile, AtGate]:
        """The file of a case continued as new, waiting at its gate as its previous run left it."""
        request = REQUEST_MODELS[carried.kind].model_validate(carried.request)
        awaiting = bool(carried.info_rounds) and carried.info_rounds[-1].waiting
        case = cls(
            state=CaseState.AWAITING_INFO if awaiting else CaseState.WAITING,
            request=request,
            policy=carried.policy,
            runs_before=carried.runs,
            context=carried.context,
            tags=carried.tags,
            precedents=carried.precedents,
            headline=carried.headline,
            evaluation=carried.evaluation,
            summary=carried.summary,
            gate=carried.gate,
            rounds=carried.rounds,
            questions=carried.questions,
            early_attempts=carried.early_attempts,
            early_received=carried.attempts_received - carried.gate.attempts_received,
            operator_actions=carried.operator_actions,
            trimmed=carried.trimmed,
            trusted=carried.trusted,
            audit_mark=carried.audit_mark,
            operators=carried.gate.operators if carried.trusted else None,
            info_rounds=carried.info_rounds,
            agent_configured=carried.agent_configured,
        )
        at_gate = AtGate(
            request=request,
            started_at=carried.started_at,
            policy=carried.policy,
            evaluation=carried.evaluation,
            summary=carried.summary,
            gate=carried.gate,
        )
        return case, at_gate

    # -- the gate and the decision --------------------------------------------------------------

    def open_gate(
        self,
        policy: Policy,
        request: CaseRequest,
        roster: Roster,
        *,
        level: int,
        now: datetime,
        digest: str | None = None,
        quorum: Quorum | None = None,
    ) -> GateState:
        """Open the policy's gate at `level`, with the members of its groups as the directory has them now.

        A trusted case's gate also keeps the directory's delegations, operators and version, the case's
        subject, its identity mode and the digest of the evidence a decision must name."""
        self.gate = GateState(
            definition=policy.gate,
            requester=request.requester,
            roster=roster.members,
            level=level,
            opened_at=now,
            level_started_at=now,
        )
        if self.trusted:
            gate = self.gate
            gate.trusted, gate.subject, gate.digest, gate.quorum = True, request.subject(), digest, quorum
            gate.identity_mode = self.trust.mode if self.trust is not None else "verified"
            gate.directory_version, gate.delegations = roster.directory_version, roster.delegations
            gate.inactive = roster.inactive
            gate.operators, gate.serving = roster.operators, roster.serving
            self.operators = roster.operators
        self.state = CaseState.WAITING
        return self.gate

    def reopen_gate(
        self, gate: GateState, *, level: int, now: datetime, digest: str | None = None, quorum: Quorum | None = None
    ) -> GateState:
        """Back from request_info: the same gate, fresh deadlines, never a lower level than before;
        a trusted gate takes the new round's evidence digest (a decision on the old one is stale).
        After a question that went to a person (`info_rounds`), the gate's opening time restarts
        too: the inbox's age and time-to-decision count from the new round, not from the first."""
        gate.level = max(gate.level, level)
        gate.level_started_at = now
        if self.info_rounds:
            gate.opened_at = now
        gate.round = len(self.rounds) + 1
        gate.decision = None
        gate.open = True
        if gate.trusted:  # a new round: new evidence, so approvals on the old one no longer count
            gate.digest, gate.quorum, gate.approvals, gate.rejections = digest, quorum, [], []
        self.state = CaseState.WAITING
        return gate

    def cancellation(self, now: datetime) -> AcceptedDecision:
        """What a cancellation through Temporal records: the operator who asked for it, if one did."""
        note = self.cancel_requested
        return AcceptedDecision(
            outcome="cancelled",
            decided_by=f"operator:{note.operator}" if note else "temporal:cancel-request",
            reason=note.reason if note else "the workflow was cancelled through Temporal",
            via="operator",
            level=self.gate.level if self.gate else -1,
            at=now,
        )

    # -- a question to a person (request_info, since INFO_WAIT_PATCH) ---------------------------------

    @property
    def info_request(self) -> InfoRequest | None:
        """The open question the case waits on, if it waits on one."""
        latest = self.info_rounds[-1] if self.info_rounds else None
        return latest if latest is not None and latest.waiting else None

    def awaiting_problem(self, then: str = "decide once it is answered") -> str | None:
        """Why no decision (or routing change) is taken now because the case waits for an answer, or None."""
        info = self.info_request
        if self.state != CaseState.AWAITING_INFO or info is None:
            return None
        return (
            f"the case is waiting for {info.asked}'s answer to a question from {info.asked_by}; {then}"
        )

    def ask_problem(self, reviewer: str, asked: str, roster: Roster | None = None) -> str | None:
        """Why `asked` cannot be sent `reviewer`'s request_info question, or None. Without `roster` (a
        validator) only what needs no read; with the directory's answer about `asked`, whether they are
        a known, active person in it. With no directory file loaded only the requester, or someone the
        roster names, can be asked."""
        if asked == reviewer:
            return f"{asked} cannot ask themselves; name the person who can answer (ask), or leave it for the requester"
        if roster is None:
            return None
        if roster.active_people is not None:
            known = asked in roster.active_people
        else:
            requester = self.request.requester if self.request is not None else None
            known = asked in roster.people or (roster.directory_version is None and asked == requester)
        if not known:
            version = roster.directory_version or "none loaded"
            return f"{asked} is not a known, active person in the directory (version {version}); ask someone who is"
        return None

    def ask_for_info(self, decision: AcceptedDecision, asked: str, now: datetime) -> InfoRequest:
        """A request_info decision was accepted: its reason goes to `asked` as a question, and the case
        waits for the answer on the gate's answer timers."""
        assert self.gate is not None
        definition = self.gate.definition
        info = InfoRequest(
            round=self.gate.round,
            asked_by=decision.decided_by,
            asked=asked,
            question=decision.reason,
            asked_at=now,
            remind_at=now + definition.answer_remind_after,
            due_at=now + definition.answer_within,
        )
        self.info_rounds.append(info)
        self.state = CaseState.AWAITING_INFO
        return info

    def answer_problem(self, answer: InfoAnswer, operators: list[str] | None = None) -> str | None:
        """Why this answer cannot be taken now, or None. Read-only: safe in an update validator.
        `operators`: who holds an operator role for the gate (default: as last read)."""
        info = self.info_request
        if info is None or self.state != CaseState.AWAITING_INFO:
            latest = self.info_rounds[-1] if self.info_rounds else None
            if latest is not None and latest.outcome == "answered" and latest.answered_at is not None:
                when = latest.answered_at.isoformat(timespec="seconds")
                return f"the question of round {latest.round} was already answered by {latest.answered_by} at {when}"
            if latest is not None and latest.outcome == "no_answer":
                within = exact_duration(self.gate.definition.answer_within) if self.gate else "its deadline"
                return (
                    f"too late: the question of round {latest.round} from {latest.asked_by} closed unanswered at "
                    f"{latest.due_at.isoformat(timespec='seconds')} (answer within {within}); the case moved on"
                )
            return f"case is not waiting for an answer (state: {self.state.value})"
        allowed = operators if operators is not None else (self.operators or (self.gate.operators if self.gate else []))
        if answer.answerer != info.asked and answer.answerer not in allowed:
            return f"{answer.answerer} may not answer: the question is for {info.asked} (or an operator of this gate)"
        return None

    def take_answer(self, answer: InfoAnswer, now: datetime, identity: Identity | None = None) -> InfoRequest:
        """Keep the answer on the open question (call only after `answer_problem` returned None)."""
        info = self.info_request
        assert info is not None
        info.answer, info.answered_by, info.answered_at = answer.text, answer.answerer, now
        info.attachment_name, info.attachment_text = answer.attachment_name, answer.attachment_text
        info.answered_identity, info.outcome = identity, "answered"
        return info

    def no_answer(self, now: datetime) -> AcceptedDecision | None:
        """The open question's deadline passed: it closes as `no_answer`; under `no_answer:
        timeout_outcome` the gate's timeout outcome is the decision (returned), else None (back to the gate)."""
        info, gate = self.info_request, self.gate
        assert info is not None and gate is not None
        info.outcome = "no_answer"
        definition = gate.definition
        if definition.no_answer != "timeout_outcome":
            return None
        gate.decision = AcceptedDecision(
            outcome=definition.timeout_outcome,
            decided_by=f"timeout:{definition.name}",
            reason=(
                f"no answer from {info.asked} within {exact_duration(definition.answer_within)} to the question from "
                f"{info.asked_by}; policy outcome when a question goes unanswered is {definition.timeout_outcome}"
            ),
            via="timeout",
            level=gate.level,
            group=gate.current_group,
            at=now,
        )
        return gate.decision

    # -- rejected attempts ------------------------------------------------------------------------

    def keep_attempt(self, attempt: RejectedAttempt) -> None:
        """Keep an attempt refused before any gate could judge it (bounded like the gate's own)."""
        keep_attempt(self.early_attempts, attempt)
        self.early_received += 1

    def attempts(self) -> list[RejectedAttempt]:
        """Every kept rejected attempt, the file's and the gate's, oldest first."""
        return sorted(self.early_attempts + (self.gate.rejected_attempts if self.gate else []), key=lambda a: a.at)

    def attempts_received(self) -> int:
        """Every rejected attempt this case has kept, including those later dropped by the bound."""
        return self.early_received + (self.gate.attempts_received if self.gate else 0)

    # -- who judges a submission now ----------------------------------------------------------------

    def judging_gate(self) -> GateState | str:
        """The gate that judges a decision now (it answers "already decided: ..." itself once it has
        one), or why no decision can be taken at all."""
        gate = self.gate
        if (waiting_for := self.awaiting_problem()) is not None:
            return waiting_for
        if gate is not None and (gate.open or self.state == CaseState.WAITING or self.decision is not None):
            return gate
        if self.decision is not None:
            return f"case already decided: {self.decision.outcome} by {self.decision.decided_by}"
        if self.state == CaseState.REFUSED:
            return "this start was refused and is not a case"
        if self.request is None:  # the run's first task has not started it (or a continued run not restored it) yet
            return "case is starting; send it again in a moment"
        return f"case is not waiting for a decision (state: {self.state.value})"

    def operator_problem(self, action: OperatorAction, *, bounded: bool, now: datetime | None = None) -> str | None:
        """Why this operator action cannot be taken now, or None. `bounded`: the case keeps at most
        MAX_OPERATOR_ACTIONS (since HARDENED_PATCH). Trusted cases (give `now`): the requester and the
        subject may not operate their own case, and in verified mode the operator needs the
        directory's operator role (checked against the roles last read; the handler reads them again)."""
        # Retry and note stay possible while recording (the record activity is what may be stuck);
        # they reach the case state and history, though the trace was composed before recording.
        if self.state == CaseState.REFUSED:
            return "this start was refused and is not a case"
        if self.trusted and now is not None and (problem := self._operator_trust_problem(action, now)):
            return problem
        if self.state == CaseState.DECIDED or (
            self.state == CaseState.RECORDING and action.action not in (OperatorActionKind.RETRY, OperatorActionKind.NOTE)
        ):
            return f"case is already {self.state.value}"
        if bounded and action.action != OperatorActionKind.CANCEL and len(self.operator_actions) >= MAX_OPERATOR_ACTIONS:
            return (
                f"this case already keeps {MAX_OPERATOR_ACTIONS} operator actions, the most it takes; "
                "only cancel is still possible"
            )
        if action.action in (OperatorActionKind.ESCALATE, OperatorActionKind.REASSIGN, OperatorActionKind.DELEGATE) and (
            waiting_for := self.awaiting_problem(then=f"{action.action.value} once it is back at the gate")
        ):
            return waiting_for
        if action.action in (OperatorActionKind.ESCALATE, OperatorActionKind.REASSIGN):
            gate = self.gate
            if gate is None or not gate.open:
                return f"case is not waiting at a gate (state: {self.state.value})"
            if action.action == OperatorActionKind.ESCALATE and gate.is_last_level():
                return f"already at the last level ({gate.definition.levels[gate.level].title}); decide or cancel instead"
            if action.action == OperatorActionKind.ESCALATE and self.escalation_requested is not None:
                return "an escalation is already in progress"
            if action.action == OperatorActionKind.REASSIGN and not action.group:
                return "reassign needs a group"
        if action.action == OperatorActionKind.DELEGATE:
            return self._delegation_problem(action, now)
        return None

    def _operator_trust_problem(self, action: OperatorAction, now: datetime) -> str | None:
        operator, request, gate = action.operator, self.request, self.gate
        if request is None:
            return "case is starting; try again in a moment"
        delegations = gate.all_delegations() if gate is not None else []
        conflict = conflict_of(
            operator, requester=request.requester, subject=request.subject(), delegations=delegations, now=now, doing="operate"
        )
        if conflict:
            return conflict
        verified = self.trust is not None and self.trust.mode == "verified"
        own_delegation = action.action == OperatorActionKind.DELEGATE and action.delegator in (None, operator)
        if verified and not own_delegation and self.operators is not None and operator not in self.operators:
            where = self.policy.gate.name if self.policy is not None else "this"
            version = gate.directory_version if gate is not None and gate.directory_version else "none loaded"
            return (
                f"{operator} has no operator role for the {where} gate in the directory (version {version}); "
                "an administrator grants it in the directory file (`hitl directory load`)"
            )
        return None

    def _delegation_problem(self, action: OperatorAction, now: datetime | None) -> str | None:
        """A one-off delegation for this case: only while a trusted gate waits, for someone who sits at it."""
        gate = self.gate
        if not self.trusted:
            return "this case was started before delegations existed; decide or reassign instead"
        if gate is None or not gate.open:
            return f"case is not waiting at a gate (state: {self.state.value})"
        if action.delegate is None:
            return "delegate needs `delegate`: who decides for the delegator"
        delegator = action.delegator or action.operator
        if delegator == action.delegate:
            return f"{delegator} cannot delegate to themselves"
        if gate.level_of(delegator) is None:
            return f"{delegator} has no seat at this gate to delegate (groups: {', '.join(gate.eligible_groups())})"
        if problem := gate.conflict(action.delegate, now):
            return problem
        return None

    def gate_for(self, action: OperatorAction, *, bounded: bool) -> GateState | str:
        """The open gate an escalate or reassign applies to, or why it no longer applies.

        For a handler that awaited something since it was validated: a decision, a cancel or the
        case's own timeout may have closed the gate meanwhile, and the action must not touch it."""
        gate = self.gate
        if gate is not None and gate.decision is not None:
            d = gate.decision
            return f"the case was decided meanwhile ({d.outcome} by {d.decided_by}); nothing was changed"
        problem = self.operator_problem(action, bounded=bounded)
        if problem is not None or gate is None:
            return problem or f"case is not waiting at a gate (state: {self.state.value})"
        return gate


@dataclass(frozen=True)
class AtGate:
    """What a case waiting at its gate has for certain, passed along the loop while it waits."""

    request: CaseRequest
    started_at: datetime
    policy: Policy
    evaluation: PolicyEvaluation
    summary: CaseSummary
    gate: GateState


def decided_by_policy(policy: Policy, evaluation: PolicyEvaluation, now: datetime) -> AcceptedDecision:
    """The policy's own decision, when no rule requires a human."""
    allowed = ", ".join(f.rule_id for f in evaluation.findings)
    return AcceptedDecision(
        outcome=policy.auto_outcome,
        decided_by=f"policy:{policy.ref}",
        reason=f"no rule requires a human; allowed by {allowed}",
        via="policy",
        level=-1,
        at=now,
    )
