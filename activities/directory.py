"""The reviewer directory: who sits in each reviewer group, read from the demo world."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel, Field
from temporalio import activity


class RosterRequest(BaseModel):
    groups: list[str] = Field(description="Reviewer group ids, e.g. ['finance_reviewers', 'finance_directors']")


class Roster(BaseModel):
    members: dict[str, list[str]] = Field(description="Active members of each asked group; an unknown group has none")
    people: dict[str, str] = Field(default_factory=dict, description="Display name of every listed member")


class DirectoryActivities:
    def __init__(self, pool: asyncpg.Pool):
        self._pool = pool

    @activity.defn(name="load_reviewer_roster")
    async def load_reviewer_roster(self, request: RosterRequest) -> Roster:
        """Read-only, so retries are safe. Inactive people are left out."""
        groups = list(dict.fromkeys(request.groups))
        rows = await self._pool.fetch(
            """SELECT m.group_id, p.person_id, p.name
                 FROM world_group_members m JOIN world_people p ON p.person_id = m.person_id
                WHERE m.group_id = ANY($1::text[]) AND p.active
                ORDER BY m.group_id, p.person_id""",
            groups,
        )
        roster = Roster(members={group: [] for group in groups})
        for row in rows:
            roster.members[row["group_id"]].append(row["person_id"])
            roster.people[row["person_id"]] = row["name"]
        return roster
