"""The channels a notification goes out on besides the outbox: email (SMTP) and Slack (an incoming
webhook), each on when configured. `configured_channels` is the one place that knows which."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from activities.channels.base import Channel, ChannelFailure, RetryLater, Sent, Undeliverable
from activities.channels.email import EmailChannel
from activities.channels.links import show_command, ui_base_url, ui_workflow_url
from activities.channels.message import KIND_TITLES, OutgoingMessage
from activities.channels.recipients import RECIPIENT_ROLES, Recipients, resolve_recipients
from activities.channels.slack import SlackChannel, slack_message

__all__ = [
    "KIND_TITLES",
    "RECIPIENT_ROLES",
    "Channel",
    "ChannelFailure",
    "ChannelSettings",
    "EmailChannel",
    "OutgoingMessage",
    "Recipients",
    "RetryLater",
    "Sent",
    "SlackChannel",
    "Undeliverable",
    "configured_channels",
    "resolve_recipients",
    "show_command",
    "slack_message",
    "ui_base_url",
    "ui_workflow_url",
]


class ChannelSettings(Protocol):
    """The part of `workers.config.Settings` the channels read (HITL_NOTIFY_*, HITL_SMTP_*, HITL_UI_BASE_URL)."""

    state_dir: Path
    ui_base_url: str | None
    notify_webhook_url: str | None
    notify_timeout_seconds: float
    smtp_host: str | None
    smtp_port: int | None
    smtp_user: str | None
    smtp_password: SecretStr | None
    smtp_from: str | None
    smtp_starttls: bool


def configured_channels(settings: ChannelSettings) -> list[Channel]:
    """Email when HITL_SMTP_HOST is set, Slack when HITL_NOTIFY_WEBHOOK_URL is, in that order."""
    channels: list[Channel] = []
    if settings.smtp_host and settings.smtp_from:
        channels.append(
            EmailChannel(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_from,
                user=settings.smtp_user,
                password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
                starttls=settings.smtp_starttls,
                timeout_seconds=settings.notify_timeout_seconds,
            )
        )
    if settings.notify_webhook_url:
        channels.append(SlackChannel(settings.notify_webhook_url, settings.notify_timeout_seconds))
    return channels
