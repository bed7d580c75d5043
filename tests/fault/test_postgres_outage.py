"""PostgreSQL stops (fast shutdown) while decisions are being recorded and stays down while more are
taken: `record_decision` retries (RECORD_RETRY: unlimited attempts, at most 30 s apart), and once the
server is back (same data directory, same port, a few seconds later) every case is recorded exactly once."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from demo.examples import FIRST_REVIEWER
from gates.cases import CaseKind
from gates.gate import Decision, DecisionReceipt
from tests.case_helpers import distinct, start_case, wait_until_waiting
from tests.fault.conftest import (
    activity_attempts,
    assert_decided_once,
    fault_stack,
    pending_attempts,
    trace_table_locks,
)
from tests.helpers import assert_eventually

pytestmark = [pytest.mark.fault, pytest.mark.slow]

MIN_OUTAGE_SECONDS = 3.0


@pytest.fixture(scope="module")
async def stack():
    async with fault_stack("postgres-outage") as s:
        yield s


def _decision(kind: CaseKind) -> Decision:
    return Decision(outcome="approve", reviewer=FIRST_REVIEWER[kind], reason="recorded across a database outage")


async def test_decisions_are_recorded_exactly_once_across_a_postgres_outage(stack):
    kinds = [CaseKind.RENEWAL, CaseKind.ACCESS, CaseKind.PROCUREMENT, CaseKind.RENEWAL, CaseKind.ACCESS]
    handles = [await start_case(stack.client, request, stack.task_queue) for request in distinct(kinds)]
    await asyncio.gather(*(wait_until_waiting(h) for h in handles))
    in_flight, during = list(zip(kinds, handles))[:2], list(zip(kinds, handles))[2:]

    # Being recorded when the server goes down: their INSERTs wait behind our lock, inside their
    # transactions, and the fast shutdown ends those transactions.
    lock = await asyncpg.connect(stack.database_url)
    try:
        await lock.execute("BEGIN; LOCK TABLE decision_traces IN SHARE MODE")
        for kind, handle in in_flight:
            await handle.execute_update("submit_decision", _decision(kind))

        async def inserts_waiting() -> None:
            assert await trace_table_locks(lock) == (len(in_flight), 0)

        await assert_eventually(inserts_waiting, timeout=20)
        assert stack.stop_postgres() == 0, "PostgreSQL did not shut down cleanly"
    finally:
        lock.terminate()
    down_since = time.monotonic()

    # Decided while the server is down: the update answers (it needs no database), the record cannot.
    for kind, handle in during:
        receipt = await handle.execute_update("submit_decision", _decision(kind), result_type=DecisionReceipt)
        assert receipt.accepted

    async def recording_retries() -> None:
        for _, handle in in_flight + during:
            attempts = await pending_attempts(handle, "record_decision")
            assert attempts and attempts[0] >= 2, f"{handle.id}: record_decision attempts {attempts}"

    await assert_eventually(recording_retries, timeout=20, interval=0.2)
    await asyncio.sleep(max(0.0, MIN_OUTAGE_SECONDS - (time.monotonic() - down_since)))
    stack.start_postgres()  # same data directory, same port

    for kind, handle in in_flight + during:
        await assert_decided_once(stack, handle, outcome="approve", decided_by=FIRST_REVIEWER[kind], timeout=60)
        [attempt] = await activity_attempts(handle, "record_decision")
        assert attempt >= 2, "the record that failed in the outage succeeded on a retry"
