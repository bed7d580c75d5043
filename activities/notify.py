"""Notifications: reminders, escalations, timeouts and requests for information, to the people concerned.

The `notifications` table is the outbox and the first channel: every notification is written there
exactly once, keyed by a `notification_key` the workflow chooses, so activity retries, worker
restarts and replays never write twice. The row holds the links (the case in the Temporal Web UI,
the `hitl show` command) and who was reached or skipped (inactive, unknown, no address), as first
resolved from the directory; every later attempt sends that same message.

Then each configured channel (activities/channels/: email over SMTP, a Slack incoming webhook) is
delivered once, recorded per channel in `notification_deliveries`, so a retry sends only on the
channels not delivered yet. Failures, by kind:
- a channel that is down (a 5xx, a 429, a timeout, a refused connection, a 4xx SMTP reply): noted on
  its delivery row, then `ApplicationError(type=<the channel's>)`, retryable, once every channel was
  tried; Temporal retries the activity with backoff (NOTIFY_RETRY). On the retry policy's last
  attempt the channel is recorded as failed instead and the activity returns: the case never waits
  on a channel, and `hitl ops stuck` lists the channel;
- a permanent failure (a revoked webhook, a refused login, every recipient refused): recorded as
  failed and returned as `delivered=False`; retrying would not help.
A delivery is at least once: if a send succeeds but recording it fails, the retry sends again.
"""

from __future__ import annotations

import json
import logging

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channels import (
    Channel,
    ChannelSettings,
    OutgoingMessage,
    Recipients,
    RetryLater,
    Undeliverable,
    configured_channels,
    resolve_recipients,
    show_command,
    ui_base_url,
    ui_workflow_url,
)
from activities.channels import deliveries as delivery_log
from activities.store import audit as audit_log
from gates.messages import Notification, NotificationReceipt

log = logging.getLogger("hitl.notify")

# A retryable failure on several channels at once.
CHANNELS_UNAVAILABLE = "NotificationChannelsUnavailable"


# The part of `workers.config.Settings` this module reads (HITL_NOTIFY_*, HITL_SMTP_*, HITL_UI_BASE_URL).
NotifySettings = ChannelSettings


class NotifyActivities:
    def __init__(self, pool: asyncpg.Pool, settings: NotifySettings):
        self._pool = pool
        self._settings = settings
        self._channels: list[Channel] = configured_channels(settings)

    @activity.defn(name="notify_reviewers")
    async def notify_reviewers(self, n: Notification) -> NotificationReceipt:
        """Write the case's gate events the audit log does not hold yet and the outbox row, each once,
        then deliver on every configured channel not delivered yet."""
        if n.audit:
            async with self._pool.acquire() as conn:
                await audit_log.append_events(conn, n.audit)
        message, row_id, created = await self._record(n)
        if created:
            emailing = any(channel.name == "email" for channel in self._channels)
            skipped = "; not emailed: " + ", ".join(f"{s.person} ({s.why})" for s in message.recipients.skipped)
            log.info(
                "%s: telling %s (%s) of case %s at gate %s level %d [notification %d]%s",
                n.kind, n.reviewer_group, ", ".join(n.recipients) or "nobody", n.case_id, n.gate, n.level, row_id,
                skipped if emailing and message.recipients.skipped else "",
            )
        else:
            log.debug("notification %s already recorded as %d", n.notification_key, row_id)
        if not self._channels:
            return NotificationReceipt(notification_id=row_id, channels=["outbox"], delivered=True)

        outcomes = [await self._deliver(row_id, channel, message, n.notification_key) for channel in self._channels]
        tried = zip(self._channels, outcomes, strict=True)
        retry = [(channel, failure) for channel, failure in tried if isinstance(failure, RetryLater)]
        errors = [str(o) for o in outcomes if isinstance(o, (Undeliverable, RetryLater))]
        await self._pool.execute(
            """UPDATE notifications
                  SET delivery_error = $2,
                      delivered_at = CASE WHEN $3 THEN coalesce(delivered_at, now()) END
                WHERE id = $1""",
            row_id,
            "; ".join(errors) or None,
            not errors,
        )
        if retry:
            raise ApplicationError(
                "; ".join(str(failure) for _, failure in retry),
                type=retry[0][0].error_type if len(retry) == 1 else CHANNELS_UNAVAILABLE,
                non_retryable=False,
                next_retry_delay=max((f.retry_after for _, f in retry if f.retry_after), default=None),
            )
        channels = ["outbox", *(c.name for c in self._channels)]
        if errors:
            log.warning("notification %d not delivered: %s", row_id, "; ".join(errors))
            return NotificationReceipt(notification_id=row_id, channels=channels, delivered=False, error="; ".join(errors))
        return NotificationReceipt(notification_id=row_id, channels=channels, delivered=True)

    async def _record(self, n: Notification) -> tuple[OutgoingMessage, int, bool]:
        """The outbox row (written once) and the message every channel sends, as the row first recorded it."""
        base = ui_base_url(self._settings.ui_base_url, self._settings.state_dir)
        namespace = activity.info().workflow_namespace or "default"
        ui_url = n.case_url or (ui_workflow_url(base, namespace, n.case_id) if base else None)
        async with self._pool.acquire() as conn:
            recipients = await resolve_recipients(conn, n)
            payload = {
                "recipients": n.recipients,
                "case_url": ui_url,
                "links": {"ui": ui_url, "show": show_command(n.case_id)},
                "email": recipients.document(),
                "skipped": [s.person for s in recipients.skipped],
            }
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
                "SELECT id, payload FROM notifications WHERE notification_key = $1", n.notification_key
            )
        stored = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        if "email" in stored:  # rows written before the channels hold neither: use what was just resolved
            recipients = Recipients.from_document(stored["email"])
            ui_url = stored["links"]["ui"]
        message = OutgoingMessage(notification=n, recipients=recipients, ui_url=ui_url, show_command=show_command(n.case_id))
        return message, row["id"], inserted is not None

    async def _deliver(
        self, notification_id: int, channel: Channel, message: OutgoingMessage, key: str
    ) -> Undeliverable | RetryLater | None:
        """Send on one channel unless it is done for this notification; None when delivered (or nobody to reach)."""
        async with delivery_log.claimed(self._pool, notification_id, channel.name) as (conn, row):
            if row["status"] in delivery_log.DONE:
                return Undeliverable(row["last_error"]) if row["status"] == "failed" else None
            try:
                sent = await channel.send(message, message_key=f"{key}#{channel.name}")
            except RetryLater as failure:
                if not _last_attempt():
                    await delivery_log.record_failure(conn, notification_id, channel.name, str(failure), final=False)
                    log.warning("notification %d: %s will be retried: %s", notification_id, channel.name, failure)
                    return failure
                error = f"gave up after {activity.info().attempt} attempts: {failure}"
                await delivery_log.record_failure(conn, notification_id, channel.name, error, final=True)
                return Undeliverable(error)
            except Undeliverable as failure:
                await delivery_log.record_failure(conn, notification_id, channel.name, str(failure), final=True)
                return failure
            await delivery_log.record_sent(conn, notification_id, channel.name, sent)
            for address, reply in sent.refused.items():
                log.warning("notification %d: %s refused %s: %s", notification_id, channel.name, address, reply)
            return None


def _last_attempt() -> bool:
    """Is this the retry policy's last attempt (after which Temporal gives up on the activity)?"""
    info = activity.info()
    policy = info.retry_policy
    return policy is not None and policy.maximum_attempts > 0 and info.attempt >= policy.maximum_attempts

