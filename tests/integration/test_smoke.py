"""The probe workflow behind `hitl check` runs end to end on real servers and leaves its row in PostgreSQL."""

from __future__ import annotations

import uuid

import asyncpg
from temporalio.testing import WorkflowEnvironment

from gates.messages import StackCheckInput, StackCheckResult
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES
from tests.helpers import new_worker
from tests.integration.test_search_attributes import sample_value, upsert_every_attribute
from workflows.stack_check import StackCheckWorkflow


async def _run_stack_check(env: WorkflowEnvironment, pool: asyncpg.Pool) -> tuple[str, StackCheckResult]:
    check_id = f"check-{uuid.uuid4()}"
    workflow_id = f"smoke-{uuid.uuid4()}"
    async with new_worker(env.client, pool) as worker:
        result = await env.client.execute_workflow(
            StackCheckWorkflow.run,
            StackCheckInput(check_id=check_id),
            id=workflow_id,
            task_queue=worker.task_queue,
        )
    assert isinstance(result, StackCheckResult)
    assert result.check_id == check_id
    return workflow_id, result


async def test_stack_check_on_dev_server_writes_row_with_its_workflow_id(temporal_env, db_pool):
    workflow_id, result = await _run_stack_check(temporal_env, db_pool)

    row = await db_pool.fetchrow(
        "SELECT id, workflow_id, worker_identity FROM stack_checks WHERE check_id = $1", result.check_id
    )
    assert row is not None, "the activity did not write its stack_checks row"
    assert row["workflow_id"] == workflow_id
    assert row["id"] == result.row_id
    assert row["worker_identity"] == result.worker_identity


async def test_stack_check_on_time_skipping_server_with_search_attributes_registered(time_skipping_env, db_pool):
    workflow_id, result = await _run_stack_check(time_skipping_env, db_pool)
    assert await db_pool.fetchval("SELECT workflow_id FROM stack_checks WHERE id = $1", result.row_id) == workflow_id

    # The test server implements neither ListSearchAttributes nor GetSearchAttributes: an upsert of an
    # unregistered attribute would fail its workflow task forever, so a completed upsert proves registration.
    described = await upsert_every_attribute(time_skipping_env.client)
    assert described == {key.name: sample_value(key) for key in ALL_SEARCH_ATTRIBUTES}
