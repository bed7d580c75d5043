"""The reviewer notifier against a real PostgreSQL (the outbox) and a real local webhook server."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from werkzeug import Request, Response

from activities.notify import NotifyActivities
from gates.messages import Notification, NotificationReceipt
from tests.helpers import local_http_server
from workers.config import Settings
from workers.devstack import free_port

HOOK_PATH = "/services/T000/B000/hook"


@pytest.fixture(scope="module")
def webhook_server():
    with local_http_server() as server:
        yield server


@pytest.fixture
def webhook(webhook_server: HTTPServer):
    webhook_server.clear()
    yield webhook_server
    webhook_server.clear()


def notification(**overrides: Any) -> Notification:
    case_id = "renewal_discount_exception:acme_enterprise/fy26"
    values: dict[str, Any] = {
        "notification_key": f"{case_id}/{uuid.uuid4()}/reminder/level-0/1",
        "case_id": case_id,
        "kind": "reminder",
        "gate": "finance",
        "level": 0,
        "reviewer_group": "finance-approvers",
        "recipients": ["alice", "bob"],
        "message": "Acme asks 18% off its fy26 renewal; the limit is 15%.",
        "case_url": "http://localhost:8233/namespaces/default/workflows/renewal",
    }
    return Notification(**{**values, **overrides})


def notifier(pool: asyncpg.Pool, webhook_url: str | None, timeout: float = 5.0) -> NotifyActivities:
    # state_dir: nowhere a running `hitl dev` could lend its UI address
    settings = Settings(notify_webhook_url=webhook_url, notify_timeout_seconds=timeout, state_dir=Path("/nonexistent/hitl"))
    return NotifyActivities(pool, settings)


async def notify(activities: NotifyActivities, n: Notification) -> NotificationReceipt:
    return await ActivityEnvironment().run(activities.notify_reviewers, n)


async def outbox_rows(pool: asyncpg.Pool, key: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM notifications WHERE notification_key = $1", key)


async def test_same_key_twice_writes_one_outbox_row(db_pool: asyncpg.Pool):
    activities = notifier(db_pool, webhook_url=None)
    n = notification()

    first = await notify(activities, n)
    second = await notify(activities, n)

    assert first == second == NotificationReceipt(
        notification_id=first.notification_id, channels=["outbox"], delivered=True, error=None
    )
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["id"] == first.notification_id
    assert (row["case_id"], row["kind"], row["gate"], row["level"], row["reviewer_group"]) == (
        n.case_id, "reminder", "finance", 0, "finance-approvers"
    )
    assert row["message"] == n.message
    assert json.loads(row["payload"])["recipients"] == ["alice", "bob"]


async def test_logs_who_is_reminded_of_which_case(db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture):
    n = notification()

    with caplog.at_level(logging.INFO, logger="hitl.notify"):
        await notify(notifier(db_pool, webhook_url=None), n)

    [line] = [r.getMessage() for r in caplog.records if r.name == "hitl.notify"]
    assert "alice, bob" in line and "finance-approvers" in line and n.case_id in line


async def test_webhook_receives_slack_blocks_naming_recipients_and_delivery_is_recorded(
    db_pool: asyncpg.Pool, webhook: HTTPServer
):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    n = notification()

    receipt = await notify(notifier(db_pool, webhook.url_for(HOOK_PATH)), n)

    assert receipt.channels == ["outbox", "slack"] and receipt.delivered and receipt.error is None
    [(request, _)] = webhook.log
    body = request.get_json()
    assert n.case_id in body["text"] and "alice, bob" in body["text"]
    assert body["blocks"][0]["text"]["text"] == f"Reminder: {n.case_id}"
    shown = [o["text"] for b in body["blocks"] for o in ([b["text"]] if "text" in b else []) + b.get("fields", [])]
    assert "alice, bob" in shown and n.message in shown
    [actions] = [b for b in body["blocks"] if b["type"] == "actions"]
    assert actions["elements"][0]["url"] == n.case_url
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["delivered_at"] is not None and row["delivery_error"] is None


async def test_slack_shows_the_message_as_written_and_omits_missing_case_link(
    db_pool: asyncpg.Pool, webhook: HTTPServer
):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")

    n = notification(message="limit <15%> & rising", case_url=None)
    await notify(notifier(db_pool, webhook.url_for(HOOK_PATH)), n)

    blocks = webhook.log[0][0].get_json()["blocks"]
    assert {"type": "section", "text": {"type": "plain_text", "text": "limit <15%> & rising", "emoji": False}} in blocks
    assert not [b for b in blocks if b["type"] == "actions"], "no UI address known: no button"


async def test_second_call_with_same_key_does_not_post_again(db_pool: asyncpg.Pool, webhook: HTTPServer):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")
    activities = notifier(db_pool, webhook.url_for(HOOK_PATH))
    n = notification()

    first = await notify(activities, n)
    second = await notify(activities, n)

    assert first == second and second.delivered
    assert len(webhook.log) == 1
    assert len(await outbox_rows(db_pool, n.notification_key)) == 1


async def test_webhook_500_raises_retryable_error_and_keeps_undelivered_row(db_pool: asyncpg.Pool, webhook: HTTPServer):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("slack is down", status=500)
    n = notification()

    with pytest.raises(ApplicationError) as raised:
        await notify(notifier(db_pool, webhook.url_for(HOOK_PATH)), n)

    assert raised.value.type == "WebhookUnavailable" and not raised.value.non_retryable
    assert "HTTP 500" in str(raised.value)
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["delivered_at"] is None


async def test_retry_after_webhook_500_delivers_the_same_outbox_row(db_pool: asyncpg.Pool, webhook: HTTPServer):
    activities = notifier(db_pool, webhook.url_for(HOOK_PATH))
    n = notification()
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("slack is down", status=500)
    with pytest.raises(ApplicationError):
        await notify(activities, n)
    webhook.clear_all_handlers()
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("ok")

    receipt = await notify(activities, n)

    assert receipt.delivered and receipt.error is None
    assert len(webhook.log) == 2
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["id"] == receipt.notification_id
    assert row["delivered_at"] is not None and row["delivery_error"] is None


async def test_webhook_429_is_retried_after_its_retry_after(db_pool: asyncpg.Pool, webhook: HTTPServer):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data(
        "rate limited", status=429, headers={"Retry-After": "30"}
    )

    with pytest.raises(ApplicationError) as raised:
        await notify(notifier(db_pool, webhook.url_for(HOOK_PATH)), notification())

    assert raised.value.type == "WebhookUnavailable" and not raised.value.non_retryable
    assert raised.value.next_retry_delay == timedelta(seconds=30)


async def test_webhook_400_stores_delivery_error_without_raising(db_pool: asyncpg.Pool, webhook: HTTPServer):
    webhook.expect_request(HOOK_PATH, method="POST").respond_with_data("invalid_blocks", status=400)
    n = notification()

    receipt = await notify(notifier(db_pool, webhook.url_for(HOOK_PATH)), n)

    assert receipt.channels == ["outbox", "slack"] and not receipt.delivered
    assert receipt.error == "webhook answered HTTP 400: invalid_blocks"
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["delivered_at"] is None and row["delivery_error"] == receipt.error


async def test_webhook_timeout_raises_retryable_error(db_pool: asyncpg.Pool, webhook: HTTPServer):
    def slow(_: Request) -> Response:
        time.sleep(2)
        return Response("ok")

    webhook.expect_request(HOOK_PATH, method="POST").respond_with_handler(slow)
    n = notification()

    started = time.monotonic()
    with pytest.raises(ApplicationError, match=r"did not answer within 0\.3s") as raised:
        await notify(notifier(db_pool, webhook.url_for(HOOK_PATH), timeout=0.3), n)

    assert time.monotonic() - started < 1.5
    assert raised.value.type == "WebhookUnavailable" and not raised.value.non_retryable
    [row] = await outbox_rows(db_pool, n.notification_key)
    assert row["delivered_at"] is None


async def test_unreachable_webhook_raises_retryable_error(db_pool: asyncpg.Pool):
    nobody = f"http://127.0.0.1:{free_port()}{HOOK_PATH}"

    with pytest.raises(ApplicationError, match="cannot reach webhook: ConnectError") as raised:
        await notify(notifier(db_pool, nobody), notification())

    assert raised.value.type == "WebhookUnavailable" and not raised.value.non_retryable
