"""`hitl audit schedule`: checkpoints signed on a Temporal schedule by a worker, written outside the
database, and checked by `hitl audit verify --checkpoint`. Real dev server, real PostgreSQL (a
database of this test's own, so the log is exactly what the test wrote)."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest_asyncio

from activities.migrations import apply_migrations
from activities.store.audit import append_events
from tests.helpers import assert_eventually, clean_env, new_worker, run_hitl, unique_task_queue
from tests.integration.test_audit_store import event
from workers.config import Settings


@pytest_asyncio.fixture
async def audit_db(empty_database_url: str):
    conn = await asyncpg.connect(empty_database_url)
    await apply_migrations(conn)
    await append_events(conn, [event("case-a", 1), event("case-b", 1), event("case-a", 2)])
    yield conn
    await conn.close()


async def test_a_scheduled_checkpoint_is_signed_by_the_worker_and_verifies(
    temporal_env, audit_db, empty_database_url, tmp_path: Path
):
    state, folder, queue = tmp_path / "state", tmp_path / "checkpoints", unique_task_queue("audit")
    settings = Settings(
        _env_file=None, database_url=None, identity="asserted", state_dir=state, audit_checkpoint_dir=folder
    )
    env = clean_env(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        HITL_DATABASE_URL=empty_database_url,
        HITL_TASK_QUEUE=queue,
        HITL_STATE_DIR=str(state),
    )
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=2)
    try:
        async with new_worker(temporal_env.client, pool, task_queue=queue, settings=settings):
            created = await run_hitl(env, "audit", "schedule", "--every", "1h", "--now")
            assert created.returncode == 0, created.stderr
            assert "schedule hitl-audit-checkpoint: a checkpoint every 1h" in created.stdout
            written = await assert_eventually(lambda: sorted(folder.glob("checkpoint-*.json")) or False, timeout=60)
    finally:
        await pool.close()
        await run_hitl(env, "audit", "schedule", "--off")
    (checkpoint,) = written
    assert json.loads(checkpoint.read_bytes())["global_seq"] == 3
    public = tmp_path / "checkpoint.pub"
    assert (await run_hitl(env, "audit", "public-key", "-o", str(public))).returncode == 0
    checked = await run_hitl(env, "audit", "verify", "--checkpoint", str(checkpoint), "--public-key", str(public))
    assert checked.returncode == 0, checked.stderr + checked.stdout
    again = await run_hitl(env, "audit", "schedule", "--off")
    assert again.returncode == 1 and "no schedule hitl-audit-checkpoint to delete" in again.stderr


async def test_schedule_arguments_are_checked_before_anything_is_changed(tmp_path: Path):
    env = clean_env(TEMPORAL_ADDRESS="127.0.0.1:1", HITL_STATE_DIR=str(tmp_path))
    for args, message in (
        (("--every", "10s"), "shorter than 1m"),
        (("--every", "soon"), "is not a duration"),
        (("--off", "--now"), "--off deletes the schedule"),
        ((), "give --every DURATION"),
    ):
        result = await run_hitl(env, "audit", "schedule", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
