"""A case's wait at its gate, on durable timers: remind the current level, escalate (by its deadline
or an operator's request), time out at the last level, or hand the waiting case to a fresh run.

Workflow code: a plain class the case workflow owns for one wait (one gate round), like the
samples' `UpdatableTimer`. The handlers change the gate and the case file; this loop only waits
for them, or for the next deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from gates import composition as compose
    from gates.case_file import AtGate, CaseFile
    from gates.gate import AcceptedDecision
    from gates.kinds import SPECS
    from gates.messages import NotificationKind, Quote
    from workflows import activity_calls as calls
    from workflows.audit_outbox import audit_batch

# How a wait ended when no decision ended it: its deadline passed, or an operator's escalation
# (or the continue-as-new that gave way to one) was handled, and the loop starts again.
WaitEnd = Literal["deadline", "handled"]


class GateWait:
    """Waits at the gate until it has a decision: a reviewer's, an operator's cancel, or the timeout."""

    def __init__(
        self,
        case: CaseFile,
        at_gate: AtGate,
        *,
        hardened: bool,
        publish: Callable[[], None],
        continue_as_new_due: Callable[[], bool],
        reread_directory: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._case, self._at_gate = case, at_gate
        self._hardened = hardened
        self._publish = publish
        self._continue_as_new_due = continue_as_new_due
        # trusted cases: read the directory again at each reminder and escalation, so who may decide
        # follows it while nobody acts (a decision reads it again anyway)
        self._reread_directory = reread_directory
        self._ask = SPECS[at_gate.request.kind].ask(at_gate.request)
        self.parked = False  # waiting on a timer or a decision (the handlers read it)

    async def decision(self) -> AcceptedDecision:
        """The decision that closed the gate, after any reminders, escalations and runs it took."""
        gate = self._at_gate.gate
        while True:
            level = gate.definition.levels[gate.level]
            # reminded at this level since it started (derived from the gate, so it survives continue-as-new)
            reminded = any(r.level == gate.level and r.at >= gate.level_started_at for r in gate.reminders)
            if not reminded:
                woke = await self._wait(gate.remind_at(), f"remind {gate.current_group}")
            else:
                action = "time out" if gate.is_last_level() else f"escalate to {gate.group_at(gate.level + 1)}"
                woke = await self._wait(gate.escalate_at(), action)
            if isinstance(woke, AcceptedDecision):
                return woke
            if woke == "handled":
                continue
            if not reminded:
                if self._reread_directory is not None:
                    await self._reread_directory()
                    if not gate.open:
                        continue  # decided during the read: the next wait returns the decision
                gate.record_reminder(workflow.now())
                await self._notify("reminder", f"Reminder: {self._ask} is waiting for {level.title}.", gate.escalate_at())
                self._publish()
            elif gate.is_last_level():
                decision = gate.time_out(workflow.now())
                await self._notify("timeout", f"Timed out at {level.title}: recorded as {decision.outcome}.", None)
                return decision
            else:
                await self._escalate(f"no decision from {gate.current_group} within {level.escalate_after}")

    async def _wait(self, until: datetime, action: str) -> AcceptedDecision | WaitEnd:
        """Wait for a decision, an operator's escalation, the deadline, or the time to continue as new."""
        gate, case = self._at_gate.gate, self._case

        def settled() -> bool:
            return not gate.open or case.escalation_requested is not None or self._continue_as_new_due()

        timeout = until - workflow.now()
        if timeout > timedelta(0) and not settled():
            self.parked = True
            try:
                await workflow.wait_condition(settled, timeout=timeout, timeout_summary=f"{action} after {timeout}")
            except TimeoutError:
                pass
            finally:
                self.parked = False
        if gate.decision is not None:  # the gate closed: decided, or cancelled by an operator
            return gate.decision
        if (requested := case.escalation_requested) is not None:
            await self._escalate(f"operator {requested.operator}: {requested.reason}")
            return "handled"
        if self._continue_as_new_due() and until > workflow.now():
            await self._continue_as_new()
            return "handled"
        return "deadline"

    async def _escalate(self, reason: str) -> None:
        gate, requested = self._at_gate.gate, self._case.escalation_requested
        if self._reread_directory is not None:
            await self._reread_directory()
            if not gate.open:  # decided during the read: nothing to escalate
                self._case.escalation_requested = None
                return
        to_level = gate.definition.levels[gate.escalate(workflow.now(), reason=reason).to_level]
        self._case.escalation_requested = None
        why = [Quote(person=requested.operator, label="reason", text=requested.reason)] if requested is not None else []
        await self._notify("escalation", f"Escalated to {to_level.title}: {self._ask}", gate.remind_at(), why)
        self._publish()

    async def _notify(
        self, kind: NotificationKind, message: str, deadline: datetime | None, quotes: list[Quote] | None = None
    ) -> None:
        """`message` is the system's words; people's own (an operator's reason) travel apart, in `quotes`."""
        batch = audit_batch(self._case, self._at_gate.started_at)  # the gate's events go with each notification
        about = calls.About(ask=self._ask, deadline=deadline, quotes=quotes or [])
        if await calls.notify(self._at_gate.gate, kind, message, hardened=self._hardened, audit=batch.events, about=about):
            batch.written()

    async def _continue_as_new(self) -> None:
        """Hand the waiting case to a fresh run with its state; returns only if a decision or an
        escalation came first (the loop handles it, then the case continues as new)."""
        gate, case = self._at_gate.gate, self._case
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() or not gate.open or case.escalation_requested is not None
        )
        if not gate.open or case.escalation_requested is not None:
            return
        info = workflow.info()
        workflow.continue_as_new(
            compose.carry_over(
                case, self._at_gate, workflow_id=info.workflow_id, first_execution_run_id=info.first_execution_run_id
            )
        )
