"""Notifications reach people: email to a real local SMTP server (aiosmtpd), Slack to a real local HTTP
server, each once per notification however often the activity runs, with the case's links, and a
channel that keeps failing where `hitl ops stuck` shows it. PostgreSQL is real (the outbox, the
per-channel deliveries, the directory's people)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import shlex
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.channels import show_command, ui_workflow_url
from activities.channels.deliveries import failing_channels
from activities.notify import NotifyActivities
from demo.examples import example
from gates.cases import CaseKind
from gates.messages import Notification, NotificationReceipt, Quote
from hitl_temporal.cli.ops.stuck import render_failing_channels
from hitl_temporal.ops import FailingChannel, FailingChannelsReport
from tests.case_helpers import start_case, wait_until_waiting
from tests.helpers import assert_eventually, local_http_server, new_worker
from workers.config import Settings
from workers.devstack import free_port

UI = "http://temporal-ui.example:8233"
HOOK_PATH = "/services/T000/B000/hook"
DEADLINE = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
HOSTILE = "<!channel> *approve now* <https://evil.example|click here> &amp; \u202eevorppa"
PEOPLE = [  # (person, name, email, active)
    ("ntf_alice", "Alice Approver", "alice@example.com", True),
    ("ntf_bob", "Bob Builder", "bob@example.com", True),
    ("ntf_carol", "Carol Gone", "carol@example.com", False),
]


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts; RCPT refused for `refuse` (address -> reply)."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, N802 -- aiosmtpd's hook
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, N802 -- aiosmtpd's hook
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted"


class SmtpServer:
    """A real SMTP server on 127.0.0.1 that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook() -> Iterator[HTTPServer]:
    with local_http_server() as server:
        yield server


@pytest.fixture
async def people(world_pool: asyncpg.Pool) -> asyncpg.Pool:
    """The directory's people this file notifies, on a fresh seeded database."""
    await world_pool.executemany(
        "INSERT INTO world_people (person_id, name, email, title, active) VALUES ($1, $2, $3, 'Reviewer', $4)", PEOPLE
    )
    return world_pool


def notification(**overrides: Any) -> Notification:
    case_id = f"renewal_discount_exception:acme_enterprise/fy26-{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "notification_key": f"{case_id}/{uuid.uuid4()}/r1/reminder/level-0",
        "case_id": case_id,
        "kind": "reminder",
        "gate": "finance",
        "level": 0,
        "reviewer_group": "finance_approvers",
        "recipients": ["ntf_alice", "ntf_bob", "ntf_carol", "ntf_ghost"],
        "message": "Reminder: 18% renewal discount for acme_enterprise (fy26) is waiting for Finance reviewers.",
        "ask": "18% renewal discount for acme_enterprise (fy26)",
        "deadline": DEADLINE,
    }
    return Notification(**{**values, **overrides})


def notifier(pool: asyncpg.Pool, *, smtp_port: int | None = None, webhook_url: str | None = None) -> NotifyActivities:
    settings = Settings(
        ui_base_url=UI,
        notify_webhook_url=webhook_url,
        notify_timeout_seconds=2,
        smtp_host="127.0.0.1" if smtp_port else None,
        smtp_port=smtp_port,
        smtp_from="HITL <hitl@example.com>" if smtp_port else None,
        smtp_starttls=False,
    )
    return NotifyActivities(pool, settings)


async def notify(activities: NotifyActivities, n: Notification, *, attempt: int = 1) -> NotificationReceipt:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt, retry_policy=RetryPolicy(maximum_attempts=5))
    return await env.run(activities.notify_reviewers, n)


async def outbox_row(pool: asyncpg.Pool, n: Notification) -> asyncpg.Record:
    [row] = await pool.fetch("SELECT * FROM notifications WHERE notification_key = $1", n.notification_key)
    return row


async def deliveries(pool: asyncpg.Pool, n: Notification) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        """SELECT d.* FROM notification_deliveries d JOIN notifications o ON o.id = d.notification_id
            WHERE o.notification_key = $1""",
        n.notification_key,
    )
    return {row["channel"]: row for row in rows}


def workflow_id_of(ui_url: str) -> str:
    """The workflow ID a UI link opens: its one path segment after /workflows/, decoded."""
    parts = urlsplit(ui_url)
    assert f"{parts.scheme}://{parts.netloc}" == UI
    segments = parts.path.split("/")
    assert segments[:4] == ["", "namespaces", "default", "workflows"] and len(segments) == 5, "one segment: the ID"
    return unquote(segments[4])


def links_in(text: str) -> list[str]:
    return [word for word in text.split() if word.startswith(UI)]


# -- email ------------------------------------------------------------------------------------------


async def test_email_reaches_the_directory_addresses_with_case_ask_deadline_and_both_links(
    people: asyncpg.Pool, smtp: SmtpServer
):
    n = notification()

    receipt = await notify(notifier(people, smtp_port=smtp.port), n)

    assert receipt.delivered and receipt.channels == ["outbox", "email"]
    [(envelope_to, message)] = smtp.inbox.received
    assert sorted(envelope_to) == ["alice@example.com", "bob@example.com"], "active people with an address only"
    assert message["To"] == "Alice Approver <alice@example.com>, Bob Builder <bob@example.com>"
    assert message["From"] == "HITL <hitl@example.com>"
    assert message["Subject"] == f"[hitl] Reminder: 18% renewal discount for acme_enterprise (fy26) (case {n.case_id})"
    body = message.get_content()
    assert f"Case:      {n.case_id}" in body
    assert "Ask:       18% renewal discount for acme_enterprise (fy26)" in body
    assert "Level:     finance gate, level 1, group finance_approvers" in body
    assert "Deadline:  2026-12-03 14:30 UTC" in body
    [ui_link] = links_in(body)
    assert workflow_id_of(ui_link) == n.case_id, "the link opens exactly this case"
    assert "%3A" in ui_link and "%2F" in ui_link, "':' and '/' percent-encoded once"
    [command] = [line.strip() for line in body.splitlines() if line.strip().startswith("hitl show")]
    assert shlex.split(command) == ["hitl", "show", n.case_id]

    row = await outbox_row(people, n)
    payload = json.loads(row["payload"])
    assert payload["links"] == {"ui": ui_link, "show": command}
    assert payload["email"]["skipped"] == [
        {"person": "ntf_carol", "role": "reviewer", "why": "inactive"},
        {"person": "ntf_ghost", "role": "reviewer", "why": "not in the directory"},
    ]
    assert row["delivered_at"] is not None and row["delivery_error"] is None
    email_delivery = (await deliveries(people, n))["email"]
    assert email_delivery["status"] == "delivered" and email_delivery["attempts"] == 1
    assert sorted(json.loads(email_delivery["sent_to"])) == ["alice@example.com", "bob@example.com"]


async def test_retry_after_the_smtp_server_was_down_sends_once_and_slack_is_not_posted_again(
    people: asyncpg.Pool, webhook: HTTPServer
):
    smtp = SmtpServer()  # not started: down
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    activities = notifier(people, smtp_port=smtp.port, webhook_url=webhook.url_for(HOOK_PATH))
    n = notification()

    with pytest.raises(ApplicationError) as raised:
        await notify(activities, n, attempt=1)
    assert raised.value.type == "SmtpUnavailable" and not raised.value.non_retryable
    assert f"cannot reach SMTP server 127.0.0.1:{smtp.port}" in str(raised.value)
    down = await deliveries(people, n)
    assert (down["email"]["status"], down["slack"]["status"]) == ("pending", "delivered")
    assert down["email"]["last_error"] == raised.value.message

    smtp.start()
    try:
        retried = await notify(activities, n, attempt=2)
        again = await notify(activities, n, attempt=3)  # a duplicate run (a replay, a worker restart)
    finally:
        smtp.stop()

    assert retried == again and retried.delivered and retried.channels == ["outbox", "email", "slack"]
    assert len(smtp.inbox.received) == 1, "one email however often the activity ran"
    assert len(webhook.log) == 1, "Slack got it on the first attempt and never again"
    up = await deliveries(people, n)
    assert up["email"]["status"] == "delivered" and up["email"]["attempts"] == 2
    assert (await outbox_row(people, n))["delivered_at"] is not None


async def test_a_channel_still_down_at_the_last_attempt_is_recorded_failed_and_the_case_goes_on(people: asyncpg.Pool):
    activities = notifier(people, smtp_port=free_port())  # nobody listens
    n = notification()

    receipt = await notify(activities, n, attempt=5)  # NOTIFY_RETRY's last

    assert not receipt.delivered and receipt.error is not None
    assert receipt.error.startswith("gave up after 5 attempts: cannot reach SMTP server")
    email_delivery = (await deliveries(people, n))["email"]
    assert email_delivery["status"] == "failed" and email_delivery["last_error"] == receipt.error


async def test_refused_recipients_are_recorded_and_the_others_get_the_email(people: asyncpg.Pool, smtp: SmtpServer):
    smtp.inbox.refuse["bob@example.com"] = "550 5.1.1 no such mailbox"
    n = notification()

    receipt = await notify(notifier(people, smtp_port=smtp.port), n)

    assert receipt.delivered
    [(envelope_to, _)] = smtp.inbox.received
    assert envelope_to == ["alice@example.com"]
    email_delivery = (await deliveries(people, n))["email"]
    assert json.loads(email_delivery["refused"]) == {"bob@example.com": "550 5.1.1 no such mailbox"}


async def test_every_recipient_refused_is_a_permanent_failure_not_retried(people: asyncpg.Pool, smtp: SmtpServer):
    smtp.inbox.refuse = {"alice@example.com": "550 5.1.1 no such mailbox", "bob@example.com": "550 5.1.1 no such mailbox"}
    activities = notifier(people, smtp_port=smtp.port)
    n = notification()

    first = await notify(activities, n)
    second = await notify(activities, n)

    assert not first.delivered and first.error is not None and "refused every recipient" in first.error
    assert second == first
    assert smtp.inbox.received == []
    assert (await deliveries(people, n))["email"]["attempts"] == 1, "not tried again"


async def test_nobody_with_an_address_sends_no_email_and_the_outbox_says_who_was_skipped(
    people: asyncpg.Pool, smtp: SmtpServer
):
    n = notification(recipients=["ntf_carol", "ntf_ghost"])

    receipt = await notify(notifier(people, smtp_port=smtp.port), n)

    assert receipt.delivered and smtp.inbox.received == []
    assert (await deliveries(people, n))["email"]["status"] == "skipped"
    assert json.loads((await outbox_row(people, n))["payload"])["skipped"] == ["ntf_carol", "ntf_ghost"]


async def test_people_words_in_an_email_are_quoted_as_theirs_and_headers_cannot_be_injected(
    people: asyncpg.Pool, smtp: SmtpServer
):
    n = notification(
        kind="info_requested",
        ask="18% renewal discount\r\nBcc: mallory@evil.example",
        quotes=[Quote(person="ntf_alice", label="question", text=f"{HOSTILE}\nsecond line")],
    )

    await notify(notifier(people, smtp_port=smtp.port), n)

    [(envelope_to, message)] = smtp.inbox.received
    assert sorted(envelope_to) == ["alice@example.com", "bob@example.com"] and message["Bcc"] is None
    assert "\n" not in message["Subject"] and "⟨U+000D⟩⟨U+000A⟩Bcc" in message["Subject"]
    lines = message.get_content().splitlines()
    at = lines.index("ntf_alice wrote (question):")
    assert lines[at + 1] == "> <!channel> *approve now* <https://evil.example|click here> &amp; ⟨U+202E⟩evorppa"
    assert lines[at + 2] == "> second line"


# -- Slack ------------------------------------------------------------------------------------------


def _texts(body: dict, kind: str) -> list[str]:
    """Every text object of that type (mrkdwn, plain_text) in the blocks, and for mrkdwn the fallback."""
    found = [body["text"]] if kind == "mrkdwn" else []
    for block in body["blocks"]:
        objects = [block["text"]] if "text" in block else []
        objects += block.get("fields", [])
        found += [o["text"] for o in objects if o["type"] == kind]
    return found


def _rich_texts(block: dict) -> list[str]:
    return [e["text"] for element in block["elements"] for e in element["elements"] if e["type"] == "text"]


async def test_slack_gets_blocks_with_case_ask_deadline_and_links_and_hostile_words_stay_quoted(
    people: asyncpg.Pool, webhook: HTTPServer
):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    n = notification(
        kind="escalation",
        message=f"Escalated to Finance directors: {HOSTILE}",  # even the system's text cannot format or ping
        quotes=[Quote(person="ntf_alice", label="reason", text=HOSTILE)],
    )

    receipt = await notify(notifier(people, webhook_url=webhook.url_for(HOOK_PATH)), n)

    assert receipt.delivered and receipt.channels == ["outbox", "slack"]
    [(request, _)] = webhook.log
    body = request.get_json()
    header, facts = body["blocks"][0], body["blocks"][1]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": f"Escalation: {n.case_id}", "emoji": False}}
    rows = dict(zip([f["text"] for f in facts["fields"][::2]], facts["fields"][1::2], strict=True))
    assert list(rows) == ["*Case*", "*Ask*", "*Level*", "*Deadline*", "*Reviewers*"]
    assert rows["*Case*"] == {"type": "plain_text", "text": n.case_id, "emoji": False}
    assert rows["*Ask*"]["text"] == "18% renewal discount for acme_enterprise (fy26)"
    assert rows["*Level*"]["text"] == "finance gate, level 1, group finance_approvers"
    assert rows["*Deadline*"] == {
        "type": "mrkdwn",
        "text": f"<!date^{int(DEADLINE.timestamp())}^{{date_short_pretty}} {{time}}|2026-12-03 14:30 UTC>",
    }
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    [button] = actions["elements"]
    assert button["type"] == "button" and workflow_id_of(button["url"]) == n.case_id
    quote, command = [b for b in body["blocks"] if b["type"] == "rich_text"]
    marked = HOSTILE.replace("\u202e", "⟨U+202E⟩")
    assert _rich_texts(quote) == ["ntf_alice", " wrote (reason):", marked]
    assert quote["elements"][1]["type"] == "rich_text_quote", "their words in a quote, as literal text elements"
    assert command["elements"][1]["type"] == "rich_text_preformatted"
    assert shlex.split(_rich_texts(command)[-1]) == ["hitl", "show", n.case_id]
    assert f"Escalated to Finance directors: {marked}" in _texts(body, "plain_text"), "shown as written"
    for text in _texts(body, "mrkdwn"):  # what Slack would parse: our labels, the date token, the fallback
        assert "<!channel>" not in text and "<https://evil.example" not in text and "*approve now*" not in text
        assert "\u202e" not in text
    assert "ntf_alice wrote" not in body["text"], "the fallback carries the system's words only"


# -- hitl ops stuck ---------------------------------------------------------------------------------


async def test_a_channel_failing_since_its_last_delivery_is_listed_until_it_delivers_again(people: asyncpg.Pool):
    since = datetime.now(UTC) - timedelta(hours=1)
    down_port = free_port()
    for _ in range(2):
        with pytest.raises(ApplicationError):
            await notify(notifier(people, smtp_port=down_port), notification())

    [failing] = [FailingChannel(**dict(row)) for row in await failing_channels(people, since=since)]
    assert (failing.channel, failing.notifications) == ("email", 2)
    assert failing.last_error.startswith(f"cannot reach SMTP server 127.0.0.1:{down_port}")
    shown = render_failing_channels(FailingChannelsReport(since=since, failing=[failing]), datetime.now(UTC))
    assert shown.splitlines()[0] == "notification channels failing (1) in the last 1h"
    assert "email" in shown and "cannot reach SMTP server" in shown

    smtp = SmtpServer()
    smtp.start()
    try:
        await notify(notifier(people, smtp_port=smtp.port), notification())
    finally:
        smtp.stop()
    assert await failing_channels(people, since=since) == [], "delivering again ends the failing streak"


def test_show_command_is_shell_quoted_and_the_ui_link_encodes_the_id_once():
    odd = "renewal_discount_exception:acme's deal/fy 26"
    assert shlex.split(show_command(odd)) == ["hitl", "show", odd]
    url = ui_workflow_url(UI + "/", "default", odd)
    assert url == f"{UI}/namespaces/default/workflows/renewal_discount_exception%3Aacme%27s%20deal%2Ffy%2026"
    assert workflow_id_of(url) == odd


# -- a real case ------------------------------------------------------------------------------------


async def test_a_silent_case_emails_each_reminder_escalation_and_timeout_once_with_its_link(
    time_skipping_env, world_pool: asyncpg.Pool, smtp: SmtpServer
):
    settings = Settings(
        database_url=None,
        identity="asserted",
        ui_base_url=UI,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_from="hitl@example.com",
        smtp_starttls=False,
    )
    async with new_worker(time_skipping_env.client, world_pool, settings=settings) as worker:
        handle = await start_case(time_skipping_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        await handle.result()  # the time-skipping server fast-forwards through every timer to the timeout

        # then the requester's `decided` notification, written with the trace, delivered after it
        await assert_eventually(lambda: any("[hitl] Decided:" in m["Subject"] for _, m in smtp.inbox.received), timeout=20)

    sent = await world_pool.fetch(
        "SELECT kind, payload FROM notifications WHERE case_id = $1 ORDER BY id", handle.id
    )
    assert [row["kind"] for row in sent][-2:] == ["timeout", "decided"] and len(sent) >= 4
    assert len(smtp.inbox.received) == len(sent), "one email per notification"
    received = sorted(smtp.inbox.received, key=lambda sent_mail: "[hitl] Decided:" in sent_mail[1]["Subject"])
    for row, (envelope_to, message) in zip(sent, received, strict=True):
        reached = json.loads(row["payload"])["email"]["reached"]
        assert sorted(envelope_to) == sorted(r["email"] for r in reached) and envelope_to, "the directory's addresses"
        assert handle.id in message["Subject"]
        [ui_link] = links_in(message.get_content())
        assert workflow_id_of(ui_link) == handle.id
