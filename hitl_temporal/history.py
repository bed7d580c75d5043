"""Why a case's workflow ended without a recorded outcome, read from its history's closing event.

Used by `CaseClient.get_case` (a case that ended so raises CaseEnded saying why), by `hitl ops stuck`
and by `hitl report`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC

from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType, HistoryEventFilterType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflow.v1 import WorkflowExecutionConfig
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowExecutionStatus

from gates.durations import format_duration

# Closed without the workflow returning a result, so the case recorded no outcome. (A cancelled case
# records 'cancelled' before it stops; a completed one its decision.) Also the runs `start_case`
# may replace: what ID reuse policy ALLOW_DUPLICATE_FAILED_ONLY allows, minus cancelled.
ENDED_WITHOUT_OUTCOME: dict[WorkflowExecutionStatus, str] = {
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
    WorkflowExecutionStatus.FAILED: "failed",
}


def failure_text(failure: Failure) -> str:
    """'Type: message' of a temporal.api.failure.v1.Failure (innermost cause kept short)."""
    kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
    text = f"{kind}: {failure.message}" if kind else failure.message
    if failure.HasField("cause") and failure.cause.message and failure.cause.message not in text:
        text += f" (cause: {failure_text(failure.cause)})"
    return text


def _payload_texts(payloads: Iterable[Payload]) -> list[str]:
    """Terminate details as text (JSON strings unquoted); undecodable ones are skipped."""
    texts = []
    for payload in payloads:
        try:
            value = json.loads(payload.data)
        except ValueError:
            continue
        texts.append(value if isinstance(value, str) else json.dumps(value))
    return texts


def ended_reason(event: HistoryEvent, execution_config: WorkflowExecutionConfig | None = None) -> str:
    """Why a run ended without an outcome, from its closing history event, one line: who terminated
    it and why, which timeout passed (its starter chose it), or the failure (a refused start's reason)."""
    closed = event.event_time.ToDatetime(tzinfo=UTC)
    at = f" at {closed:%Y-%m-%d %H:%M}Z"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        attrs = event.workflow_execution_terminated_event_attributes
        details = "; ".join(_payload_texts(attrs.details.payloads))
        reason = attrs.reason or "no reason given"
        return f"terminated{at} by {attrs.identity or 'unknown'}: {reason}" + (f" ({details})" if details else "")
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        timeouts = []
        if execution_config is not None:
            execution = execution_config.workflow_execution_timeout.seconds
            run = execution_config.workflow_run_timeout.seconds
            if execution:
                timeouts.append(f"execution timeout {format_duration(execution, adjacent=False)}")
            if run and run != execution:  # the server sets the run timeout to the execution timeout
                timeouts.append(f"run timeout {format_duration(run, adjacent=False)}")
        chosen = ", ".join(timeouts) or "a timeout"
        return f"timed out{at} ({chosen}, set by whoever started it)"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        return f"failed{at}: {failure_text(event.workflow_execution_failed_event_attributes.failure)}"
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return f"cancelled{at}"
    return f"closed{at} ({EventType.Name(event.event_type).removeprefix('EVENT_TYPE_').lower()})"


async def why_ended(
    client: Client, workflow_id: str, run_id: str, *, execution_config: WorkflowExecutionConfig | None = None
) -> str:
    """`ended_reason` of the run's closing event (one history call; a describe for a timeout's length
    when `execution_config` is not given)."""
    answer = await client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
            history_event_filter_type=HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT,
        ),
        retry=True,
    )
    if not answer.history.events:
        return "no closing event in its history"
    event = answer.history.events[-1]
    if execution_config is None and event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        description = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        execution_config = description.raw_description.execution_config
    return ended_reason(event, execution_config)

