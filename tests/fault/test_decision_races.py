"""Races and floods of decisions on a dedicated stack with the worker as a subprocess: the same decision
sent three times at once through update and signal, a decision sent at the exact moment the escalation
timer fires (whichever wins, there is one outcome, recorded once, and the trace tells a consistent story),
and a flood of oversized bad signals (which must not keep the case from being recorded or shown)."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType, PendingWorkflowTaskState, WorkflowTaskFailedCause
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from demo.examples import example
from gates.cases import CaseKind
from gates.gate import Decision, DecisionReceipt
from gates.messages import RecordReceipt
from hitl_temporal import CaseClient, DecisionRejected
from tests.case_helpers import case_view, distinct, start_case, wait_until_waiting
from tests.fault.conftest import assert_decided_once, fault_stack, trace_table_locks
from tests.helpers import assert_eventually

pytestmark = [pytest.mark.fault, pytest.mark.slow]

# Renewals escalate from Finance reviewer to Finance director after 4 s (reminder at 1 s); the director
# and CFO levels are long, so the test decides there at leisure. Access keeps the bundled (hours) ladder.
RENEWAL_ESCALATES_AFTER = 4.0
DELAYS = {"discount_policy": (("1s", f"{RENEWAL_ESCALATES_AFTER:g}s"), ("5m", "10m"), ("5m", "10m"))}
LEVEL0_ONLY = "fin_rev_ana"  # finance_reviewers: may decide at the first level only
DIRECTOR = "fin_dir_omar"  # finance_directors: may decide at the first and second levels


@pytest.fixture(scope="module")
async def stack():
    async with fault_stack("decision-races", delays=DELAYS) as s:
        yield s


async def test_the_same_decision_three_times_through_update_and_signal_is_taken_once(stack):
    handle = await start_case(stack.client, example(CaseKind.ACCESS, human=True), stack.task_queue)
    await wait_until_waiting(handle)
    decision = Decision(outcome="approve", reviewer="sec_rev_eli", reason="the same call, sent six times")
    outcomes = await asyncio.gather(
        *[handle.execute_update("submit_decision", decision, result_type=DecisionReceipt) for _ in range(3)],
        *[handle.signal("decide", decision.model_dump(mode="json")) for _ in range(3)],
        return_exceptions=True,
    )
    # A submission that reaches the server as or after the case completes is refused by Temporal itself
    # (NOT_FOUND: "workflow execution already completed" / "workflow update was aborted by closing workflow").
    too_late = [o for o in outcomes if isinstance(o, RPCError) and o.status == RPCStatusCode.NOT_FOUND]
    accepted = [o for o in outcomes[:3] if isinstance(o, DecisionReceipt)]
    refused = [o for o in outcomes[:3] if isinstance(o, WorkflowUpdateFailedError)]
    delivered_signals = [o for o in outcomes[3:] if o is None]
    assert len(accepted) + len(refused) + len(delivered_signals) + len(too_late) == 6, outcomes
    assert all("already decided" in str(r.cause) for r in refused), [str(r.cause) for r in refused]

    await assert_decided_once(stack, handle, outcome="approve", decided_by="sec_rev_eli")
    view = await case_view(handle)
    # exactly one submission won; every other one is refused (update), kept as a rejected attempt (signal),
    # or refused by the server because the case had already completed
    assert 1 + len(refused) + len(view.rejected_attempts) + len(too_late) == 6, (outcomes, view.rejected_attempts)
    assert all("already decided" in a.error for a in view.rejected_attempts)
    assert view.decision is not None and view.decision.via == ("update" if accepted else "signal")


async def _send_at(handle: WorkflowHandle, via: str, deadline: datetime, offset: float | None) -> tuple[float, object]:
    """Send LEVEL0_ONLY's approval `offset` seconds after the escalation deadline (None: once the case has
    visibly escalated). Returns how late after the deadline it was sent, and the update's answer."""
    if offset is None:
        await assert_eventually(lambda: _escalated(handle), timeout=20, interval=0.05)
    else:
        await asyncio.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds() + offset))
    late = (datetime.now(UTC) - deadline).total_seconds()
    decision = Decision(outcome="approve", reviewer=LEVEL0_ONLY, reason="sent at the escalation deadline")
    if via == "signal":
        await handle.signal("decide", decision.model_dump(mode="json"))
        return late, None
    try:
        return late, await handle.execute_update("submit_decision", decision, result_type=DecisionReceipt)
    except WorkflowUpdateFailedError as err:
        return late, err


async def _escalated(handle: WorkflowHandle) -> None:
    view = await case_view(handle)
    assert view.gate is not None and view.gate.level == 1, "not escalated yet"


# (channel, seconds after the deadline): at the deadline and just after it either side may win;
# None sends once the escalation is visible, so the refused path is always exercised.
RACERS = [("signal", 0.0), ("update", 0.0), ("signal", 0.1), ("update", 0.1), ("signal", None), ("update", None)]


async def test_a_decision_racing_the_escalation_timer_has_one_consistent_outcome(stack):
    handles = [
        await start_case(stack.client, request, stack.task_queue) for request in distinct([CaseKind.RENEWAL] * len(RACERS))
    ]
    views = await asyncio.gather(*(wait_until_waiting(h) for h in handles))
    assert all(v.gate.level == 0 and LEVEL0_ONLY in v.gate.may_decide for v in views)
    sent = await asyncio.gather(
        *(_send_at(h, via, v.gate.next_deadline, offset) for h, (via, offset), v in zip(handles, RACERS, views))
    )
    raced = [late for (late, _), (_, offset) in zip(sent, RACERS) if offset is not None]
    assert all(late < 1.0 for late in raced), f"decisions were sent too late to race the timer: {raced}"
    channels = [via for via, _ in RACERS]

    winners = {"decision": 0, "escalation": 0}
    for handle, via, (_, answer) in zip(handles, channels, sent):

        async def settled(h: WorkflowHandle = handle):
            view = await case_view(h)
            assert view.decision is not None or view.rejected_attempts or (view.gate and view.gate.escalations)
            return view

        view = await assert_eventually(settled, timeout=20)
        if view.decision is not None or (via == "update" and isinstance(answer, DecisionReceipt)):
            # the decision came first: taken at the first level, and the gate never escalated
            winners["decision"] += 1
            trace = await assert_decided_once(stack, handle, outcome="approve", decided_by=LEVEL0_ONLY)
            assert trace["escalations"] == [] and trace["decided_level"] == 0, trace["escalations"]
            assert trace["rejected_attempts"] == []
            continue

        # the timer came first: the first-level reviewer is refused, with the reason, and nothing is recorded
        winners["escalation"] += 1
        refusal = f"{LEVEL0_ONLY} may not decide at level 2 (Finance director)"
        if via == "update":
            assert isinstance(answer, WorkflowUpdateFailedError) and refusal in str(answer.cause), answer
        else:
            view = await assert_eventually(lambda h=handle: _with_attempt(h), timeout=20)
            assert refusal in view.rejected_attempts[-1].error
        assert view.decision is None and view.gate.level == 1
        assert await stack.fetch("SELECT 1 FROM decision_traces WHERE case_id = $1", handle.id) == []
        await handle.execute_update(
            "submit_decision", Decision(outcome="approve", reviewer=DIRECTOR, reason="after the escalation")
        )
        trace = await assert_decided_once(stack, handle, outcome="approve", decided_by=DIRECTOR)
        [escalation] = trace["escalations"]
        assert (escalation["from_level"], escalation["to_level"]) == (0, 1)
        assert trace["decided_level"] == 1
        assert datetime.fromisoformat(escalation["at"]) <= datetime.fromisoformat(trace["decided_at"])
        attempts = trace["rejected_attempts"]
        if via == "signal":
            escalated_at = datetime.fromisoformat(escalation["at"])
            assert [(a["reviewer"], datetime.fromisoformat(a["at"]) >= escalated_at) for a in attempts] == [(LEVEL0_ONLY, True)]
        else:
            assert attempts == [], "a refused update leaves nothing behind"
    assert winners["escalation"] >= 2, winners  # at least the two sent after the visible escalation
    print(f"escalation race winners: {winners}; sent late by {[round(late, 3) for late, _ in sent]}")


async def _with_attempt(handle: WorkflowHandle):
    view = await case_view(handle)
    assert view.rejected_attempts, "the late signal is not yet kept as a rejected attempt"
    return view



# --- a flood of oversized bad signals --------------------------------------------------------------
# Anyone who can reach the Web UI can signal `decide` with any payload. Each bad one is kept as a
# rejected attempt *with its whole payload*, in the workflow state, in every `case_state` answer (twice:
# in the view and in its gate) and in the `record_decision` input. Temporal refuses payloads over 2 MB.

JUNK_REASON = "x" * 200_000  # far over the 4000-character limit of a reason: every one is refused


async def _send_junk(handle: WorkflowHandle, count: int) -> None:
    for i in range(count):
        await handle.signal("decide", {"outcome": "approve", "reviewer": "sec_rev_eli", "reason": JUNK_REASON, "n": i})


async def _workflow_task_failures(handle: WorkflowHandle) -> list[str]:
    history = await handle.fetch_history()
    return [
        f"{WorkflowTaskFailedCause.Name(e.workflow_task_failed_event_attributes.cause)}: "
        f"{e.workflow_task_failed_event_attributes.failure.application_failure_info.type}"
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]


async def test_a_flood_of_oversized_bad_signals_does_not_keep_the_decision_from_being_recorded(stack):
    """12 refused signals of 200 KB each (2.4 MB in all), then a valid decision: README promises that a
    malformed signal never breaks the case, so the decision must be recorded once, attempts included."""
    handle = await start_case(stack.client, example(CaseKind.ACCESS, human=True), stack.task_queue)
    await wait_until_waiting(handle)
    await _send_junk(handle, 12)
    await handle.signal("decide", {"outcome": "approve", "reviewer": "sec_rev_eli", "reason": "the real decision"})
    try:
        await asyncio.wait_for(handle.result(), 20)
    except TimeoutError:
        failures = await _workflow_task_failures(handle)
        rows = await stack.fetch("SELECT 1 FROM decision_traces WHERE case_id = $1", handle.id)
        await handle.terminate("fault test: wedged by oversized rejected attempts")
        pytest.fail(
            f"the decided case never finished; {len(rows)} decision rows; its workflow task failed "
            f"{len(failures)} times ({sorted(set(failures))}): the record_decision input carries every "
            "rejected payload and exceeds Temporal's 2 MB payload limit"
        )
    trace = await assert_decided_once(stack, handle, outcome="approve", decided_by="sec_rev_eli")
    assert len(trace["rejected_attempts"]) == 12


async def test_the_case_view_still_answers_after_a_flood_of_oversized_bad_signals(stack):
    """Six refused signals of 200 KB (1.2 MB): `case_state` (what `hitl show`, the UI's details and
    services read) must keep answering while the case waits, and the case still decides and records."""
    handle = await start_case(stack.client, example(CaseKind.ACCESS, human=True), stack.task_queue)
    await wait_until_waiting(handle)
    await _send_junk(handle, 6)

    async def all_refused():
        try:
            view = await case_view(handle)
        except WorkflowQueryFailedError as err:
            return err
        assert len(view.rejected_attempts) == 6, len(view.rejected_attempts)
        return view

    answer = await assert_eventually(all_refused, timeout=20)
    await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_rev_eli", reason="real"))
    trace = await assert_decided_once(stack, handle, outcome="approve", decided_by="sec_rev_eli")
    assert len(trace["rejected_attempts"]) == 6
    if isinstance(answer, WorkflowQueryFailedError):
        pytest.fail(f"case_state fails while the case waits with 6 rejected attempts of 200 KB: {answer}")
    assert answer.state.value == "waiting" and len(answer.gate.rejected_attempts) == 6


# --- a decision arriving while the case completes ---------------------------------------------------


LATE_REVIEWERS = ["sec_rev_zoe", "sec_lead_noor", "sec_lead_viktor", "ciso_sam"]


async def test_a_decision_arriving_while_the_case_completes_is_refused_as_already_decided(stack, monkeypatch):
    """Other reviewers' `hitl approve|reject` reach the server while the workflow task that completes the
    case is in flight. Temporal aborts such an update with NOT_FOUND "workflow update was aborted by
    closing workflow" when the call is in flight at that moment (it is retried while only admitted, so
    whether one is in flight is timing). Each reviewer must hear that the case is already decided, not
    that it does not exist.

    The live part makes that moment last: the worker is frozen (SIGSTOP) with its pollers outstanding,
    the decision's record held in PostgreSQL and its activity completed out of band, so the completing
    workflow task is handed to the frozen worker and stays in flight while the late decisions arrive.
    The second part hands CaseClient that exact server error on the now decided case, so the
    expectation does not depend on the timing."""
    handle = await start_case(stack.client, example(CaseKind.ACCESS, human=True), stack.task_queue)
    await wait_until_waiting(handle)
    worker = stack.worker.process
    cases = CaseClient(stack.client, stack.task_queue)
    lock = await asyncpg.connect(stack.database_url)
    tx = lock.transaction()
    await tx.start()
    await lock.execute("LOCK TABLE decision_traces IN SHARE MODE")
    frozen = False
    try:
        await handle.execute_update("submit_decision", Decision(outcome="approve", reviewer="sec_rev_eli", reason="first"))
        await assert_eventually(lambda: _record_insert(lock, waiting=True), timeout=20)
        # the id the worker's INSERT will take (it has not drawn one yet; nothing else writes traces meanwhile)
        trace_id = await lock.fetchval(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM decision_traces_id_seq"
        )
        worker.send_signal(signal.SIGSTOP)
        frozen = True
        await tx.rollback()  # the frozen worker's INSERT gets its lock, then waits for the worker to go on
        await assert_eventually(lambda: _record_insert(lock, waiting=False), timeout=20)
        description = await handle.describe()
        await stack.client.get_async_activity_handle(
            workflow_id=handle.id, run_id=description.run_id, activity_id="record-decision"
        ).complete(RecordReceipt(trace_id=trace_id, newly_recorded=True, otel_trace_id=None))

        async def task_in_flight() -> None:
            pending = (await handle.describe()).raw_description.pending_workflow_task
            assert pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED, pending

        await assert_eventually(task_in_flight, timeout=30)
        late = [
            asyncio.create_task(cases.decide(handle.id, Decision(outcome="reject", reviewer=r, reason="late")))
            for r in LATE_REVIEWERS
        ]
        await asyncio.sleep(1.0)  # with the server, waiting for the in-flight task
        assert not any(t.done() for t in late), late
    finally:
        if frozen:
            worker.send_signal(signal.SIGCONT)
        await lock.close()

    outcomes = await asyncio.gather(*late, return_exceptions=True)
    trace = await assert_decided_once(stack, handle, outcome="approve", decided_by="sec_rev_eli")
    assert trace["rejected_attempts"] == []

    async def aborted_by_closing(*args, **kwargs):
        raise RPCError("workflow update was aborted by closing workflow", RPCStatusCode.NOT_FOUND, b"")

    monkeypatch.setattr(WorkflowHandle, "execute_update", aborted_by_closing)
    try:
        await cases.decide(handle.id, Decision(outcome="reject", reviewer="sec_rev_zoe", reason="late"))
    except Exception as err:  # noqa: BLE001 - judged below
        outcomes.append(err)
    monkeypatch.undo()

    wrong = [
        f"{type(e).__name__}: {e} (from {type(e.__cause__).__name__} "
        f"{getattr(getattr(e.__cause__, 'status', None), 'name', '')}: {e.__cause__})"
        for e in outcomes
        if not (isinstance(e, DecisionRejected) and "already decided" in str(e))
    ]
    assert not wrong, "\n".join(wrong)


async def _record_insert(conn: asyncpg.Connection, *, waiting: bool) -> None:
    """The worker's `record_decision` INSERT waits for our lock, or holds its own (open transaction)."""
    assert await trace_table_locks(conn) == ((1, 0) if waiting else (0, 1))
