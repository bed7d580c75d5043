"""Schema migrations against a real PostgreSQL, each test on a brand-new database."""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest

from activities import migrations
from activities.migrations import MigrationError, apply_migrations, available_migrations, pending_migrations


async def _recorded(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return [(r["version"], r["checksum"]) for r in rows]


async def _table_exists(conn: asyncpg.Connection, table: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)


@pytest.fixture
async def conn(empty_database_url):
    connection = await asyncpg.connect(empty_database_url)
    yield connection
    await connection.close()


def test_shipped_migrations_are_numbered_from_one_without_gaps():
    assert [m.version for m in available_migrations()] == list(range(1, len(available_migrations()) + 1))


async def test_empty_database_gets_every_migration_and_its_tables(conn):
    applied = await apply_migrations(conn)

    assert applied == available_migrations()
    assert await _recorded(conn) == [(m.version, m.checksum) for m in available_migrations()]
    for table in ("decision_traces", "precedents", "notifications", "stack_checks"):
        assert await _table_exists(conn, table), table


async def test_second_run_applies_nothing_and_keeps_data(conn):
    await apply_migrations(conn)
    await conn.execute("INSERT INTO stack_checks (check_id, workflow_id, worker_identity) VALUES ('c', 'w', 'i')")
    recorded = await _recorded(conn)

    assert await apply_migrations(conn) == []
    assert await _recorded(conn) == recorded
    assert await conn.fetchval("SELECT count(*) FROM stack_checks") == 1


async def test_concurrent_runners_both_succeed_and_apply_each_migration_once(empty_database_url):
    first, second = await asyncpg.connect(empty_database_url), await asyncpg.connect(empty_database_url)
    try:
        results = await asyncio.wait_for(asyncio.gather(apply_migrations(first), apply_migrations(second)), 30)
        applied_versions = sorted(m.version for result in results for m in result)
        assert applied_versions == [m.version for m in available_migrations()], "each migration applied exactly once"
        versions = await first.fetch("SELECT version, count(*) AS n FROM schema_migrations GROUP BY version")
        assert {r["version"]: r["n"] for r in versions} == {m.version: 1 for m in available_migrations()}
    finally:
        await first.close()
        await second.close()


async def test_edited_applied_migration_is_refused_by_name(conn, empty_database_url, monkeypatch):
    await apply_migrations(conn)
    original = available_migrations()
    edited = [
        dataclasses.replace(m, sql=m.sql + "\nCREATE TABLE sneaky (id int);\n") if m.version == 1 else m
        for m in original
    ]
    monkeypatch.setattr(migrations, "available_migrations", lambda: edited)

    with pytest.raises(MigrationError) as raised:
        await apply_migrations(conn)

    first = original[0]
    assert f"{first.version:04d}_{first.name}" in str(raised.value)
    assert "changed after it was applied" in str(raised.value)
    assert not await _table_exists(conn, "sneaky"), "the edited file must not run"
    # The failed run released the migration lock: another runner is not blocked.
    monkeypatch.setattr(migrations, "available_migrations", lambda: original)
    other = await asyncpg.connect(empty_database_url)
    try:
        assert await asyncio.wait_for(apply_migrations(other), 30) == []
    finally:
        await other.close()


async def test_pending_lists_all_on_empty_database_and_none_after_migrating(conn):
    assert await pending_migrations(conn) == available_migrations()
    assert not await _table_exists(conn, "schema_migrations"), "asking must not create anything"

    await apply_migrations(conn)

    assert await pending_migrations(conn) == []
