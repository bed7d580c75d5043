"""The worker is SIGKILLed while cases are gathering, waiting at the gate, and recording; a new worker
picks every case up, and each one ends with exactly one decision row.

To kill in the middle of gathering, the CRM is a local HTTP service that answers after 3 s: longer than
a connector's local attempts (2 s each), so each gathering case asks it as a regular activity, and the
worker is killed once that activity is pending and its CRM call in flight. To kill in
the middle of recording, the test holds a SHARE lock on `decision_traces` so the `record_decision`
INSERTs are seen waiting in pg_locks when the worker dies (their transactions die with it).
Activities lost with the worker heartbeat (workers/heartbeat.py), so they are retried once their
10 s heartbeat timeout passes instead of their 30 s start-to-close timeout; the test checks that
the attempt the crash killed ended on its heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from temporalio.api.enums.v1 import PendingActivityState, TimeoutType
from temporalio.client import WorkflowHandle

from demo.examples import FIRST_REVIEWER
from gates.cases import CaseKind
from gates.gate import Decision
from tests.case_helpers import case_view, distinct, start_case, wait_until_waiting
from tests.fault.conftest import (
    SlowCrm,
    activity_attempts,
    activity_starts,
    assert_decided_once,
    crm_answers_from_world,
    fault_stack,
    trace_table_locks,
)
from tests.helpers import assert_eventually

pytestmark = [pytest.mark.fault, pytest.mark.slow]

CRM_DELAY_SECONDS = 3.0
ACCOUNT = "acme_enterprise"
RUNNING = PendingActivityState.PENDING_ACTIVITY_STATE_STARTED


@pytest.fixture(scope="module")
async def crm():
    with SlowCrm({}, CRM_DELAY_SECONDS) as server:
        yield server


@pytest.fixture(scope="module")
async def stack(crm):
    async with fault_stack("worker-crash", connector_urls={"crm": crm.base_url}) as s:
        # answer exactly what the demo world's CRM would, so the renewal opens at the usual level
        crm.answers.update(await crm_answers_from_world(s.database_url, [ACCOUNT]))
        yield s


def _decision(kind: CaseKind, reason: str) -> Decision:
    return Decision(outcome="approve", reviewer=FIRST_REVIEWER[kind], reason=reason)


async def test_worker_sigkilled_while_gathering_waiting_and_recording(stack, crm):
    client, queue = stack.client, stack.task_queue
    mixed = [CaseKind.RENEWAL, CaseKind.PROCUREMENT, CaseKind.ACCESS]
    kinds = mixed + mixed + mixed[:2] + [CaseKind.RENEWAL] * 2
    opened = [(r.kind, await start_case(client, r, queue)) for r in distinct(kinds[:-2])]
    waiting, recording, signalled = opened[:3], opened[3:6], opened[6:]
    later = distinct(kinds)[-2:]  # the two renewals started while their CRM call hangs
    await asyncio.gather(*(wait_until_waiting(h, timeout=60) for _, h in waiting + recording + signalled))

    lock = await asyncpg.connect(stack.database_url)
    try:
        # Recording: decisions accepted, their INSERTs blocked behind our lock.
        tx = lock.transaction()
        await tx.start()
        await lock.execute("LOCK TABLE decision_traces IN SHARE MODE")
        for kind, handle in recording:
            await handle.execute_update("submit_decision", _decision(kind, "accepted before the crash"))

        async def all_blocked() -> None:
            blocked, holding = await trace_table_locks(lock)
            if (blocked, holding) != (len(recording), 0):
                pending = [(await h.describe()).raw_description.pending_activities for _, h in recording]
                raise AssertionError(f"{blocked} INSERTs waiting, {holding} holding a lock\n{pending}")

        await assert_eventually(all_blocked, timeout=20)

        # Gathering: two renewals inside their (slow) CRM call, asked as a regular activity once the
        # local attempts timed out.
        gathering = [(CaseKind.RENEWAL, await start_case(client, request, queue)) for request in later]

        async def crm_activities_in_flight() -> None:
            for _, handle in gathering:
                pending = (await handle.describe()).raw_description.pending_activities
                started = [p for p in pending if p.activity_type.name == "gather_crm" and p.state == RUNNING]
                assert [p.attempt for p in started] == [1], (handle.id, pending)
            assert crm.in_flight >= len(gathering)

        await assert_eventually(crm_activities_in_flight, timeout=30)

        # Signals sent right before the kill: in history, maybe not yet seen by any worker.
        for kind, handle in signalled:
            await handle.signal("decide", _decision(kind, "signalled just before the crash").model_dump(mode="json"))

        stack.kill_worker()
        await tx.rollback()  # the blocked INSERTs go ahead in transactions whose client is gone
    finally:
        await lock.close()

    async def no_orphan_rows() -> None:
        conn = await asyncpg.connect(stack.database_url)
        try:
            # the dead worker's transactions are gone (rolled back), and wrote nothing
            assert await trace_table_locks(conn) == (0, 0)
            count = await conn.fetchval(
                "SELECT count(*) FROM decision_traces WHERE case_id = ANY($1::text[])", [h.id for _, h in recording]
            )
            assert count == 0
        finally:
            await conn.close()

    await assert_eventually(no_orphan_rows, timeout=30)

    await stack.start_worker()

    # The cases that were waiting are still waiting, with nothing lost; decide them now.
    for kind, handle in waiting:
        view = await assert_eventually(lambda h=handle: _waiting_view(h), timeout=30)
        assert view.decision is None
        await handle.execute_update("submit_decision", _decision(kind, "decided after the crash"))

    # The gathering cases retry their CRM call once its heartbeat timeout passes, then reach the gate.
    for kind, handle in gathering:
        await wait_until_waiting(handle, timeout=60)
        await handle.execute_update("submit_decision", _decision(kind, "gathered after the crash"))

    for kind, handle in waiting + recording + signalled + gathering:
        trace = await assert_decided_once(stack, handle, outcome="approve", decided_by=FIRST_REVIEWER[kind], timeout=60)
        assert not trace["rejected_attempts"], trace["rejected_attempts"]
        # and its audit log holds each of its events once, the killed attempts' writes included
        rows = await stack.fetch("SELECT kind FROM audit_events WHERE case_id = $1 ORDER BY case_seq", handle.id)
        kinds = [row["kind"] for row in rows]
        assert [kinds.count(k) for k in ("case_opened", "gate_opened", "decision_accepted", "trace_recorded")] == [1, 1, 1, 1], (
            handle.id,
            kinds,
        )
    for _, handle in recording:
        [attempt] = await activity_attempts(handle, "record_decision")
        assert attempt >= 2, f"{handle.id}: the record in flight at the crash was retried"
        assert await _retried_because(handle, "record_decision") == ["TIMEOUT_TYPE_HEARTBEAT"], (
            "retried after its heartbeat stopped"
        )
    for _, handle in gathering:
        [attempt] = await activity_attempts(handle, "gather_crm")
        assert attempt >= 2, f"{handle.id}: the CRM call in flight at the crash was retried"
        assert await _retried_because(handle, "gather_crm") == ["TIMEOUT_TYPE_HEARTBEAT"], "retried after its heartbeat stopped"
        trace = json.loads((await stack.fetch("SELECT trace FROM decision_traces WHERE case_id = $1", handle.id))[0]["trace"])
        assert "ambiguous_or_missing_data" not in trace["reason_codes"], "the retried CRM call supplied the evidence"
        assert "**missing** crm" not in trace["brief"]


async def _retried_because(handle: WorkflowHandle, activity_type: str) -> list[str]:
    """Why each activity of that type was last retried: the timeout that ended the attempt the crash
    killed (a heartbeat timeout means it was retried within HEARTBEAT_TIMEOUT, not start-to-close)."""
    return [
        TimeoutType.Name(started.last_failure.timeout_failure_info.timeout_type)
        for started in await activity_starts(handle, activity_type)
    ]


async def _waiting_view(handle: WorkflowHandle):
    view = await case_view(handle)
    assert view.state.value == "waiting", view.state
    return view
