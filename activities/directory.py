"""The reviewer directory: who sits in each reviewer group, read from the demo world."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.store.directory import active_members
from gates.messages import Roster, RosterRequest


class DirectoryActivities:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        """Read-only, so retries are safe. Inactive people are left out."""
        groups = list(dict.fromkeys(request.groups))
        rows = await active_members(self._pool, groups)
        roster = Roster(members={group: [] for group in groups})
        for row in rows:
            roster.members[row["group_id"]].append(row["person_id"])
            roster.people[row["person_id"]] = row["name"]
        return roster
