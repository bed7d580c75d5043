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

The `decided` notification (to the requester, once the case is decided) costs the case no workflow
command: `record_decision` writes its outbox row in the trace's transaction (`record_decided`), so
it exists exactly when the trace does, once per decision key; it is delivered after the commit, in
the worker's background (`deliver_soon`), with the same per-channel rows and retries (DECIDED_RETRY
attempts, then `failed`, which `hitl ops stuck` shows). A worker that stopped before delivering it
delivers it on its next start (`redeliver_pending`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import timedelta

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
from gates.cases import REQUEST_MODELS, CaseKind
from gates.kinds import SPECS
from gates.messages import Notification, NotificationReceipt, Quote
from gates.trace import DecisionTrace

log = logging.getLogger("hitl.notify")

# A retryable failure on several channels at once.
CHANNELS_UNAVAILABLE = "NotificationChannelsUnavailable"

# Background delivery of `decided` notifications: as many attempts as NOTIFY_RETRY gives the others
# (workflows/activity_calls.py), the waits between them doubling from 1 s up to 30 s.
DECIDED_ATTEMPTS = 5
DECIDED_FIRST_WAIT = timedelta(seconds=1)
DECIDED_MAX_WAIT = timedelta(seconds=30)
# How far back a worker's start looks for `decided` notifications a stopped worker left undelivered.
REDELIVER_WITHIN = timedelta(days=1)
# Decided how, when the trace's reason is a person's words (else it is the system's: a policy, a timeout).
_PERSON_CHANNELS = frozenset({"update", "signal", "operator"})


# The part of `workers.config.Settings` this module reads (HITL_NOTIFY_*, HITL_SMTP_*, HITL_UI_BASE_URL).
NotifySettings = ChannelSettings


class NotifyActivities:
    def __init__(self, pool: asyncpg.Pool, settings: NotifySettings):
        self._pool = pool
        self._settings = settings
        self._channels: list[Channel] = configured_channels(settings)
        self._background: set[asyncio.Task[bool]] = set()  # deliveries under way (kept from the garbage collector)

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
        outcomes = await self._deliver_all(row_id, message, n.notification_key, final=_last_attempt())
        retry = [(channel, failure) for channel, failure in outcomes if isinstance(failure, RetryLater)]
        errors = [str(failure) for _, failure in outcomes if failure is not None]
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

    async def _deliver_all(
        self, row_id: int, message: OutgoingMessage, key: str, *, final: bool
    ) -> list[tuple[Channel, Undeliverable | RetryLater | None]]:
        """Every configured channel not done yet, once; the outbox row notes the errors (none: delivered)."""
        outcomes = [
            (channel, await self._deliver(row_id, channel, message, key, final=final)) for channel in self._channels
        ]
        errors = [str(failure) for _, failure in outcomes if failure is not None]
        await self._pool.execute(
            """UPDATE notifications
                  SET delivery_error = $2,
                      delivered_at = CASE WHEN $3 THEN coalesce(delivered_at, now()) END
                WHERE id = $1""",
            row_id,
            "; ".join(errors) or None,
            not errors,
        )
        return outcomes

    async def _record(self, n: Notification) -> tuple[OutgoingMessage, int, bool]:
        """The outbox row (written once) and the message every channel sends, as the row first recorded it."""
        async with self._pool.acquire() as conn:
            return await self._record_on(conn, n)

    def _ui_url(self, n: Notification) -> str | None:
        base = ui_base_url(self._settings.ui_base_url, self._settings.state_dir)
        namespace = (activity.info().workflow_namespace if activity.in_activity() else None) or "default"
        return n.case_url or (ui_workflow_url(base, namespace, n.case_id) if base else None)

    async def _record_on(self, conn: asyncpg.Connection, n: Notification) -> tuple[OutgoingMessage, int, bool]:
        """`_record` on the caller's connection (inside its transaction, for `record_decided`)."""
        ui_url = self._ui_url(n)
        recipients = await resolve_recipients(conn, n)
        payload = {
            "recipients": n.recipients,
            "case_url": ui_url,
            "links": {"ui": ui_url, "show": show_command(n.case_id)},
            "email": recipients.document(),
            "skipped": [s.person for s in recipients.skipped],
            # what a later delivery (`deliver_soon`, `redeliver_pending`) rebuilds the message from
            "notification": n.model_dump(mode="json", exclude={"audit"}),
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
        row = await conn.fetchrow("SELECT id, payload FROM notifications WHERE notification_key = $1", n.notification_key)
        stored = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        if "email" in stored:  # rows written before the channels hold neither: use what was just resolved
            recipients = Recipients.from_document(stored["email"])
            ui_url = stored["links"]["ui"]
        message = OutgoingMessage(notification=n, recipients=recipients, ui_url=ui_url, show_command=show_command(n.case_id))
        return message, row["id"], inserted is not None

    # -- the decided notification (written by record_decision, delivered after its commit) -----------

    async def record_decided(self, conn: asyncpg.Connection, decision_key: str, trace: DecisionTrace) -> str | None:
        """Write the requester's `decided` notification into the outbox on `conn`, inside the caller's
        transaction (the trace's); once per decision key. Its key, for `deliver_soon`; None when the
        case names no requester."""
        n = decided_notification(decision_key, trace)
        if n is None:
            return None
        _, row_id, created = await self._record_on(conn, n)
        if created:
            log.info("decided: telling %s of case %s (%s) [notification %d]", n.requester, n.case_id, trace.outcome, row_id)
        return n.notification_key

    def deliver_soon(self, key: str | None) -> None:
        """Deliver notification `key` in the background, retrying a channel that is down; the caller
        (the case) does not wait. Call it after the transaction that wrote the row has committed."""
        if key is None or not self._channels:
            return
        task = asyncio.get_running_loop().create_task(self._deliver_in_background(key), name=f"deliver {key}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _deliver_in_background(self, key: str) -> bool:
        """`deliver_recorded`, whose failure is a log line: nobody awaits it, and a worker's next
        start delivers what is left (`redeliver_pending`)."""
        try:
            return await self.deliver_recorded(key)
        except Exception as err:  # noqa: BLE001 -- a pool closing at shutdown, a bug: never an unretrieved task error
            log.warning("notification %s not delivered now (the next worker start tries again): %s", key, err)
            return False

    async def deliver_recorded(self, key: str) -> bool:
        """Deliver an outbox row on every channel not done yet, retried up to DECIDED_ATTEMPTS times
        (the last failure recorded as `failed`); True when every channel is done."""
        wait = DECIDED_FIRST_WAIT
        for attempt in range(1, DECIDED_ATTEMPTS + 1):
            try:
                loaded = await self._load(key)
                if loaded is None:
                    return True  # not (or no longer) an outbox row we can rebuild: nothing to send
                row_id, message = loaded
                outcomes = await self._deliver_all(row_id, message, key, final=attempt == DECIDED_ATTEMPTS)
            except (OSError, asyncpg.PostgresError) as err:  # the database itself: try again later
                log.warning("notification %s: cannot deliver now (attempt %d): %s", key, attempt, err)
            else:
                if not any(isinstance(failure, RetryLater) for _, failure in outcomes):
                    return all(failure is None for _, failure in outcomes)
            if attempt < DECIDED_ATTEMPTS:
                await asyncio.sleep(wait.total_seconds())
                wait = min(wait * 2, DECIDED_MAX_WAIT)
        return False

    async def _load(self, key: str) -> tuple[int, OutgoingMessage] | None:
        row = await self._pool.fetchrow("SELECT id, payload FROM notifications WHERE notification_key = $1", key)
        if row is None:
            return None
        stored = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        if "notification" not in stored or "email" not in stored:
            return None
        n = Notification.model_validate(stored["notification"])
        message = OutgoingMessage(
            notification=n,
            recipients=Recipients.from_document(stored["email"]),
            ui_url=stored["links"]["ui"],
            show_command=show_command(n.case_id),
        )
        return row["id"], message

    async def redeliver_pending(self, *, within: timedelta = REDELIVER_WITHIN) -> int:
        """At a worker's start: deliver, in the background, the `decided` notifications of the last
        `within` that a stopped worker left with a channel not done. How many were found."""
        if not self._channels:
            return 0
        keys = await pending_decided(self._pool, [c.name for c in self._channels], within=within)
        for key in keys:
            self.deliver_soon(key)
        return len(keys)

    async def _deliver(
        self, notification_id: int, channel: Channel, message: OutgoingMessage, key: str, *, final: bool
    ) -> Undeliverable | RetryLater | None:
        """Send on one channel unless it is done for this notification; None when delivered (or nobody to reach).
        `final`: the last attempt, after which a channel that is down is recorded as failed."""
        async with delivery_log.claimed(self._pool, notification_id, channel.name) as (conn, row):
            if row["status"] in delivery_log.DONE:
                return Undeliverable(row["last_error"]) if row["status"] == "failed" else None
            try:
                sent = await channel.send(message, message_key=f"{key}#{channel.name}")
            except RetryLater as failure:
                if not final:
                    await delivery_log.record_failure(conn, notification_id, channel.name, str(failure), final=False)
                    log.warning("notification %d: %s will be retried: %s", notification_id, channel.name, failure)
                    return failure
                attempts = activity.info().attempt if activity.in_activity() else DECIDED_ATTEMPTS
                error = f"gave up after {attempts} attempts: {failure}"
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



def decided_key(decision_key: str) -> str:
    """The `decided` notification's key: one per decision key, whatever retries or resets record."""
    return f"{decision_key}/decided"


def decided_notification(decision_key: str, trace: DecisionTrace) -> Notification | None:
    """The requester's `decided` notification of a recorded trace: the outcome, who decided, their
    reason quoted as theirs (a policy's or a timeout's reason is the system's words), and the links."""
    requester = trace.request.get("requester")
    if not isinstance(requester, str) or not requester:
        return None
    level = trace.decided_level if trace.decided_level is not None and trace.decided_level >= 0 else 0
    by_person = trace.decided_via in _PERSON_CHANNELS
    level_note = f" at level {level + 1}" if trace.human_gate and trace.decided_level is not None else ""
    message = f"Decided: {trace.outcome} by {trace.decided_by} via {trace.decided_via}{level_note}."
    if not by_person and trace.reason.strip():
        message += f" {trace.reason.strip()}"
    return Notification(
        notification_key=decided_key(decision_key),
        case_id=trace.case_id,
        kind="decided",
        gate=trace.human_gate or "",
        level=level,
        reviewer_group="",
        recipients=[],
        message=message,
        ask=_ask_of(trace),
        quotes=[Quote(person=trace.decided_by, label="reason", text=trace.reason)] if by_person and trace.reason else [],
        requester=requester,
    )


def _ask_of(trace: DecisionTrace) -> str | None:
    """The kind's ask line for the trace's request; None when the request does not read as one."""
    try:
        kind = CaseKind(trace.decision_trace)
        return SPECS[kind].ask(REQUEST_MODELS[kind].model_validate(trace.request))
    except (ValueError, KeyError):  # ValidationError is a ValueError
        return None


async def pending_decided(pool: asyncpg.Pool, channels: Sequence[str], *, within: timedelta) -> list[str]:
    """Keys of the `decided` notifications written within `within` with a channel of `channels` not done."""
    rows = await pool.fetch(
        """SELECT n.notification_key FROM notifications n
            WHERE n.kind = 'decided' AND n.delivered_at IS NULL AND n.created_at > now() - $2::interval
              AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS c(name)
                           WHERE NOT EXISTS (SELECT 1 FROM notification_deliveries d
                                              WHERE d.notification_id = n.id AND d.channel = c.name
                                                AND d.status IN ('delivered', 'skipped', 'failed')))
            ORDER BY n.id""",
        list(channels),
        within,
    )
    return [row["notification_key"] for row in rows]
