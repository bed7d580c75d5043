"""Sending what a careless integrator or a hostile requester sends: raw gRPC starts and signals with
any number of payloads in any encoding, and starter-chosen options, as any SDK or the UI could."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution, WorkflowType
from temporalio.api.enums.v1 import WorkflowIdConflictPolicy
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    SignalWorkflowExecutionRequest,
    StartWorkflowExecutionRequest,
)
from temporalio.client import Client

from gates import search_attributes as sa


def json_payload(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def raw_payload(data: bytes, encoding: bytes = b"json/plain") -> Payload:
    return Payload(metadata={"encoding": encoding}, data=data)


# Inputs that are not one strict JSON payload, and what the case says of each.
UNREADABLE_INPUTS: dict[str, tuple[list[Payload], str]] = {
    "no input": ([], "takes exactly one JSON payload; got none"),
    "two inputs": ([json_payload({"a": 1}), json_payload({"b": 2})], "takes exactly one JSON payload; got 2"),
    "not JSON": ([raw_payload(b"{not json")], "is not valid JSON"),
    "duplicate key": ([raw_payload(b'{"outcome": "reject", "outcome": "approve"}')], 'duplicate key "outcome"'),
    "NaN": ([raw_payload(b'{"amount": NaN}')], "NaN is not a JSON number"),
    "not UTF-8": ([raw_payload(b'{"reason": "\xff\xfe"}')], "is not UTF-8 text"),
    "other encoding": ([raw_payload(b"\x00\x01", b"binary/protobuf")], "must be JSON (encoding json/plain)"),
    "null": ([raw_payload(b"", b"binary/null")], "got null"),
}


async def raw_start(
    client: Client,
    workflow_type: str,
    workflow_id: str,
    payloads: list[Payload],
    task_queue: str,
    *,
    execution_timeout: timedelta | None = None,
    run_timeout: timedelta | None = None,
    search_attributes: dict[str, Any] | None = None,
    memo: dict[str, Any] | None = None,
    cron_schedule: str = "",
) -> str:
    """Start as any SDK can, with any payloads and options; returns the run ID."""
    request = StartWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_id=workflow_id,
        workflow_type=WorkflowType(name=workflow_type),
        task_queue=TaskQueue(name=task_queue),
        input=Payloads(payloads=payloads),
        request_id=str(uuid.uuid4()),
        cron_schedule=cron_schedule,
        # the session's server is shared: a run an earlier test left under this ID goes
        workflow_id_conflict_policy=WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_TERMINATE_EXISTING,
    )
    if execution_timeout:
        request.workflow_execution_timeout.CopyFrom(Duration(seconds=int(execution_timeout.total_seconds())))
    if run_timeout:
        request.workflow_run_timeout.CopyFrom(Duration(seconds=int(run_timeout.total_seconds())))
    for name, value in (search_attributes or {}).items():
        request.search_attributes.indexed_fields[name].CopyFrom(json_payload(value))
    for name, value in (memo or {}).items():
        request.memo.fields[name].CopyFrom(json_payload(value))
    response = await client.workflow_service.start_workflow_execution(request)
    return response.run_id


async def raw_signal(client: Client, workflow_id: str, payloads: list[Payload], name: str = "decide") -> None:
    """Retried like any SDK's signal (the server answers "workflow is closing" while a case continues as new)."""
    await client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            signal_name=name,
            input=Payloads(payloads=payloads),
            request_id=str(uuid.uuid4()),
        ),
        retry=True,
    )


async def our_attributes(client: Client, workflow_id: str) -> dict[str, Any]:
    """The case's Hitl* search attributes as Temporal holds them (set ones only)."""
    description = await client.get_workflow_handle(workflow_id).describe()
    attributes = description.typed_search_attributes
    return {key.name: attributes.get(key) for key in sa.ALL_SEARCH_ATTRIBUTES if attributes.get(key) is not None}
