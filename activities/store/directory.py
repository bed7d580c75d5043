"""The reviewer directory: its loaded versions (`directory_versions`) and the tables they fill
(`world_people`, `world_reviewer_groups`, `world_group_members`): who sits in which reviewer group.

The directory in force is the latest version loaded (gates/directory.py reads and queries it).
Databases without one (seeded before directory files) still have the world_* tables, which the
roster falls back to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from gates.directory import Directory

# A connection or a pool: every function makes one call (or runs inside the caller's transaction).
Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


class UnknownReviewer(LookupError):
    """No person with that ID in the directory."""


class DirectoryConflict(ValueError):
    """A directory version already loaded with other content: a changed file needs a new version."""


# An arbitrary constant shared by every loader: the key of the transaction-level advisory lock ("HITLD").
_LOAD_LOCK_KEY = 0x48_49_54_4C_44


@dataclass(frozen=True)
class LoadResult:
    version: str
    changed: bool  # False: this version was loaded before with the same content; nothing was written
    in_force: str  # the version in force after the load (another one when an older version was given again)


@dataclass(frozen=True)
class LoadedDirectory:
    directory: Directory
    seq: int
    sha256: str
    loaded_at: datetime
    loaded_by: str


async def load_directory(conn: asyncpg.Connection, directory: Directory, loaded_by: str) -> LoadResult:
    """Record `directory` as the version in force and refresh the world_* directory tables from it, in
    one transaction. The same version with the same content again changes nothing; with other content
    it raises DirectoryConflict. People the file no longer lists stay in world_people (the systems of
    record still name them) but become inactive and leave every group."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOAD_LOCK_KEY)
        earlier = await conn.fetchrow("SELECT sha256, loaded_at FROM directory_versions WHERE version = $1", directory.version)
        if earlier is not None:
            if earlier["sha256"] != directory.sha256:
                raise DirectoryConflict(
                    f"directory version {directory.version} was loaded on {earlier['loaded_at']:%Y-%m-%d %H:%M}Z with other "
                    "content; give the changed file a new version"
                )
            in_force = await conn.fetchval("SELECT version FROM directory_versions ORDER BY seq DESC LIMIT 1")
            return LoadResult(directory.version, changed=False, in_force=in_force)
        await conn.execute(
            "INSERT INTO directory_versions (version, sha256, document, loaded_by) VALUES ($1, $2, $3::jsonb, $4)",
            directory.version,
            directory.sha256,
            json.dumps(directory.document()),
            loaded_by,
        )
        await _refresh_world_tables(conn, directory)
        return LoadResult(directory.version, changed=True, in_force=directory.version)


async def _refresh_world_tables(conn: asyncpg.Connection, directory: Directory) -> None:
    ids = [p.id for p in directory.people]
    # Emails are unique: park the ones that change, so two people may swap addresses in one load.
    await conn.execute(
        """UPDATE world_people w SET email = w.person_id || '@directory-reload.invalid'
             FROM unnest($1::text[], $2::text[]) AS f(person_id, email)
            WHERE w.person_id = f.person_id AND w.email <> f.email""",
        ids,
        [p.email for p in directory.people],
    )
    await conn.execute(
        """INSERT INTO world_people (person_id, name, email, title, manager_id, active)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[])
           ON CONFLICT (person_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, title = EXCLUDED.title,
                                                 manager_id = EXCLUDED.manager_id, active = EXCLUDED.active""",
        ids,
        [p.name for p in directory.people],
        [p.email for p in directory.people],
        [p.title for p in directory.people],
        [p.manager for p in directory.people],
        [p.active for p in directory.people],
    )
    await conn.execute("UPDATE world_people SET active = false WHERE active AND NOT person_id = ANY($1::text[])", ids)
    await conn.execute("DELETE FROM world_group_members")
    groups = [g.id for g in directory.groups]
    await conn.execute("DELETE FROM world_reviewer_groups WHERE NOT group_id = ANY($1::text[])", groups)
    await conn.execute(
        """INSERT INTO world_reviewer_groups (group_id, gate, description)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
           ON CONFLICT (group_id) DO UPDATE SET gate = EXCLUDED.gate, description = EXCLUDED.description""",
        groups,
        [next(iter(g.serves)) if len(g.serves) == 1 else None for g in directory.groups],
        [g.description for g in directory.groups],
    )
    await conn.execute(
        "INSERT INTO world_group_members (group_id, person_id) SELECT * FROM unnest($1::text[], $2::text[])",
        [g.id for g in directory.groups for _ in g.members],
        [member for g in directory.groups for member in g.members],
    )


async def loaded_directory(conn: Connection) -> LoadedDirectory | None:
    """The directory in force (the latest loaded version) with when and by whom it was loaded; None if none was."""
    row = await conn.fetchrow(
        "SELECT seq, sha256, document, loaded_at, loaded_by FROM directory_versions ORDER BY seq DESC LIMIT 1"
    )
    if row is None:
        return None
    document = row["document"]
    return LoadedDirectory(
        directory=Directory.model_validate(json.loads(document) if isinstance(document, str) else document),
        seq=row["seq"],
        sha256=row["sha256"],
        loaded_at=row["loaded_at"],
        loaded_by=row["loaded_by"],
    )


async def current_directory(conn: Connection) -> Directory | None:
    """The directory in force, or None when no directory file was ever loaded (the world_* tables only)."""
    loaded = await loaded_directory(conn)
    return loaded.directory if loaded is not None else None


async def directory_seq(conn: Connection) -> int | None:
    """The sequence number of the directory in force (cheap: for caching a parsed one), or None."""
    return await conn.fetchval("SELECT max(seq) FROM directory_versions")


async def group_memberships(conn: Connection, groups: list[str]) -> list[asyncpg.Record]:
    """(`group_id`, `person_id`, `name`, `active`) of every member of `groups`, by group then person:
    the roster of a database without a directory file."""
    return await conn.fetch(
        """SELECT m.group_id, p.person_id, p.name, p.active
             FROM world_group_members m JOIN world_people p ON p.person_id = m.person_id
            WHERE m.group_id = ANY($1::text[])
            ORDER BY m.group_id, p.person_id""",
        groups,
    )


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
