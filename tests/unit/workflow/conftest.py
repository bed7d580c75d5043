"""Fixtures of the fast workflow tier: the time-skipping test server (no PostgreSQL, no HTTP), a fresh
fake world per test, a worker running the real case workflows against it, and `start` for cases."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
import pytest_asyncio
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from gates.cases import CaseRequest
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES
from tests.case_helpers import start_case
from tests.conftest import started_time_skipping
from tests.unit.workflow.fakes import FakeWorld
from tests.unit.workflow.harness import fake_world_worker
from workers.client import DATA_CONVERTER, client_interceptors


@pytest_asyncio.fixture(scope="session")
async def workflow_env():
    """The time-skipping server with a client built as the real one is (converter, tracing
    interceptor). It has no search-attribute flag: the attributes the cases upsert are registered
    through the operator API, else every upsert would fail the workflow task."""
    async with await started_time_skipping(data_converter=DATA_CONVERTER, interceptors=client_interceptors()) as env:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={key.name: key.indexed_value_type for key in ALL_SEARCH_ATTRIBUTES},
            )
        )
        yield env


@pytest.fixture
def world() -> FakeWorld:
    """A fresh demo world per test: change it before starting a case, read what the case did after."""
    return FakeWorld()


@pytest_asyncio.fixture
async def worker(workflow_env, world):
    """The real case workflows on their own task queue, with this test's fake activities."""
    async with fake_world_worker(workflow_env.client, world) as running:
        yield running


@pytest_asyncio.fixture
async def start(workflow_env, worker):
    """`await start(request)`: the case started under its own ID on this test's worker (options as
    `start_case` takes them). A case the test left running is terminated afterwards, so its timers
    cannot fire during later tests."""
    handles: list[WorkflowHandle] = []

    async def start_(request: CaseRequest, *, task_timeout: timedelta | None = None) -> WorkflowHandle:
        handle = await start_case(workflow_env.client, request, worker.task_queue, task_timeout=task_timeout)
        handles.append(handle)
        return handle

    yield start_
    for handle in handles:
        with contextlib.suppress(RPCError):  # most have ended already
            await handle.terminate("the test is over")
