"""Separation of duties and delegation: who may take a seat at a gate, for whom, and who may not, and why.

Pure domain, used by the gate (gates/gate.py) for every path a decision or an operator action comes
by, so the `submit_decision` validator, the `decide` signal, `operator_action` and the views agree.

The rules: nobody decides a case they requested or whose subject they are (an access request for
themselves), nor while they act as a delegate of the requester or the subject; a delegate in force
(the directory's dated delegations) decides for their delegator, in the delegator's seat, and the
record names both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, Field


class Delegation(BaseModel):
    """A dated delegation from the directory: `delegate` decides for `delegator` (out of office)."""

    delegator: str
    delegate: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    for_case: bool = Field(default=False, description="A one-off delegation for one case (`hitl delegate`)")


@dataclass(frozen=True)
class Seat:
    """Where a person decides: their own seat, or their delegator's."""

    level: int
    group: str
    acting_for: str | None = None  # the delegator, when a delegate decides
    delegation: str | None = None  # e.g. "out of office until 2026-12-08"

    def describe(self, person: str) -> str:
        """`fin_rev_ben for fin_rev_ana (out of office until 2026-12-08)`, or just the person."""
        if self.acting_for is None:
            return person
        return f"{person} for {self.acting_for}" + (f" ({self.delegation})" if self.delegation else "")


def in_force(delegations: Iterable[Delegation], now: datetime) -> list[Delegation]:
    """The delegations that hold at `now` (start inclusive, end exclusive)."""
    return [d for d in delegations if d.starts_at <= now < d.ends_at]


def delegation_note(delegation: Delegation) -> str:
    """`out of office, until 2026-12-08`: the last day in force (an end at midnight is that day's start)."""
    if delegation.for_case:
        return f"{delegation.reason}, for this case only"
    end = delegation.ends_at
    if (end.hour, end.minute, end.second, end.microsecond) == (0, 0, 0, 0):
        return f"{delegation.reason}, until {(end - timedelta(days=1)).date().isoformat()}"
    return f"{delegation.reason}, until {end.isoformat(timespec='minutes')}"


def conflict_of(
    person: str,
    *,
    requester: str,
    subject: str | None,
    delegations: Sequence[Delegation],
    now: datetime,
    doing: str = "decide",
    proposal: bool = False,
) -> str | None:
    """Why `person` may not decide (or, `doing="operate"`, act as an operator on) this case at all, or None.

    `proposal`: the case is a policy change, whose requester is its proposer; the reason says so."""
    if person == requester:
        did = "proposed this change" if proposal else "requested this case"
        return f"{person} {did} and may not {doing} it"
    if subject is not None and person == subject:
        return f"{person} is the subject of this case (whose access changes) and may not {doing} it"
    for d in in_force(delegations, now):
        if d.delegate == person and d.delegator in (requester, subject):
            role = "requester" if d.delegator == requester else "subject"
            of_what = "the proposer of this change" if proposal else f"the {role} of this case"
            return f"{person} is a delegate of {d.delegator}, {of_what} ({delegation_note(d)}), and may not {doing} it"
    return None


def delegators_of(person: str, delegations: Sequence[Delegation], now: datetime) -> list[Delegation]:
    """The delegations in force that let `person` decide for someone else."""
    return [d for d in in_force(delegations, now) if d.delegate == person]
