"""The reviewer directory: who sits in each reviewer group, and what else a gate needs to know of it.

Read from the directory file in force (`hitl directory load`); a database where none was ever
loaded has only the world_* tables, read as before (no delegations, operators or serving groups).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from temporalio import activity

from activities.store.directory import directory_seq, group_memberships, loaded_directory
from gates.directory import Directory
from gates.messages import Roster, RosterRequest


class DirectoryActivities:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool
        self._cached: tuple[int, Directory] | None = None  # the parsed directory in force, by its seq

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        """Read-only, so retries are safe. Inactive people are not members (they are listed apart)."""
        directory = await self._directory()
        if directory is not None:
            return directory.roster(request.groups, request.people, request.gate, now=datetime.now(UTC))
        groups = list(dict.fromkeys(request.groups))
        roster = Roster(members={group: [] for group in groups})
        for row in await group_memberships(self._pool, groups):
            if row["active"]:
                roster.members[row["group_id"]].append(row["person_id"])
                roster.people[row["person_id"]] = row["name"]
            else:
                roster.inactive.setdefault(row["group_id"], []).append(row["person_id"])
        return roster

    async def _directory(self) -> Directory | None:
        """The directory in force; parsed again only when another version was loaded."""
        seq = await directory_seq(self._pool)
        if seq is None:
            return None
        if self._cached is None or self._cached[0] != seq:
            loaded = await loaded_directory(self._pool)
            if loaded is None:
                return None
            self._cached = (loaded.seq, loaded.directory)
        return self._cached[1]
