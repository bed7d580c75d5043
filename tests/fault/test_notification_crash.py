"""The worker is SIGKILLed while an email is being sent: nothing is sent twice, nothing is lost.

The SMTP server is a real local one (aiosmtpd) that can be made to hang a session at RCPT, before any
message is accepted: the dying worker's delivery is in flight (a connection open, the delivery row
claimed) when the kill comes, and the server never accepted its message. A new worker then delivers
each notification once: the `decided` one from the outbox at its start (`redeliver_pending`), the
question (`info_requested`) by the notify activity's retry once its heartbeat timeout passes.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from temporalio.client import WorkflowHandle

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, DecisionOutcome
from gates.info_request import InfoAnswer
from gates.trace import CaseState
from tests.case_helpers import case_view, start_case, wait_until_waiting
from tests.fault.conftest import FaultStack, assert_decided_once, fault_stack
from tests.helpers import assert_eventually
from tests.integration.test_notify_channels import Inbox
from workers.devstack import free_port

pytestmark = [pytest.mark.fault, pytest.mark.slow]

REQUESTER = "samantha.reyes@example.com"  # ae_sam, who requests the acme renewals
ASKED = "jordan.blake@example.com"  # ae_jordan
REVIEWER = "fin_rev_ana"
# How long a second copy gets to show up before the test says none came.
SETTLE_SECONDS = 3.0


class HangingInbox(Inbox):
    """Keeps every accepted message; while `hold` is set, every session waits at RCPT (nothing accepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.held = 0  # sessions waiting at RCPT right now

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802 -- aiosmtpd's hook
        if self.hold.is_set():
            self.held += 1
            try:
                while self.hold.is_set():  # noqa: ASYNC110 -- set and cleared from the test's thread, not this loop
                    await asyncio.sleep(0.05)
            finally:
                self.held -= 1
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


class HangingSmtp:
    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = HangingInbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def to(self, address: str, case_id: str, subject: str) -> list[EmailMessage]:
        return [
            m
            for rcpt, m in self.inbox.received
            if address in rcpt and case_id in m["Subject"] and m["Subject"].startswith(subject)
        ]


@pytest.fixture(scope="module")
def smtp() -> Iterator[HangingSmtp]:
    server = HangingSmtp()
    server._controller.start()
    yield server
    server.inbox.hold.clear()
    server._controller.stop()


@pytest.fixture(scope="module")
async def stack(smtp):
    env = {
        "HITL_SMTP_HOST": "127.0.0.1",
        "HITL_SMTP_PORT": str(smtp.port),
        "HITL_SMTP_FROM": "HITL <hitl@example.com>",
        "HITL_SMTP_STARTTLS": "false",
        "HITL_UI_BASE_URL": "http://temporal-ui.example:8233",
    }
    async with fault_stack("notification-crash", worker_env=env) as s:
        yield s


async def _kill_while_sending(stack: FaultStack, smtp: HangingSmtp) -> None:
    """Once a delivery hangs at the SMTP server: SIGKILL the worker, let the server go again."""
    await assert_eventually(lambda: smtp.inbox.held >= 1, timeout=30)
    stack.kill_worker()
    smtp.inbox.hold.clear()


async def _one_email(smtp: HangingSmtp, address: str, case_id: str, subject: str) -> EmailMessage:
    """Exactly one message (and one Message-ID) to `address` about the case, now and a moment later."""
    await assert_eventually(lambda: len(smtp.to(address, case_id, subject)) >= 1, timeout=60)
    await asyncio.sleep(SETTLE_SECONDS)
    mails = smtp.to(address, case_id, subject)
    assert len(mails) == 1, [(m["Message-ID"], m["Subject"]) for m in mails]
    return mails[0]


async def _delivered_once(stack: FaultStack, case_id: str, kind: str) -> None:
    """One outbox row of that kind, delivered, its email delivery recorded as one successful send."""
    [row] = await stack.fetch(
        "SELECT id, delivered_at, delivery_error FROM notifications WHERE case_id = $1 AND kind = $2", case_id, kind
    )
    assert row["delivered_at"] is not None and row["delivery_error"] is None, dict(row)
    deliveries = await stack.fetch(
        "SELECT channel, status, sent_to FROM notification_deliveries WHERE notification_id = $1", row["id"]
    )
    assert [(d["channel"], d["status"]) for d in deliveries] == [("email", "delivered")], [dict(d) for d in deliveries]


async def _renewal(stack: FaultStack) -> WorkflowHandle:
    assert stack.client is not None
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{uuid.uuid4().hex[:8]}")
    handle = await start_case(stack.client, request, stack.task_queue)
    await wait_until_waiting(handle, timeout=60)
    return handle


@pytest.mark.timeout(240)
async def test_a_decided_email_in_flight_at_a_worker_kill_is_sent_once_by_the_next_worker(stack, smtp):
    handle = await _renewal(stack)
    smtp.inbox.hold.set()
    decision = Decision(outcome=DecisionOutcome.APPROVE, reviewer=REVIEWER, reason="within the band")
    await handle.execute_update("submit_decision", decision)
    await assert_decided_once(stack, handle, outcome="approve", decided_by=REVIEWER)
    await _kill_while_sending(stack, smtp)

    [row] = await stack.fetch("SELECT delivered_at FROM notifications WHERE case_id = $1 AND kind = 'decided'", handle.id)
    assert row["delivered_at"] is None, "the killed worker did not deliver it"
    assert smtp.to(REQUESTER, handle.id, "[hitl] Decided:") == []

    await stack.start_worker()
    mail = await _one_email(smtp, REQUESTER, handle.id, "[hitl] Decided:")
    assert "fin_rev_ana wrote (reason):" in mail.get_content()
    await _delivered_once(stack, handle.id, "decided")
    assert "delivering 1 decided notification(s) a stopped worker left undelivered" in stack.worker_log.read_text()


@pytest.mark.timeout(300)
async def test_a_question_in_flight_at_a_worker_kill_is_sent_once_then_answered_and_decided(stack, smtp):
    handle = await _renewal(stack)
    smtp.inbox.hold.set()
    ask = Decision(
        outcome=DecisionOutcome.REQUEST_INFO, reviewer=REVIEWER, reason="Which contract promised 28%?", ask="ae_jordan"
    )
    await handle.execute_update("submit_decision", ask)
    await _kill_while_sending(stack, smtp)
    assert smtp.to(ASKED, handle.id, "[hitl] Information requested:") == []

    await stack.start_worker()
    # the notify activity the kill lost is retried once its heartbeat times out (10 s)
    mail = await _one_email(smtp, ASKED, handle.id, "[hitl] Information requested:")
    assert "Which contract promised 28%?" in mail.get_content()
    await _delivered_once(stack, handle.id, "info_requested")

    view = await case_view(handle)
    assert view.state == CaseState.AWAITING_INFO, view.state
    await handle.execute_update("answer_info", InfoAnswer(answerer="ae_jordan", text="The 2025 MSA, clause 4.2."))
    back = await wait_until_waiting(handle, round_no=2, timeout=60)
    assert "The 2025 MSA, clause 4.2." in (back.brief or "")
    await handle.execute_update(
        "submit_decision", Decision(outcome=DecisionOutcome.APPROVE, reviewer=REVIEWER, reason="the MSA covers it")
    )
    await assert_decided_once(stack, handle, outcome="approve", decided_by=REVIEWER)
    await _one_email(smtp, REQUESTER, handle.id, "[hitl] Decided:")
    await _delivered_once(stack, handle.id, "decided")
    assert smtp.to(ASKED, handle.id, "[hitl] Information requested:") == [mail], "the question was not sent again"
