"""Who a notification reaches: its people looked up in the directory (`world_people`, which a loaded
directory file refreshes), each either with an address or skipped with the reason.

Who is concerned is a table, by role (`RECIPIENT_ROLES`): a notification's reviewers, the person
asked a reviewer's question, the requester once decided; each person once, in its first role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from gates.messages import Notification

# role -> the person ids of that role a notification names
RECIPIENT_ROLES: dict[str, Callable[[Notification], list[str]]] = {
    "asked": lambda n: n.asked,  # info_*: the person a reviewer's question is for (also in `recipients`)
    "reviewer": lambda n: n.recipients,
    "requester": lambda n: [n.requester] if n.requester else [],  # decided: told the outcome
}

# `hitl directory load` parks a changing address on this domain for the length of its transaction;
# RFC 2606 reserves `.invalid`, so an address there can never be delivered.
_UNDELIVERABLE_DOMAINS = (".invalid",)


@dataclass(frozen=True)
class Recipient:
    person: str
    name: str
    email: str
    role: str

    def address(self) -> str:
        """`Name <address>` for a To header."""
        from email.headerregistry import Address

        return str(Address(display_name=self.name, addr_spec=self.email))


@dataclass(frozen=True)
class Skipped:
    person: str
    role: str
    why: str


@dataclass(frozen=True)
class Recipients:
    reached: list[Recipient]
    skipped: list[Skipped]

    def document(self) -> dict[str, Any]:
        """For the outbox row's payload (and back, with `from_document`)."""
        return {"reached": [asdict(r) for r in self.reached], "skipped": [asdict(s) for s in self.skipped]}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Recipients:
        return cls([Recipient(**r) for r in document["reached"]], [Skipped(**s) for s in document["skipped"]])


def people_by_role(n: Notification) -> list[tuple[str, str]]:
    """(person, role) of everyone concerned, each person once, in the roles' order."""
    seen: dict[str, str] = {}
    for role, people in RECIPIENT_ROLES.items():
        for person in people(n):
            seen.setdefault(person, role)
    return list(seen.items())


async def resolve_recipients(conn: asyncpg.Connection | asyncpg.Pool, n: Notification) -> Recipients:
    """Everyone concerned with an address to write to; the inactive, the unknown and those without a
    deliverable address skipped, with why."""
    wanted = people_by_role(n)
    rows = await conn.fetch(
        "SELECT person_id, name, email, active FROM world_people WHERE person_id = ANY($1::text[])",
        [person for person, _ in wanted],
    )
    found = {row["person_id"]: row for row in rows}
    reached: list[Recipient] = []
    skipped: list[Skipped] = []
    for person, role in wanted:
        row = found.get(person)
        email = (row["email"] or "").strip() if row is not None else ""
        if row is None:
            skipped.append(Skipped(person, role, "not in the directory"))
        elif not row["active"]:
            skipped.append(Skipped(person, role, "inactive"))
        elif "@" not in email or email.lower().endswith(_UNDELIVERABLE_DOMAINS):
            skipped.append(Skipped(person, role, "no email address"))
        else:
            reached.append(Recipient(person, row["name"], email, role))
    return Recipients(reached, skipped)
