"""What a channel is, and the two ways a delivery fails.

    ChannelFailure
    ├── RetryLater      the channel is down or busy (5xx, 429, 4xx SMTP replies, timeouts, refused
    │                   connections): Temporal retries the activity, which sends only on the channels
    │                   not delivered yet
    └── Undeliverable   retrying cannot help (a revoked webhook, a refused login, every recipient
                        refused): recorded as failed, never sent again
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from activities.channels.message import OutgoingMessage


class ChannelFailure(Exception):
    """A delivery that did not happen; `str()` is one line for operators (`hitl ops stuck`)."""


class RetryLater(ChannelFailure):
    def __init__(self, error: str, *, retry_after: timedelta | None = None):
        super().__init__(error)
        self.retry_after = retry_after


class Undeliverable(ChannelFailure):
    pass


@dataclass(frozen=True)
class Sent:
    """A delivery made: to whom (addresses, or the webhook), and who was refused on the way."""

    to: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


class Channel(Protocol):
    name: str  # stored in notification_deliveries.channel, shown by `hitl ops stuck`
    error_type: str  # the ApplicationError type of a retryable failure, e.g. "WebhookUnavailable"

    async def send(self, message: OutgoingMessage, *, message_key: str) -> Sent:
        """Deliver once, or raise RetryLater or Undeliverable. `message_key` is stable across retries."""
        ...


def one_line(text: str) -> str:
    return " ".join(text.split())
