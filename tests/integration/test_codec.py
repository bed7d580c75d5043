"""A case with encrypted payloads, end to end on the real dev server: the worker and the clients carry
the codec, Temporal stores ciphertext (inputs, the UI's summary and details, updates, the result),
search attributes stay plain for the inbox, a client without the keys reads nothing, a key rotation
in the middle of a case keeps it readable, and the history replays with the keys."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.common import RawValue
from temporalio.converter import PayloadCodec
from temporalio.worker import Replayer

from demo.examples import example
from gates import search_attributes as sa
from gates.cases import CaseKind
from gates.gate import Decision
from hitl_temporal import CaseClient, InboxItem
from hitl_temporal.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    KeyRing,
    NoKeysCodec,
    PayloadDecryptError,
    encrypted_converter,
    new_key,
)
from tests.case_helpers import trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker, unique_task_queue
from workers.client import DATA_CONVERTER, worker_data_converter
from workers.worker import WORKFLOW_RUNNER, WORKFLOWS

KEY_A, KEY_B = new_key(), new_key()
OLD_RING = KeyRing.parse(f"a:{KEY_A}")
ROTATED_RING = KeyRing.parse(f"b:{KEY_B},a:{KEY_A}")  # b encrypts now; a still decrypts


def _client(plain: Client, ring: KeyRing | PayloadCodec | None) -> Client:
    """The session server's connection with (or without) the codec, as `connect_client` builds it."""
    config = plain.config()
    config["data_converter"] = encrypted_converter(DATA_CONVERTER, ring)
    return Client(**config)


def _payloads(history: WorkflowHistory) -> list[tuple[str, Payload]]:
    """Every payload a user would worry about in the stored history, named by where it is."""
    found: list[tuple[str, Payload]] = []
    for event in history.events:
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            found += [("start input", p) for p in event.workflow_execution_started_event_attributes.input.payloads]
            found += [("static summary", event.user_metadata.summary), ("static details", event.user_metadata.details)]
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            update_input = event.workflow_execution_update_accepted_event_attributes.accepted_request.input
            found += [("update input", p) for p in update_input.args.payloads]
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            found += [("result", p) for p in event.workflow_execution_completed_event_attributes.result.payloads]
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            found += [(name, p) for p in event.activity_task_scheduled_event_attributes.input.payloads]
    return found


@pytest.mark.slow
async def test_an_encrypted_case_is_decided_and_temporal_stores_only_ciphertext(temporal_env, world_pool):
    plain = temporal_env.client
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-codec{uuid.uuid4().hex[:8]}")
    task_queue = unique_task_queue()
    before = _client(plain, OLD_RING)

    async with new_worker(before, world_pool, task_queue=task_queue):
        started = await CaseClient(before, task_queue).start_case(request)
        handle = before.get_workflow_handle(started.case_id)
        waiting = await wait_until_waiting(handle)
        assert waiting.gate is not None and waiting.gate.digest is not None

        # The inbox is a visibility query on search attributes, which no codec touches.
        cases = CaseClient(before, task_queue)
        listed = await assert_eventually(lambda: _listed_in_inbox(cases, started.case_id), timeout=30)
        assert (listed.ask, listed.business_key) == (waiting.ask, request.business_key())

        # Without the keys the case cannot be read: one line saying so (the CLI's client has NoKeysCodec).
        with pytest.raises(PayloadDecryptError) as refused:
            await CaseClient(_client(plain, NoKeysCodec()), task_queue).get_case(started.case_id)
        assert str(refused.value) == "the case data is encrypted (key 'a') and no keys are configured: set HITL_CODEC_KEYS"

        # A signal that does not decrypt (someone without the keys, or an altered payload) is refused
        # by the workflow and kept as a rejected attempt; the case waits on.
        bogus = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"stolen"}, data=os.urandom(80))
        await plain.get_workflow_handle(started.case_id).signal("decide", RawValue(bogus))
        refusal = await assert_eventually(lambda: _rejected_attempt(cases, started.case_id), timeout=30)
        assert "must be JSON (encoding json/plain); got encoding 'binary/encrypted'" in refusal

    # Key rotation while the case waits: a new worker and client encrypt under b, read a's payloads.
    after = _client(plain, ROTATED_RING)
    async with new_worker(after, world_pool, task_queue=task_queue):
        cases = CaseClient(after, task_queue)
        view = await cases.get_case(started.case_id)
        assert view.brief == waiting.brief and view.gate is not None
        reason = "within the encrypted policy"
        decision = Decision(outcome="approve", reviewer="fin_rev_ana", reason=reason, digest=view.gate.digest)
        await cases.decide(started.case_id, decision)
        result = await asyncio.wait_for(cases.wait_for_decision(started.case_id), timeout=30)
    assert (result.outcome, result.decided_by) == ("approve", "fin_rev_ana")
    row = await trace_row(world_pool, started.case_id)
    assert (row["outcome"], row["decided_by"], row["reason"]) == ("approve", "fin_rev_ana", reason)

    # The stored history, fetched raw (no codec): every payload is ciphertext naming its key.
    history = await plain.get_workflow_handle(started.case_id).fetch_history()
    stored = _payloads(history)
    kinds = {where for where, _ in stored}
    assert {"start input", "static summary", "static details", "update input", "result"} <= kinds
    for where, payload in stored:
        assert payload.metadata["encoding"] == ENCODING, f"{where} is stored as {payload.metadata['encoding']!r}"
        assert request.account.encode() not in payload.data and b"fin_rev_ana" not in payload.data, where
    key_ids = {where: payload.metadata[KEY_ID_METADATA] for where, payload in stored}
    assert key_ids["start input"] == b"a" and key_ids["update input"] == b"b" and key_ids["result"] == b"b"

    # Search attributes stay plain JSON (visibility must read them): the case's key and outcome.
    described = await plain.get_workflow_handle(started.case_id).describe()
    assert described.typed_search_attributes.get(sa.BUSINESS_KEY) == request.business_key()

    # The raw history replays against the workflow code with the keys (as `hitl ops replay` must).
    replayer = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=worker_data_converter(EncryptionCodec(ROTATED_RING)),  # as the worker decodes
    )
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    # ... and not without the key that wrote its start.
    without_a = Replayer(
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        data_converter=worker_data_converter(EncryptionCodec(KeyRing.parse(f"b:{KEY_B}"))),
    )
    assert (await without_a.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is not None


async def _listed_in_inbox(cases: CaseClient, case_id: str) -> InboxItem:
    page = await cases.inbox(gate="finance", limit=None)
    matching = [item for item in page.items if item.case_id == case_id]
    assert matching, f"{case_id} not in the finance inbox yet"
    return matching[0]


async def _rejected_attempt(cases: CaseClient, case_id: str) -> str:
    view = await cases.get_case(case_id)
    assert view.rejected_attempts, "no rejected attempt yet"
    assert view.state.value == "waiting"
    return view.rejected_attempts[-1].error
