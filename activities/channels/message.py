"""What every channel says about one notification, before each renders it its own way.

The system's words (the title, the case, the ask, the level, the deadline, the links) and people's
words (`quotes`) are kept apart here, so each channel can show the latter as quotes and never as
markup: a reason reading `<!channel> *approve now*` must neither ping a Slack channel nor turn bold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from activities.channels.recipients import Recipients
from gates.messages import Notification, Quote

KIND_TITLES: dict[str, str] = {
    "reminder": "Reminder",
    "escalation": "Escalation",
    "timeout": "Timed out",
    "info_requested": "Information requested",
}


@dataclass(frozen=True)
class OutgoingMessage:
    notification: Notification
    recipients: Recipients
    ui_url: str | None
    show_command: str

    @property
    def title(self) -> str:
        return KIND_TITLES.get(self.notification.kind, self.notification.kind.replace("_", " ").capitalize())

    @property
    def case_id(self) -> str:
        return self.notification.case_id

    @property
    def ask(self) -> str:
        """The kind's ask line; older workflows send none, and their message holds it."""
        return self.notification.ask or self.notification.message

    @property
    def quotes(self) -> list[Quote]:
        return self.notification.quotes

    def level_text(self) -> str:
        n = self.notification
        return f"{n.gate} gate, level {n.level + 1}, group {n.reviewer_group}"

    def deadline_text(self) -> str | None:
        deadline = self.notification.deadline
        return f"{deadline.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if deadline is not None else None

    def deadline_unix(self) -> int | None:
        deadline = self.notification.deadline
        return int(deadline.timestamp()) if deadline is not None else None

    def people(self) -> str:
        """Who is told, by id (the directory's ids are what `hitl` commands take)."""
        return ", ".join(self.notification.recipients) or "nobody"
