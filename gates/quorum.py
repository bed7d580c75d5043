"""Quorum: a decision that needs several approvals by distinct people, optionally one from each named group.

Pure domain. A policy rule may ask for a quorum (`quorum: {approvals: 2}` or `quorum: {seats:
[finance_directors, finance_reviewers]}`, gates/policy.py); the gate then collects approvals until
the quorum is met, and one rejection ends the case unless the rule says otherwise
(`rejections_to_end`). Nobody fills two seats: seats are matched to distinct approvers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import permutations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Seats are matched by trying assignments; a quorum is a handful of people, never more than this.
MAX_SEATS = 6


class Quorum(BaseModel):
    """How many distinct approvers a decision needs, and from which groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    approvals: int = Field(default=0, ge=0, le=MAX_SEATS, description="Distinct approvers needed (at least the seats)")
    seats: list[str] = Field(
        default_factory=list, max_length=MAX_SEATS, description="Groups each of which must supply one approver"
    )
    rejections_to_end: int = Field(default=1, ge=1, le=MAX_SEATS, description="Rejections that end the case")
    keep_on_escalation: bool = Field(default=False, description="Approvals given before an escalation still count")

    @model_validator(mode="after")
    def _needs_someone(self) -> Quorum:
        if self.approvals == 0 and not self.seats:
            raise ValueError("a quorum needs `approvals` (a number of distinct people) or `seats` (groups), or both")
        return self

    @property
    def needed(self) -> int:
        return max(self.approvals, len(self.seats))

    def merged(self, other: Quorum | None) -> Quorum:
        """Two rules' quorums together: the larger count, every seat of both, the stricter rules."""
        if other is None:
            return self
        return Quorum(
            approvals=min(MAX_SEATS, max(self.approvals, other.approvals)),
            seats=(self.seats + [s for s in other.seats if s not in self.seats])[:MAX_SEATS],
            rejections_to_end=min(self.rejections_to_end, other.rejections_to_end),
            keep_on_escalation=self.keep_on_escalation and other.keep_on_escalation,
        )


def seats_filled(quorum: Quorum, approvers: Sequence[str], roster: Mapping[str, Sequence[str]]) -> list[str | None]:
    """For each seat, the approver filling it in the best assignment of distinct approvers (None if empty)."""
    seats = quorum.seats
    best: list[str | None] = [None] * len(seats)
    if not seats:
        return best
    padded: list[str | None] = [*dict.fromkeys(approvers), *([None] * len(seats))]
    for order in permutations(padded, len(seats)):
        filled = [who if who is not None and who in roster.get(seat, ()) else None for seat, who in zip(seats, order)]
        if sum(f is not None for f in filled) > sum(f is not None for f in best):
            best = filled
            if all(f is not None for f in best):
                break
    return best


def progress(quorum: Quorum, approvers: Sequence[str], roster: Mapping[str, Sequence[str]]) -> int:
    """How many of the `needed` approvals these distinct approvers provide: the seats they fill,
    plus approvers beyond the seats up to the count the seats leave."""
    distinct = list(dict.fromkeys(approvers))
    filled = sum(f is not None for f in seats_filled(quorum, distinct, roster))
    unseated = len(distinct) - filled
    return filled + min(unseated, quorum.needed - len(quorum.seats))


def is_met(quorum: Quorum, approvers: Sequence[str], roster: Mapping[str, Sequence[str]]) -> bool:
    return progress(quorum, approvers, roster) >= quorum.needed


def would_count(quorum: Quorum, approvers: Sequence[str], person: str, roster: Mapping[str, Sequence[str]]) -> bool:
    """Does one more approval by `person` bring the quorum closer (a seat filled, or a count not yet reached)?"""
    return person not in approvers and progress(quorum, [*approvers, person], roster) > progress(quorum, approvers, roster)


def still_needed(quorum: Quorum, approvers: Sequence[str], roster: Mapping[str, Sequence[str]]) -> list[str]:
    """What the quorum still needs, in words: `a member of finance_reviewers`, `1 more approver`."""
    distinct = list(dict.fromkeys(approvers))
    filled = seats_filled(quorum, distinct, roster)
    needs = [f"a member of {seat}" for seat, who in zip(quorum.seats, filled) if who is None]
    more = quorum.needed - progress(quorum, distinct, roster) - len(needs)
    if more > 0:
        needs.append(f"{more} more approver{'s' if more > 1 else ''}")
    return needs
