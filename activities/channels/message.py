"""What every channel says about one notification, before each renders it its own way.

The system's words (the title, the case, the ask, the level, the deadline, the links) and people's
words (`quotes`) are kept apart here, so each channel can show the latter as quotes and never as
markup: a reason reading `<!channel> *approve now*` must neither ping a Slack channel nor turn bold.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import UTC

from activities.channels.recipients import Recipients
from gates.messages import Notification, Quote

KIND_TITLES: dict[str, str] = {
    "reminder": "Reminder",
    "escalation": "Escalation",
    "timeout": "Timed out",
    "info_requested": "Information requested",
    "info_reminder": "Reminder: information requested",
    "info_unanswered": "No answer in time",
    "decided": "Decided",
}
# A reviewer's question, on its way to the person asked: they answer with `hitl answer`.
INFO_KINDS = frozenset({"info_requested", "info_reminder", "info_unanswered"})
ANSWERABLE_KINDS = frozenset({"info_requested", "info_reminder"})


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

    def deadline_text(self) -> str | None:
        deadline = self.notification.deadline
        return f"{deadline.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if deadline is not None else None

    def deadline_unix(self) -> int | None:
        deadline = self.notification.deadline
        return int(deadline.timestamp()) if deadline is not None else None

    def people(self) -> str:
        """Who is told, by id (the directory's ids are what `hitl` commands take)."""
        n = self.notification
        if n.kind in INFO_KINDS:
            return ", ".join(n.asked) or "nobody"
        if n.kind == "decided":
            return n.requester or "nobody"
        return ", ".join(n.recipients) or "nobody"

    def facts(self) -> list[tuple[str, str]]:
        """The system's facts every channel shows, label and value, by kind."""
        n = self.notification
        deadline = self.deadline_text() or "none set"
        if n.kind in INFO_KINDS:
            return [
                ("Case", self.case_id),
                ("Ask", self.ask),
                ("Asked", self.people()),
                ("Answer by", deadline),
                ("Gate", self.level_text()),
            ]
        if n.kind == "decided":
            return [("Case", self.case_id), ("Ask", self.ask), ("Requester", self.people()), ("Gate", self.level_text())]
        return [
            ("Case", self.case_id),
            ("Ask", self.ask),
            ("Level", self.level_text()),
            ("Deadline", deadline),
            ("Reviewers", self.people()),
        ]

    def level_text(self) -> str:
        n = self.notification
        if not n.gate:  # decided by policy alone: no gate
            return "none (decided by policy)"
        return f"{n.gate} gate, level {n.level + 1}, group {n.reviewer_group}"

    def commands(self) -> list[str]:
        """What to type in a terminal: `hitl show`, and `hitl answer` while a question waits."""
        found = [self.show_command]
        if self.notification.kind in ANSWERABLE_KINDS:
            found.append(answer_command(self.case_id))
        return found


def answer_command(case_id: str) -> str:
    """`hitl answer CASE --text '...'`, quoted for a POSIX shell."""
    return f"hitl answer {shlex.quote(case_id)} --text '<your answer>'"
