"""The project's one list of custom search attributes fits the dev server, and every attribute can be upserted."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeIndexedValueType as T
from temporalio.common import SearchAttributeKey
from temporalio.worker import Worker

from gates.search_attributes import ALL_SEARCH_ATTRIBUTES, dev_server_flags

# The dev server's SQLite visibility store refuses more than this many attributes of a type per namespace.
DEV_SERVER_CAPS = {
    T.KEYWORD: 10,
    T.INT: 3,
    T.TEXT: 3,
    T.KEYWORD_LIST: 3,
    T.DATETIME: 3,
    T.DOUBLE: 3,
    T.BOOL: 3,
}


def sample_value(key: SearchAttributeKey) -> Any:
    """A distinct, deterministic value of the key's type (used inside the workflow, so no clocks or randomness)."""
    i = [k.name for k in ALL_SEARCH_ATTRIBUTES].index(key.name)
    samples = {
        T.KEYWORD: f"kw-{key.name}",
        T.TEXT: f"some searchable words for {key.name}",
        T.INT: 1000 + i,
        T.DOUBLE: 1.5 + i,
        T.BOOL: True,
        T.KEYWORD_LIST: [f"{key.name}-a", f"{key.name}-b"],
        T.DATETIME: datetime(2030, 1, 2, 3, 4, i, tzinfo=UTC),
    }
    return samples[key.indexed_value_type]


@workflow.defn(name="TestUpsertAllSearchAttributes")
class UpsertAllSearchAttributesWorkflow:
    @workflow.run
    async def run(self) -> int:
        workflow.upsert_search_attributes([key.value_set(sample_value(key)) for key in ALL_SEARCH_ATTRIBUTES])
        return len(ALL_SEARCH_ATTRIBUTES)


async def upsert_every_attribute(client) -> dict[str, Any]:
    """Run the upserting workflow on its own queue; return what describe() reports per attribute name."""
    task_queue = f"upsert-sa-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[UpsertAllSearchAttributesWorkflow]):
        handle = await client.start_workflow(
            UpsertAllSearchAttributesWorkflow.run, id=f"upsert-sa-{uuid.uuid4()}", task_queue=task_queue
        )
        # An attribute the namespace does not know fails the workflow task forever: bound the wait.
        assert await asyncio.wait_for(handle.result(), timeout=20) == len(ALL_SEARCH_ATTRIBUTES)
    described = (await handle.describe()).typed_search_attributes
    return {key.name: described.get(key) for key in ALL_SEARCH_ATTRIBUTES}


def test_search_attributes_fit_dev_server_type_caps():
    per_type = Counter(key.indexed_value_type for key in ALL_SEARCH_ATTRIBUTES)
    over = {t.name: n for t, n in per_type.items() if n > DEV_SERVER_CAPS[t]}
    assert over == {}, f"more attributes than the dev server accepts per namespace: {over}"


def test_search_attribute_names_are_unique_and_dev_server_flags_cover_them():
    names = [key.name for key in ALL_SEARCH_ATTRIBUTES]
    assert len(names) == len(set(names)), [n for n, c in Counter(names).items() if c > 1]
    flags = dev_server_flags()
    assert flags[0::2] == ["--search-attribute"] * len(names)
    assert [flag.split("=")[0] for flag in flags[1::2]] == names


async def test_workflow_on_dev_server_can_upsert_every_search_attribute(temporal_env):
    described = await upsert_every_attribute(temporal_env.client)
    assert described == {key.name: sample_value(key) for key in ALL_SEARCH_ATTRIBUTES}
