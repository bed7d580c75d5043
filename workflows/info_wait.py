"""A case's wait for the answer to a reviewer's question, on durable timers: remind the person asked,
close the question unanswered at its deadline, or hand the waiting case to a fresh run.

Workflow code, like workflows/gate_wait.py: a plain class the case workflow owns for one question.
The `answer_info` update and the operator's cancel change the case file; this loop only waits for
them, or for the next deadline. The question goes to the person asked (not the gate's reviewers),
with the reviewer's words quoted as theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from gates import composition as compose
    from gates.case_file import AtGate, CaseFile
    from gates.durations import exact_duration
    from gates.gate import AcceptedDecision
    from gates.info_request import InfoRequest
    from gates.kinds import SPECS
    from gates.messages import Notification, NotificationKind, Quote
    from workflows import activity_calls as calls
    from workflows.audit_outbox import audit_batch


class InfoWait:
    """Waits until the open question is answered, goes unanswered, or an operator cancels the case."""

    def __init__(
        self,
        case: CaseFile,
        at_gate: AtGate,
        *,
        publish: Callable[[], None],
        continue_as_new_due: Callable[[], bool],
        resumed: bool = False,
    ) -> None:
        self._case, self._at_gate = case, at_gate
        self._publish = publish
        self._continue_as_new_due = continue_as_new_due
        self._resumed = resumed  # continued as new while waiting: the question went out in an earlier run
        self._ask = SPECS[at_gate.request.kind].ask(at_gate.request)
        self.parked = False  # waiting on a timer or an answer (the handlers read it)

    async def outcome(self) -> InfoRequest | AcceptedDecision:
        """The closed question (answered, or `no_answer` and back to the gate), or the decision that
        ended the case meanwhile: the gate's timeout outcome under `no_answer: timeout_outcome`, or an
        operator's cancel."""
        case = self._case
        info = case.info_request
        assert info is not None
        self._publish()
        if not self._resumed:
            await self._notify(
                info,
                "info_requested",
                f"A question from {info.asked_by} about {self._ask}: please answer by {_when(info.due_at)} (`hitl answer`).",
                [info.asked],
            )
        while True:
            until = info.remind_at if info.reminded_at is None else info.due_at
            action = f"remind {info.asked}" if info.reminded_at is None else f"close the question to {info.asked} unanswered"
            ended = await self._wait(info, until, action)
            if ended is not None:
                return ended
            if info.reminded_at is None:
                info.reminded_at = workflow.now()
                message = (
                    f"Reminder: {info.asked_by}'s question about {self._ask} waits for your answer until {_when(info.due_at)}."
                )
                await self._notify(info, "info_reminder", message, [info.asked])
                self._publish()
                continue
            decision = case.no_answer(workflow.now())
            within = exact_duration(self._at_gate.gate.definition.answer_within)
            then = (
                f"recorded as {decision.outcome} (the policy's outcome when a question goes unanswered)"
                if decision is not None
                else "the case went back to the gate, marked 'no answer'"
            )
            message = f"No answer from {info.asked} within {within} about {self._ask}: {then}."
            await self._notify(info, "info_unanswered", message, list(dict.fromkeys([info.asked, info.asked_by])))
            return decision if decision is not None else info

    async def _wait(self, info: InfoRequest, until: datetime, action: str) -> InfoRequest | AcceptedDecision | None:
        """Wait for the answer, an operator's cancel, the deadline (None), or the time to continue as new."""
        case = self._case

        def settled() -> bool:
            return not info.waiting or case.cancel_requested is not None or self._continue_as_new_due()

        while True:
            timeout = until - workflow.now()
            if timeout > timedelta(0) and not settled():
                self.parked = True
                try:
                    await workflow.wait_condition(settled, timeout=timeout, timeout_summary=f"{action} after {timeout}")
                except TimeoutError:
                    pass
                finally:
                    self.parked = False
            if not info.waiting:
                return info
            if case.cancel_requested is not None:
                return case.cancellation(workflow.now())
            if self._continue_as_new_due() and until > workflow.now():
                await self._continue_as_new(info)
                continue  # an answer or a cancel came first: the checks above take it
            return None

    async def _notify(self, info: InfoRequest, kind: NotificationKind, message: str, recipients: list[str]) -> None:
        """To the person asked (and the reviewer, when nobody answered); best effort, once per round and kind.
        `message` is the system's words; the reviewer's question travels apart, quoted as theirs."""
        gate, started = self._at_gate.gate, self._at_gate.started_at
        wf = workflow.info()
        batch = audit_batch(self._case, started)  # the case's audit events ride with it
        key = f"{wf.workflow_id}/{wf.first_execution_run_id}/r{info.round}/{kind}/asked"
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify_reviewers,
                Notification(
                    notification_key=key,
                    case_id=wf.workflow_id,
                    kind=kind,
                    gate=gate.definition.name,
                    level=gate.level,
                    reviewer_group=gate.current_group,
                    recipients=recipients,
                    message=message,
                    audit=batch.events,
                    ask=self._ask,
                    deadline=info.due_at if kind != "info_unanswered" else None,
                    quotes=[Quote(person=info.asked_by, label="question", text=info.question)],
                    asked=[info.asked],
                ),
                activity_id=f"notify-{kind}-r{info.round}",
                start_to_close_timeout=calls.QUICK,
                heartbeat_timeout=calls.HEARTBEAT_TIMEOUT,
                retry_policy=calls.NOTIFY_RETRY,
                summary=f"{kind}: {info.asked}",
            )
        except ActivityError as err:
            workflow.logger.warning("notification %s not delivered: %s", key, err.cause or err)
            return
        batch.written()

    async def _continue_as_new(self, info: InfoRequest) -> None:
        """Hand the waiting case to a fresh run with the open question; returns only if an answer or a
        cancel came first (the loop takes it)."""
        case = self._case
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() or not info.waiting or case.cancel_requested is not None
        )
        if not info.waiting or case.cancel_requested is not None:
            return
        wf = workflow.info()
        workflow.continue_as_new(
            compose.carry_over(case, self._at_gate, workflow_id=wf.workflow_id, first_execution_run_id=wf.first_execution_run_id)
        )


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"
