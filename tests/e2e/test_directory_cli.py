"""`hitl directory load | show` as a user runs them, against a database of their own."""

from __future__ import annotations

import json

import asyncpg
import pytest_asyncio

from activities.migrations import apply_migrations
from tests.helpers import clean_env, run_hitl

DIRECTORY = """\
directory: 1
version: "2026-12-02.1"
people:
  - {id: ana, name: Ana Costa, email: ana@example.com, title: Analyst, manager: omar}
  - {id: ben, name: Ben Okafor, email: ben@example.com, title: Analyst, manager: omar}
  - {id: greta, name: Greta Olsen, email: greta@example.com, title: Left, active: false}
  - {id: omar, name: Omar Haddad, email: omar@example.com, title: Director}
groups:
  - {id: finance_reviewers, description: First review, members: [ana, ben, greta], serves: {finance: [1]}}
  - {id: finance_directors, description: Escalations, members: [omar], serves: {finance: [2, 3]}}
operators:
  - {person: omar, gates: all}
delegations:
  - {from: ana, to: ben, start: 2026-01-05, end: 2026-01-09, reason: out of office}
"""


@pytest_asyncio.fixture
async def env(empty_database_url: str):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return clean_env(HITL_DATABASE_URL=empty_database_url)


async def test_load_then_load_again_then_show_the_summary(env, tmp_path):
    path = tmp_path / "directory.yaml"
    path.write_text(DIRECTORY)
    loaded = await run_hitl(env, "directory", "load", str(path), "--as", "lead@laptop")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "directory 2026-12-02.1 loaded (4 people, 2 groups, 1 operator, 1 delegation)\n"
    again = await run_hitl(env, "directory", "load", str(path))
    assert (again.returncode, again.stdout) == (0, "directory 2026-12-02.1 already loaded; nothing changed\n")
    summary = await run_hitl(env, "directory", "show")
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert lines[0].startswith("directory 2026-12-02.1, loaded ") and lines[0].endswith(" by lead@laptop")
    assert lines[1] == "4 people, 2 groups, 1 operator, 1 delegation; 1 inactive person"
    assert any(line.split()[:4] == ["finance_reviewers", "finance", "level", "1"] and "2/3" in line for line in lines), lines
    assert "operators: omar (all gates)" in lines
    assert "  ana -> ben  2026-01-05 00:00Z until 2026-01-10 00:00Z  (ended): out of office" in lines


async def test_show_a_person_and_a_group_as_text_and_json(env, tmp_path):
    path = tmp_path / "directory.yaml"
    path.write_text(DIRECTORY)
    assert (await run_hitl(env, "directory", "load", str(path))).returncode == 0
    ana = await run_hitl(env, "directory", "show", "ana")
    assert ana.returncode == 0, ana.stderr
    assert ana.stdout.splitlines()[:6] == [
        "ana: Ana Costa, Analyst",
        "  email       ana@example.com",
        "  active      yes",
        "  manager     omar (Omar Haddad)",
        "  groups      finance_reviewers",
        "  operator    no",
    ]
    assert "ana -> ben  2026-01-05 00:00Z until 2026-01-10 00:00Z  (ended): out of office" in ana.stdout
    omar = json.loads((await run_hitl(env, "directory", "show", "omar", "--json")).stdout)
    assert (omar["operator_gates"], omar["groups"], sorted(omar["reports"])) == ("all", ["finance_directors"], ["ana", "ben"])
    group = await run_hitl(env, "directory", "show", "finance_reviewers")
    assert group.returncode == 0, group.stderr
    assert group.stdout.splitlines()[1] == "  serves   finance level 1"
    assert [line.split()[-1] for line in group.stdout.splitlines()[3:]] == ["active", "active", "inactive"]
    as_json = json.loads((await run_hitl(env, "directory", "show", "finance_directors", "--json")).stdout)
    assert as_json["serving"] == {"finance": [1, 2]}
    assert as_json["members"] == [{"id": "omar", "name": "Omar Haddad", "active": True}]


async def test_an_unknown_name_and_an_empty_directory_are_exit_1(env, tmp_path):
    nothing = await run_hitl(env, "directory", "show")
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("hitl: no directory file loaded: reviewer groups come from the world_* tables")
    path = tmp_path / "directory.yaml"
    path.write_text(DIRECTORY)
    assert (await run_hitl(env, "directory", "load", str(path))).returncode == 0
    unknown = await run_hitl(env, "directory", "show", "nobody")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == "hitl: no person or group 'nobody' in directory 2026-12-02.1\n"


async def test_a_bad_file_is_exit_2_with_every_problem_on_its_line_and_nothing_loaded(env, tmp_path):
    path = tmp_path / "directory.yaml"
    path.write_text(DIRECTORY.replace("manager: omar}", "manager: olga}", 1).replace("to: ben,", "to: greta,"))
    refused = await run_hitl(env, "directory", "load", str(path))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"hitl: {path}: line 4: people.0.manager: no person 'olga' in the file",
        f"hitl: {path}: line 14: delegations.0.to: 'greta' is inactive and cannot decide for anyone",
    ]
    assert (await run_hitl(env, "directory", "show")).returncode == 1, "nothing was loaded"


async def test_the_same_version_with_other_content_is_exit_2(env, tmp_path):
    path = tmp_path / "directory.yaml"
    path.write_text(DIRECTORY)
    assert (await run_hitl(env, "directory", "load", str(path))).returncode == 0
    path.write_text(DIRECTORY.replace("title: Director", "title: Finance Director"))
    refused = await run_hitl(env, "directory", "load", str(path))
    assert refused.returncode == 2
    assert "hitl: directory version 2026-12-02.1 was loaded on " in refused.stderr
    assert "with other content; give the changed file a new version" in refused.stderr
    missing = await run_hitl(env, "directory", "load", str(tmp_path / "nope.yaml"))
    assert (missing.returncode, missing.stderr) == (2, f"hitl: {tmp_path / 'nope.yaml'}: no such file\n")
