"""Reviewer notifications: reminders, escalations, timeouts and requests for information.

The `notifications` table is the outbox and the default channel: every notification is written
there exactly once, keyed by a `notification_key` the workflow chooses, so activity retries and
duplicate calls never write twice. When HITL_NOTIFY_WEBHOOK_URL is set, the notification is also
posted to that Slack-compatible incoming webhook, and `delivered_at` records the successful post.

Webhook failures, by kind:
- 5xx, 429, timeout, connection error: `ApplicationError(type="WebhookUnavailable")`, retryable;
  Temporal retries the activity, which finds its outbox row and posts again.
- any other non-2xx answer (a revoked or mistyped webhook): stored in `delivery_error` and returned
  as `delivered=False`; retrying would not help.
A webhook post is at least once: if the post succeeds but recording it fails, the retry posts again.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import NoReturn, Protocol

import asyncpg
import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from gates.messages import Notification, NotificationReceipt

log = logging.getLogger("hitl.notify")

WEBHOOK_UNAVAILABLE = "WebhookUnavailable"
# Slack rejects a section whose text exceeds 3000 characters.
_SLACK_SECTION_MAX_CHARS = 3000
# Honour a 429's Retry-After up to this long; beyond it the activity's retry policy decides.
_MAX_RETRY_AFTER = timedelta(minutes=10)

KIND_TITLES: dict[str, str] = {
    "reminder": "Reminder",
    "escalation": "Escalation",
    "timeout": "Timed out",
    "info_requested": "Information requested",
}


class NotifySettings(Protocol):
    """The part of `workers.config.Settings` this module reads (HITL_NOTIFY_*)."""

    notify_webhook_url: str | None
    notify_timeout_seconds: float


class NotifyActivities:
    def __init__(self, pool: asyncpg.Pool, settings: NotifySettings):
        self._pool = pool
        self._settings = settings

    @activity.defn(name="notify_reviewers")
    async def notify_reviewers(self, n: Notification) -> NotificationReceipt:
        """Write the outbox row once, then post the webhook if one is configured and it has not been delivered."""
        row, created = await self._record(n)
        who = ", ".join(n.recipients) or "nobody"
        if created:
            log.info(
                "%s: reminding %s (%s) of case %s at gate %s level %d [notification %d]",
                n.kind, n.reviewer_group, who, n.case_id, n.gate, n.level, row["id"],
            )
        else:
            log.debug("notification %s already recorded as %d", n.notification_key, row["id"])

        webhook_url = self._settings.notify_webhook_url
        if not webhook_url:
            return NotificationReceipt(notification_id=row["id"], channels=["outbox"], delivered=True)
        channels = ["outbox", "webhook"]
        if row["delivered_at"] is not None:
            return NotificationReceipt(notification_id=row["id"], channels=channels, delivered=True)

        error = await self._post(row["id"], webhook_url, slack_message(n))
        if error is None:
            await self._pool.execute(
                "UPDATE notifications SET delivered_at = now(), delivery_error = NULL WHERE id = $1", row["id"]
            )
            return NotificationReceipt(notification_id=row["id"], channels=channels, delivered=True)
        log.warning("notification %d not delivered: %s", row["id"], error)
        return NotificationReceipt(notification_id=row["id"], channels=channels, delivered=False, error=error)

    async def _record(self, n: Notification) -> tuple[asyncpg.Record, bool]:
        payload = {"recipients": n.recipients, "case_url": n.case_url}
        async with self._pool.acquire() as conn:
            # Two statements, not one CTE: the SELECT must see a row a concurrent duplicate just committed.
            inserted = await conn.fetchval(
                """INSERT INTO notifications
                       (notification_key, case_id, kind, gate, level, reviewer_group, message, payload)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
                   ON CONFLICT (notification_key) DO NOTHING
                   RETURNING id""",
                n.notification_key, n.case_id, n.kind, n.gate, n.level, n.reviewer_group, n.message,
                json.dumps(payload),
            )
            row = await conn.fetchrow(
                "SELECT id, delivered_at, delivery_error FROM notifications WHERE notification_key = $1",
                n.notification_key,
            )
        return row, inserted is not None

    async def _post(self, notification_id: int, url: str, body: dict) -> str | None:
        """None when delivered; the error for a permanent failure; raises for one worth retrying."""
        timeout = self._settings.notify_timeout_seconds
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.post(url, json=body)
        except httpx.TimeoutException:
            await self._retry_later(notification_id, f"webhook did not answer within {timeout:g}s")
        except httpx.HTTPError as err:
            await self._retry_later(notification_id, f"cannot reach webhook: {type(err).__name__}: {err}")
        if response.is_success:
            return None
        error = _one_line(f"webhook answered HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 500 or response.status_code == 429:
            await self._retry_later(notification_id, error, retry_after=_retry_after(response))
        await self._pool.execute("UPDATE notifications SET delivery_error = $2 WHERE id = $1", notification_id, error)
        return error

    async def _retry_later(self, notification_id: int, error: str, retry_after: timedelta | None = None) -> NoReturn:
        """Note the error on the outbox row (for operators) and hand the retry to Temporal."""
        await self._pool.execute("UPDATE notifications SET delivery_error = $2 WHERE id = $1", notification_id, error)
        raise ApplicationError(error, type=WEBHOOK_UNAVAILABLE, non_retryable=False, next_retry_delay=retry_after)


def slack_message(n: Notification) -> dict:
    """A Slack incoming-webhook body: a plain `text` fallback and mrkdwn `blocks`."""
    title = KIND_TITLES[n.kind]
    who = ", ".join(n.recipients) or "nobody"
    header = f"*{title}*: case `{_escape(n.case_id)}`"
    where = f"Gate *{_escape(n.gate)}*, level {n.level}, reviewers *{_escape(n.reviewer_group)}*: {_escape(who)}"
    sections = [f"{header}\n{where}", _escape(n.message)]
    if n.case_url:
        sections.append(f"<{n.case_url}|Open the case>")
    fallback = f"{title}: case {n.case_id} at gate {n.gate} (level {n.level}) for {who}. {n.message}"
    if n.case_url:
        fallback += f" {n.case_url}"
    return {
        "text": fallback,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(text)}}
            for text in sections
            if text.strip()
        ],
    }


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str) -> str:
    return text if len(text) <= _SLACK_SECTION_MAX_CHARS else text[: _SLACK_SECTION_MAX_CHARS - 1] + "…"


def _retry_after(response: httpx.Response) -> timedelta | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return min(timedelta(seconds=seconds), _MAX_RETRY_AFTER)


def _one_line(text: str) -> str:
    return " ".join(text.split())
