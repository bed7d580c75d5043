"""The reviewer directory (`world_people`, `world_group_members`): who sits in which reviewer group."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

# A connection or a pool: every function makes one call (or runs inside the caller's transaction).
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


class UnknownReviewer(LookupError):
    """No person with that ID in the directory."""


async def active_members(conn: Connection, groups: list[str]) -> list[asyncpg.Record]:
    """(`group_id`, `person_id`, `name`) of the active members of `groups`, by group then person."""
    return await conn.fetch(
        """SELECT m.group_id, p.person_id, p.name
             FROM world_group_members m JOIN world_people p ON p.person_id = m.person_id
            WHERE m.group_id = ANY($1::text[]) AND p.active
            ORDER BY m.group_id, p.person_id""",
        groups,
    )


async def reviewer_groups(conn: Connection, reviewer: str) -> list[str]:
    """The reviewer groups a person sits in (the same directory the gate's roster is read from).

    An inactive person sits in none (the roster leaves them out); an unknown one raises UnknownReviewer."""
    row = await conn.fetchrow(
        """SELECT p.active,
                  coalesce(array_agg(m.group_id ORDER BY m.group_id) FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups
             FROM world_people p LEFT JOIN world_group_members m ON m.person_id = p.person_id
            WHERE p.person_id = $1
            GROUP BY p.active""",
        reviewer,
    )
    if row is None:
        raise UnknownReviewer(f"no person {reviewer!r} in the directory")
    return list(row["groups"]) if row["active"] else []
