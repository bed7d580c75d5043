"""The server limits of gates/bounds.py are set on every Temporal dev server we run, and they hold.

The gate's bounds rely on the server refusing what no workflow code can refuse (an oversized
payload, a run's signal after the 64th) and flagging a case whose workflow task keeps failing
(TemporalReportedProblems, which the inbox filters on). Checked on the session's dev server
(tests/conftest.py) and on one started like `hitl dev`, the fault suite and the bench start theirs
(`workers.devstack.start_temporal`)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from gates.bounds import (
    SERVER_BLOB_LIMIT_BYTES,
    SERVER_MAX_SIGNALS_PER_RUN,
    dev_server_dynamic_config,
)
from tests.helpers import assert_eventually, postgres_capable_tmpdir, unique_task_queue
from workers.client import DATA_CONVERTER
from workers.devstack import (
    dynamic_config_flags,
    free_port,
    start_temporal,
    temporal_dev_server_argv,
)

OVERSIZED = "x" * (600 * 1024)  # over the 512 KiB limit, far under the server's 2 MB default


@workflow.defn(name="ServerLimitsBroken")
class Broken:
    """Bad code: every workflow task fails and is retried."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("broken on purpose")


def test_dev_server_argv_sets_every_server_limit():
    argv = temporal_dev_server_argv(Path("/tmp/temporal.db"), 7233, None)
    values = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--dynamic-config-value"]
    assert values == [f"{key}={value}" for key, value in dev_server_dynamic_config().items()]
    assert dynamic_config_flags() == [part for value in values for part in ("--dynamic-config-value", value)]


async def assert_oversized_signal_refused(client: Client) -> None:
    handle = await client.start_workflow(
        "ServerLimitsStandIn", id=f"limits-{uuid.uuid4()}", task_queue=unique_task_queue("unpolled")
    )
    try:
        with pytest.raises(RPCError) as refused:
            await handle.signal("decide", OVERSIZED)
        assert refused.value.status == RPCStatusCode.INVALID_ARGUMENT
        assert "Blob data size exceeds limit" in refused.value.message
        await handle.signal("decide", "x" * (SERVER_BLOB_LIMIT_BYTES // 2))  # a smaller one is taken
    finally:
        await handle.terminate(reason="test over")


async def test_the_session_server_refuses_an_oversized_signal_and_a_signal_past_the_run_limit(temporal_env):
    client = temporal_env.client
    await assert_oversized_signal_refused(client)

    handle = await client.start_workflow(
        "ServerLimitsStandIn", id=f"limits-{uuid.uuid4()}", task_queue=unique_task_queue("unpolled")
    )
    try:
        for _ in range(SERVER_MAX_SIGNALS_PER_RUN):
            await handle.signal("decide", "ok")
        with pytest.raises(RPCError) as refused:
            await handle.signal("decide", "one too many")
        print("LIMIT", refused.value.status, refused.value.message)
        assert "signal" in refused.value.message.lower(), refused.value.message
    finally:
        await handle.terminate(reason="test over")


async def test_a_workflow_whose_task_keeps_failing_gets_temporal_reported_problems(temporal_env):
    client = temporal_env.client
    task_queue = unique_task_queue("reported-problems")
    async with Worker(client, task_queue=task_queue, workflows=[Broken], workflow_runner=UnsandboxedWorkflowRunner()):
        handle = await client.start_workflow(Broken.run, id=f"limits-broken-{uuid.uuid4()}", task_queue=task_queue)
        try:
            async def reported() -> list[str]:
                fields = (await handle.describe()).raw_description.workflow_execution_info.search_attributes.indexed_fields
                assert "TemporalReportedProblems" in fields, "not flagged yet"
                query = f"TemporalReportedProblems IS NOT NULL AND WorkflowId = '{handle.id}'"
                assert (await client.count_workflows(query)).count == 1, "not visible yet"
                return DATA_CONVERTER.payload_converter.from_payloads([fields["TemporalReportedProblems"]])[0]

            problems = await assert_eventually(reported, timeout=40, interval=0.5)
        finally:
            await handle.terminate(reason="test over")
    assert problems[0] == "category=WorkflowTaskFailed" and problems[1].startswith("cause="), problems


async def test_a_dev_server_started_like_hitl_dev_refuses_an_oversized_signal():
    """`start_temporal` (hitl dev, the fault suite, the bench) passes the flags the CLI accepts."""
    with postgres_capable_tmpdir("hitl-limits-") as root:
        port = free_port()
        child = start_temporal(root / "temporal.db", port, None, root / "temporal.log")
        try:
            client = await connect_when_healthy(port)
            await assert_oversized_signal_refused(client)
        finally:
            child.stop()


async def connect_when_healthy(port: int) -> Client:
    """The port opens before the frontend reports healthy (seen on a loaded machine): connect once it does."""

    async def connected() -> Client:
        try:
            return await Client.connect(f"127.0.0.1:{port}", data_converter=DATA_CONVERTER)
        except RuntimeError as err:
            raise AssertionError(f"not healthy yet: {err}") from None

    return await assert_eventually(connected, timeout=60, interval=0.5)
