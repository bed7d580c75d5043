"""Loading directory files into PostgreSQL, and the roster a gate reads from the version in force.

Each test has a database of its own: loading changes the directory every other reader sees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.directory import DirectoryActivities
from activities.migrations import apply_migrations
from activities.store.directory import (
    DirectoryConflict,
    active_members,
    current_directory,
    load_directory,
    loaded_directory,
    reviewer_groups,
)
from demo.world import demo_directory
from gates.directory import Directory, parse_directory_file
from gates.messages import RosterRequest


def directory_file(version: str = "v1", *, extra_people: str = "", delegations: str = "", ben_active: bool = True) -> Directory:
    """A small directory; its delegation runs from yesterday to next week, so it is in force today."""
    today = datetime.now(UTC).date()
    delegation = (
        f"  - {{from: ana, to: omar, start: {today - timedelta(days=1)}, end: {today + timedelta(days=7)}, reason: away}}\n"
    )
    text = f"""\
directory: 1
version: "{version}"
people:
  - {{id: ana, name: Ana Costa, email: ana@example.com, title: Analyst, manager: omar}}
  - {{id: ben, name: Ben Okafor, email: ben@example.com, title: Analyst, manager: omar, active: {str(ben_active).lower()}}}
  - {{id: omar, name: Omar Haddad, email: omar@example.com, title: Director}}
  - {{id: ivy, name: Ivy Chen, email: ivy@example.com, title: Chief of Staff}}
{extra_people}groups:
  - {{id: finance_reviewers, description: First review, members: [ana, ben], serves: {{finance: [1]}}}}
  - {{id: finance_directors, description: Escalations, members: [omar], serves: {{finance: [2]}}}}
operators:
  - {{person: ivy, gates: [finance]}}
delegations:
{delegations or delegation}"""
    return parse_directory_file(text.encode(), "test.yaml")


@pytest_asyncio.fixture
async def conn(empty_database_url: str):
    """A migrated database with no directory loaded and no demo world."""
    connection = await asyncpg.connect(empty_database_url)
    await apply_migrations(connection)
    yield connection
    await connection.close()


async def test_loading_a_directory_puts_it_in_force_and_fills_the_reviewer_tables(conn):
    directory = directory_file()
    result = await load_directory(conn, directory, "tester@host")
    assert (result.version, result.changed) == ("v1", True)
    assert await current_directory(conn) == directory
    loaded = await loaded_directory(conn)
    assert loaded is not None and loaded.loaded_by == "tester@host" and loaded.sha256 == directory.sha256
    rows = await active_members(conn, ["finance_reviewers", "finance_directors"])
    assert [(r["group_id"], r["person_id"]) for r in rows] == [
        ("finance_directors", "omar"),
        ("finance_reviewers", "ana"),
        ("finance_reviewers", "ben"),
    ]
    assert await reviewer_groups(conn, "ana") == ["finance_reviewers"]
    gates = dict(await conn.fetch("SELECT group_id, gate FROM world_reviewer_groups"))
    assert gates == {"finance_reviewers": "finance", "finance_directors": "finance"}


async def test_loading_the_same_version_and_content_again_changes_nothing(conn):
    await load_directory(conn, directory_file(), "first")
    again = await load_directory(conn, directory_file(), "second")
    assert (again.version, again.changed, again.in_force) == ("v1", False, "v1")
    rows = await conn.fetch("SELECT version, loaded_by FROM directory_versions")
    assert [(r["version"], r["loaded_by"]) for r in rows] == [("v1", "first")]


async def test_the_same_version_with_other_content_is_refused_and_nothing_changes(conn):
    await load_directory(conn, directory_file(), "first")
    changed = directory_file(ben_active=False)
    with pytest.raises(DirectoryConflict, match="directory version v1 was loaded on .* with other content; give the changed"):
        await load_directory(conn, changed, "second")
    assert await conn.fetchval("SELECT active FROM world_people WHERE person_id = 'ben'") is True
    assert await conn.fetchval("SELECT count(*) FROM directory_versions") == 1


async def test_a_new_version_replaces_groups_and_a_person_it_drops_becomes_inactive_everywhere(conn):
    await load_directory(conn, directory_file(extra_people="  - {id: zoe, name: Zoe, email: zoe@example.com, title: T}\n"), "a")
    result = await load_directory(conn, directory_file("v2", ben_active=False), "b")
    assert result.changed and result.in_force == "v2"
    assert (await current_directory(conn)).version == "v2"
    assert await conn.fetchval("SELECT active FROM world_people WHERE person_id = 'zoe'") is False, (
        "kept, for the systems of record"
    )
    assert await reviewer_groups(conn, "zoe") == [] and await reviewer_groups(conn, "ben") == []
    rows = await active_members(conn, ["finance_reviewers"])
    assert [r["person_id"] for r in rows] == ["ana"]
    # an older version given again is already loaded: it does not come back in force by itself
    old = await load_directory(
        conn, directory_file(extra_people="  - {id: zoe, name: Zoe, email: zoe@example.com, title: T}\n"), "c"
    )
    assert (old.changed, old.in_force) == (False, "v2")


async def test_two_people_may_swap_email_addresses_in_one_load(conn):
    await load_directory(conn, directory_file(), "a")
    swapped = directory_file("v2").model_dump(by_alias=True)
    swapped["people"][0]["email"], swapped["people"][1]["email"] = "ben@example.com", "ana@example.com"
    await load_directory(conn, Directory.model_validate(swapped), "b")
    emails = dict(await conn.fetch("SELECT person_id, email FROM world_people WHERE person_id IN ('ana', 'ben')"))
    assert emails == {"ana": "ben@example.com", "ben": "ana@example.com"}


async def test_the_roster_comes_from_the_directory_in_force(conn):
    await load_directory(conn, directory_file(ben_active=False), "a")
    roster = await ActivityEnvironment().run(
        DirectoryActivities(conn).load_reviewer_roster,
        RosterRequest(groups=["finance_reviewers", "finance_directors"], people=["ana"], gate="finance"),
    )
    assert roster.directory_version == "v1"
    assert roster.members == {"finance_reviewers": ["ana"], "finance_directors": ["omar"]}
    assert roster.inactive == {"finance_reviewers": ["ben"]}
    assert [(d.delegator, d.delegate, d.reason) for d in roster.delegations] == [("ana", "omar", "away")]
    assert roster.operators == ["ivy"]
    assert roster.serving == {"finance_reviewers": [0], "finance_directors": [1]}
    assert roster.people["omar"] == "Omar Haddad"


async def test_the_roster_follows_a_newly_loaded_version(conn):
    activities = DirectoryActivities(conn)
    await load_directory(conn, directory_file(), "a")
    first = await ActivityEnvironment().run(activities.load_reviewer_roster, RosterRequest(groups=["finance_reviewers"]))
    await load_directory(conn, directory_file("v2", ben_active=False), "b")
    second = await ActivityEnvironment().run(activities.load_reviewer_roster, RosterRequest(groups=["finance_reviewers"]))
    assert (first.directory_version, first.members["finance_reviewers"]) == ("v1", ["ana", "ben"])
    assert (second.directory_version, second.members["finance_reviewers"]) == ("v2", ["ana"])


async def test_without_a_directory_file_the_roster_falls_back_to_the_world_tables(conn):
    await conn.execute(
        """INSERT INTO world_people (person_id, name, email, title, active) VALUES
               ('ana', 'Ana Costa', 'ana@example.com', 'Analyst', true), ('greta', 'Greta', 'g@example.com', 'Left', false);
           INSERT INTO world_reviewer_groups (group_id, gate, description) VALUES ('finance_reviewers', 'finance', 'First');
           INSERT INTO world_group_members VALUES ('finance_reviewers', 'ana'), ('finance_reviewers', 'greta');"""
    )
    roster = await ActivityEnvironment().run(
        DirectoryActivities(conn).load_reviewer_roster,
        RosterRequest(groups=["finance_reviewers", "nobody_group"], gate="finance"),
    )
    assert roster.directory_version is None
    assert roster.members == {"finance_reviewers": ["ana"], "nobody_group": []}
    assert roster.inactive == {"finance_reviewers": ["greta"]}
    assert roster.people == {"ana": "Ana Costa"}
    assert (roster.delegations, roster.operators, roster.serving) == ([], [], {})


async def test_the_seeded_demo_world_runs_on_the_demo_directory_and_a_new_version_keeps_its_accounts(world_pool):
    async with world_pool.acquire() as conn:
        assert (await current_directory(conn)) == demo_directory()
        # ae_sam owns accounts in the CRM; a directory without them still loads, and they stay as inactive
        document = demo_directory().model_dump(by_alias=True)
        document["version"] = "2026-12-03.1"
        document["people"] = [p for p in document["people"] if p["id"] != "ae_sam"]
        result = await load_directory(conn, Directory.model_validate(document), "test")
        assert result.changed
        assert await conn.fetchval("SELECT active FROM world_people WHERE person_id = 'ae_sam'") is False
        assert await conn.fetchval("SELECT count(*) FROM world_accounts WHERE account_owner = 'ae_sam'") > 0
