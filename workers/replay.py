"""Replaying histories against the current workflow code: `hitl ops replay` and the replay tests.

    outcomes = await replay_histories([load_history_file(path)])     # against WORKFLOWS by default
    [o.line() for o in outcomes]                                      # "<case> (run <id>): replayed clean"

Replay needs the workflow code, the worker's runner and its data converter, so it lives with the
worker's wiring rather than in the public package.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.runtime import Runtime
from temporalio.worker import Replayer

from gates.cases import REQUEST_MODELS, WORKFLOW_TYPES
from gates.json_input import JsonInputError, loads_strict
from gates.policy import PolicyError
from gates.policy_change import WORKFLOW_TYPE as POLICY_CHANGE_TYPE
from gates.policy_change import PolicyChangeRequest, change_id_for
from hitl_temporal.codec import EncryptionCodec, PayloadDecryptError
from workers.client import worker_data_converter
from workers.worker import WORKFLOW_RUNNER, WORKFLOWS


class HistoryFileError(ValueError):
    """A file that is not a workflow history; the message names it, one line."""


class ReplayOutcome(BaseModel):
    case_id: str
    run_id: str
    clean: bool
    event_id: int | None = None
    event_type: str | None = None
    detail: str = "replayed clean"

    def line(self) -> str:
        where = f" at event {self.event_id} ({self.event_type})" if self.event_id is not None else ""
        verdict = "replayed clean" if self.clean else f"diverged{where}: {self.detail}"
        return f"{self.case_id} (run {self.run_id}): {verdict}"


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_HISTORY_EVENT = re.compile(r"HistoryEvent\(id: (\d+), (\w+)\)")


def replay_outcome(history: WorkflowHistory, failure: Exception | None, codec: EncryptionCodec | None = None) -> ReplayOutcome:
    try:
        run_id = history.run_id
    except RuntimeError:
        run_id = "?"
    if failure is None:
        return ReplayOutcome(case_id=history.workflow_id, run_id=run_id, clean=True)
    text = str(failure)
    inner = _CORE_MESSAGE.search(text)
    message = inner.group(1).replace('\\"', '"') if inner else text
    event = _HISTORY_EVENT.search(message)
    event_id, event_type = (int(event.group(1)), event.group(2)) if event else _patch_marker_event(history, message, codec)
    return ReplayOutcome(
        case_id=history.workflow_id,
        run_id=run_id,
        clean=False,
        event_id=event_id,
        event_type=event_type,
        detail=message.splitlines()[0] if message else type(failure).__name__,
    )


_PATCH_MARKER = re.compile(r"patch marker encountered for change (\S+),")


def _patch_marker_event(history: WorkflowHistory, message: str, codec: EncryptionCodec | None) -> tuple[int | None, str | None]:
    """Core names no event when code lacks a `workflow.patched` the history has: find its marker."""
    patch = _PATCH_MARKER.search(message)
    if patch is None:
        return None, None
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and any(
            patch.group(1).encode() in _plain_data(payload, codec)
            for detail in event.marker_recorded_event_attributes.details.values()
            for payload in detail.payloads
        ):
            return event.event_id, "MarkerRecorded"
    return None, None


def _plain_data(payload: Payload, codec: EncryptionCodec | None) -> bytes:
    """The payload's data, decrypted when it is encrypted and the keys are given (else as stored)."""
    if codec is None:
        return payload.data
    try:
        return codec.decrypt(payload).data
    except PayloadDecryptError:
        return payload.data


async def _as_async(histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    """Files and fetched lists (iterables) and visibility listings (async iterators) alike."""
    if isinstance(histories, AsyncIterator):
        async for history in histories:
            yield history
    else:
        for history in histories:
            yield history


async def replay_histories(
    histories: Iterable[WorkflowHistory] | AsyncIterator[WorkflowHistory],
    *,
    workflows: Sequence[type] | None = None,
    runtime: Runtime | None = None,
    codec: EncryptionCodec | None = None,
) -> list[ReplayOutcome]:
    """Replay each history against the workflow code (the worker's WORKFLOWS, runner and converter by default:
    a replay must decode payloads exactly as the worker does, see CasePayloadConverter); `codec`: the
    keys of encrypted histories (HITL_CODEC_KEYS), decoding as the worker does."""
    replayer = Replayer(
        workflows=list(workflows or WORKFLOWS),
        data_converter=worker_data_converter(codec),
        workflow_runner=WORKFLOW_RUNNER,
        runtime=runtime,
    )
    outcomes = []
    async with replayer.workflow_replay_iterator(_as_async(histories)) as results:
        async for result in results:
            outcomes.append(replay_outcome(result.history, result.replay_failure, codec))
    return outcomes


def load_history_file(path: Path, codec: EncryptionCodec | None = None) -> WorkflowHistory:
    """A history JSON file (`hitl ops export`, `temporal workflow show -o json`, the UI).

    The JSON holds no workflow ID, and a case refuses to run under any ID but its own (so a replay
    under the file's name would diverge): a case's history is replayed under the case ID its start
    payload names, any other under the file's stem."""
    try:
        history = WorkflowHistory.from_json(path.stem, path.read_text())
    except (OSError, ValueError) as err:
        raise HistoryFileError(f"{path}: not a workflow history: {str(err).splitlines()[0]}") from err
    if not history.events:
        raise HistoryFileError(f"{path}: the history has no events")
    case_id = started_case_id(history, codec)
    return WorkflowHistory(case_id, history.events) if case_id else history


def started_case_id(history: WorkflowHistory, codec: EncryptionCodec | None = None) -> str | None:
    """The case ID (or policy change ID) a workflow's history was started for, from its first event, or None
    (also for an encrypted start without its key)."""
    started = history.events[0].workflow_execution_started_event_attributes
    kinds = {name: kind for kind, name in WORKFLOW_TYPES.items()}
    kind = kinds.get(started.workflow_type.name)
    change = started.workflow_type.name == POLICY_CHANGE_TYPE
    if (kind is None and not change) or len(started.input.payloads) != 1:
        return None
    try:
        value = loads_strict(_plain_data(started.input.payloads[0], codec))
    except JsonInputError:
        return None
    if isinstance(value, dict) and value.get("carried_over") is True and isinstance(value.get("workflow_id"), str):
        return value["workflow_id"]  # a run that continued a case
    try:
        if change:
            return change_id_for(PolicyChangeRequest.model_validate(value).policy().ref)
        assert kind is not None
        return REQUEST_MODELS[kind].model_validate(value).case_id()
    except (ValidationError, PolicyError):
        return None
