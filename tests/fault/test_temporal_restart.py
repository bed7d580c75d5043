"""The Temporal server stops (SIGTERM) and comes back (same db file, same port) while cases wait on their
reminder and escalation timers: the timers fire after the restart, and every case times out exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from activities.policy_files import bundled_gates
from demo.examples import example
from gates.cases import CaseKind
from tests.case_helpers import start_case, wait_until_waiting
from tests.fault.conftest import assert_decided_once, fault_stack

pytestmark = [pytest.mark.fault, pytest.mark.slow]

# Level 1 and 2 outlive the outage; the last level is short so the cases end soon after.
DELAYS = (("3s", "6s"), ("3s", "6s"), ("1s", "2s"))
OUTAGE_SECONDS = 5  # longer than the first reminder: its deadline passes while the server is down


@pytest.fixture(scope="module")
async def stack():
    async with fault_stack("temporal-restart", delays=DELAYS) as s:
        yield s


async def test_reminder_and_escalation_timers_fire_after_a_temporal_restart(stack):
    kinds = [CaseKind.RENEWAL, CaseKind.PROCUREMENT, CaseKind.ACCESS]
    handles = [await start_case(stack.client, example(kind, human=True), stack.task_queue) for kind in kinds]
    views = [await wait_until_waiting(handle) for handle in handles]
    assert all(not v.gate.reminders and not v.gate.escalations for v in views), "a timer fired before the outage"
    worker_pid = stack.worker.process.pid

    stopped_at = datetime.now(UTC)
    stack.stop_temporal()
    await asyncio.sleep(OUTAGE_SECONDS)
    assert stack.worker.alive(), f"the worker died while Temporal was down:\n{stack.log_tails()}"
    outage_end = time.monotonic()
    stack.start_temporal()
    restarted_at = datetime.now(UTC)
    await stack.wait_for_frontend()
    assert time.monotonic() - outage_end < 60

    for kind, handle, view in zip(kinds, handles, views):
        gate = bundled_gates()[kind]
        trace = await assert_decided_once(stack, handle, outcome="reject", decided_by=f"timeout:{gate}", timeout=60)
        start_level = view.gate.level
        levels = list(range(start_level, 3))
        # every level of the ladder was reminded, every level but the last escalated, the last timed out
        assert [r["level"] for r in trace["reminders"]] == levels, trace["reminders"]
        assert [(e["from_level"], e["to_level"]) for e in trace["escalations"]] == [(lvl, lvl + 1) for lvl in levels[:-1]]
        first_reminder = datetime.fromisoformat(trace["reminders"][0]["at"])
        assert first_reminder > stopped_at, "the first reminder must have fired after the outage began"
        first_escalation = datetime.fromisoformat(trace["escalations"][0]["at"])
        assert first_escalation >= restarted_at.replace(microsecond=0), "the first escalation fired after the restart"
        assert trace["decided_level"] == 2 and trace["decided_via"] == "timeout"

        outbox = await stack.fetch(
            "SELECT kind, level FROM notifications WHERE case_id = $1 AND kind <> 'decided' ORDER BY id", handle.id
        )
        sent = sorted((row["kind"], row["level"]) for row in outbox)
        expected = sorted(
            [("reminder", lvl) for lvl in levels] + [("escalation", lvl + 1) for lvl in levels[:-1]] + [("timeout", 2)]
        )
        assert sent == expected, f"{handle.id}: outbox {sent}"

    assert stack.worker.process.pid == worker_pid and stack.worker.alive(), "the same worker carried on after the restart"
