"""Cases that ended without a recorded outcome: terminated, timed out, or failed (a refused start among
them). Temporal closes such a workflow with no result, so nothing reaches PostgreSQL; what an operator
sees instead is checked here on the real dev server: `hitl show` says the case ended and why (a query
would replay the history and show it as still waiting), `start_case` opens the real case over such a
run, `hitl ops stuck` lists them with why and whether a trace exists, `hitl report` counts them."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.policy_files import bundled_gates
from demo.examples import example
from gates.cases import CaseKind, CaseRequest
from hitl_temporal import CaseClient, CaseEnded
from hitl_temporal.client import workflow_type_for
from hitl_temporal.ops import count_ended, find_ended
from tests.case_helpers import wait_until_waiting
from tests.helpers import assert_eventually, new_worker, run_hitl, unique_task_queue
from workers.devstack import free_port

VISIBILITY_TIMEOUT = 20
CLOSED_AT = r"at \d{4}-\d\d-\d\d \d\d:\d\dZ"


def unique() -> str:
    return uuid.uuid4().hex[:8]


def renewal(tag: str) -> CaseRequest:
    return example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{tag}")


async def waiting_case(cases: CaseClient, request: CaseRequest) -> WorkflowHandle:
    started = await cases.start_case(request)
    assert started.created, started
    handle = cases.handle(started.case_id)
    await wait_until_waiting(handle)
    return handle


async def refused_start(client: Client, task_queue: str, case_id: str, payload: CaseRequest) -> WorkflowHandle:
    """Someone else's payload started under `case_id` (as `temporal workflow start` allows): the case refuses it."""
    handle = await client.start_workflow(workflow_type_for(payload.kind), payload, id=case_id, task_queue=task_queue)
    await closed_as(handle, WorkflowExecutionStatus.FAILED)
    return handle


async def timed_out(client: Client, request: CaseRequest) -> tuple[WorkflowHandle, str]:
    """A start of our type with a starter-set execution timeout, on a task queue no worker polls (returned),
    so the case never runs to refuse it: Temporal times it out."""
    queue = unique_task_queue("nobody")
    handle = await client.start_workflow(
        workflow_type_for(request.kind), request, id=request.case_id(), task_queue=queue, execution_timeout=timedelta(seconds=2)
    )
    await closed_as(handle, WorkflowExecutionStatus.TIMED_OUT, timeout=30)
    return handle, queue


async def closed_as(handle: WorkflowHandle, status: WorkflowExecutionStatus, timeout: float = 30) -> None:
    async def closed():
        assert (await handle.describe()).status == status

    await assert_eventually(closed, timeout=timeout, interval=0.3)


async def test_a_terminated_case_is_shown_as_ended_and_starting_it_again_opens_the_case(temporal_env, world_pool, cli_env):
    client = temporal_env.client
    tag = unique()
    async with new_worker(client, world_pool) as worker:
        cases = CaseClient(client, worker.task_queue)
        env = cli_env(worker.task_queue)
        request = renewal(tag)
        first = await waiting_case(cases, request)
        await first.terminate(reason="duplicate of another request")

        shown = await run_hitl(env, "show", f"acme_enterprise/fy26-{tag}")
        with pytest.raises(CaseEnded) as ended:
            await cases.get_case(request.case_id())
        again = await cases.start_case(request)
        await wait_until_waiting(cases.handle(request.case_id()))
        view = await cases.get_case(request.case_id())  # the new run, as it is
        running = await cases.start_case(request)  # running now: the existing case

        decided = example(CaseKind.RENEWAL, human=False, renewal=f"fy26-{tag}")  # decided by policy alone
        await cases.start_case(decided)
        await cases.wait_for_decision(decided.case_id())
        decided_again = await cases.start_case(decided)
        await cases.handle(request.case_id()).terminate(reason="test over")

    assert shown.returncode == 1 and shown.stdout == ""
    assert len(shown.stderr.strip().splitlines()) == 1
    assert re.fullmatch(
        rf"hitl: case {re.escape(request.case_id())} ended without a recorded outcome: terminated {CLOSED_AT} "
        rf"by {re.escape(client.identity)}: duplicate of another request",
        shown.stderr.strip(),
    ), shown.stderr
    assert (ended.value.status, str(ended.value)) == ("terminated", shown.stderr.strip().removeprefix("hitl: "))
    assert (again.created, again.replaced) == (True, "terminated")
    assert view.state.value == "waiting"
    assert (running.created, running.replaced) == (False, None)
    assert (decided_again.created, decided_again.replaced) == (False, None), "a decided case stays decided"


async def test_a_refused_start_under_the_case_id_does_not_block_the_real_case(temporal_env, world_pool, cli_env):
    client = temporal_env.client
    tag = unique()
    async with new_worker(client, world_pool) as worker:
        cases = CaseClient(client, worker.task_queue)
        real = renewal(tag)
        # a within-policy payload under the privileged request's case ID
        hijack = example(CaseKind.RENEWAL, human=False, renewal=f"fy26-other-{tag}")
        await refused_start(client, worker.task_queue, real.case_id(), hijack)

        shown = await run_hitl(cli_env(worker.task_queue), "show", real.case_id())
        started = await cases.start_case(real)
        view = await wait_until_waiting(cases.handle(real.case_id()))
        await cases.handle(real.case_id()).terminate(reason="test over")

    assert shown.returncode == 1 and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
    line = shown.stderr.strip()
    assert line.startswith(f"hitl: case {real.case_id()} ended without a recorded outcome: failed "), line
    assert "CaseRefused: " in line and "is not this case's ID" in line, line
    assert (started.created, started.replaced) == (True, "failed")
    assert (view.case_id, view.state.value, view.gate.gate) == (real.case_id(), "waiting", "finance")


async def test_a_timed_out_case_is_shown_with_its_timeout_and_can_be_started_again(temporal_env, world_pool, cli_env):
    client = temporal_env.client
    tag = unique()
    request = example(CaseKind.PROCUREMENT, human=True, request_id=f"pr-{tag}")
    await timed_out(client, request)
    async with new_worker(client, world_pool) as worker:
        cases = CaseClient(client, worker.task_queue)
        shown = await run_hitl(cli_env(worker.task_queue), "show", request.case_id())
        started = await cases.start_case(request)
        await wait_until_waiting(cases.handle(request.case_id()))
        await cases.handle(request.case_id()).terminate(reason="test over")

    assert shown.returncode == 1, shown.stdout
    assert re.fullmatch(
        rf"hitl: case {re.escape(request.case_id())} ended without a recorded outcome: timed out {CLOSED_AT} "
        r"\(execution timeout 2s, set by whoever started it\)",
        shown.stderr.strip(),
    ), shown.stderr
    assert (started.created, started.replaced) == (True, "timed out")


def cells(line: str) -> list[str]:
    """The cells of one line of a rich table (box-drawn: │ between cells)."""
    return [cell.strip() for cell in line.strip().strip("│").split("│")]


async def insert_trace(pool, case_id: str, run_id: str) -> None:
    """A decision trace written for this run (as when a case is terminated while it completes)."""
    now = datetime.now(UTC)
    await pool.execute(
        """INSERT INTO decision_traces (decision_key, case_id, run_id, trace_name, kind, business_key, policy, gate,
               outcome, decided_by, decided_via, reason, opened_at, decided_at, trace)
           VALUES ($1, $2, $3, 'renewal_discount_exception', 'renewal_discount_exception', 'x', 'discount_policy_v3_2',
               'finance', 'approve', 'fin_rev_ana', 'update', 'ok', $4, $4, '{}'::jsonb)""",
        f"{case_id}#{run_id}",
        case_id,
        run_id,
        now,
    )


async def test_ops_stuck_and_report_show_cases_that_ended_without_a_recorded_outcome(temporal_env, world_pool, cli_env):
    client = temporal_env.client
    tag = unique()
    t0 = datetime.now(UTC)  # the same clock as the server: what closed before this is not ours
    async with new_worker(client, world_pool) as worker:
        queue = worker.task_queue
        cases = CaseClient(client, queue)
        terminated = await waiting_case(cases, renewal(tag))
        await terminated.terminate(reason="customer withdrew the request")
        terminated_run = (await terminated.describe()).run_id
        await insert_trace(world_pool, terminated.id, terminated_run)
        refused = await refused_start(
            client, queue, renewal(f"{tag}-b").case_id(), example(CaseKind.RENEWAL, human=False, renewal=f"fy26-c-{tag}")
        )
    late, nobody = await timed_out(client, example(CaseKind.PROCUREMENT, human=True, request_id=f"pr-{tag}"))

    expected = {
        "renewal_discount_exception": {"terminated": 1, "timed_out": 0, "failed": 1, "refused_starts": 1},
        "procurement_threshold_breach": {"terminated": 0, "timed_out": 1, "failed": 0, "refused_starts": 0},
        "access_escalation": {"terminated": 0, "timed_out": 0, "failed": 0, "refused_starts": 0},
    }

    async def all_visible():
        report = await find_ended(client, since=t0, task_queue=queue)
        assert [c.case_id for c in report.ended] == [refused.id, terminated.id], report.ended
        counts = {
            e.kind: e.model_dump(include={"terminated", "timed_out", "failed", "refused_starts"})
            for e in await count_ended(client, since=t0, gate_of=bundled_gates())
        }
        assert counts == expected, counts

    await assert_eventually(all_visible, timeout=VISIBILITY_TIMEOUT, interval=0.5)
    env = cli_env(queue)
    no_database = {**env, "HITL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/hitl"}
    as_json, table, unreachable, timed_out_json, report_json, report_text = await asyncio.gather(
        run_hitl(env, "ops", "stuck", "--task-queue", queue, "--json"),
        run_hitl(env, "ops", "stuck", "--task-queue", queue),
        run_hitl(no_database, "ops", "stuck", "--task-queue", queue),
        run_hitl(env, "ops", "stuck", "--task-queue", nobody, "--json"),
        run_hitl(env, "report", "--since", "1h", "--json"),
        run_hitl(env, "report"),
    )

    # --json: the ended section beside the stuck one, with why and the trace check
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["stuck"] == [] and document["database_problem"] is None
    by_id = {c["case_id"]: c for c in document["ended"]}
    assert list(by_id) == [refused.id, terminated.id]  # newest first
    gone = by_id[terminated.id]
    assert (gone["status"], gone["refused_start"], gone["run_id"], gone["trace_recorded"]) == (
        "terminated", False, terminated_run, True
    )
    assert re.fullmatch(
        rf"terminated {CLOSED_AT} by {re.escape(client.identity)}: customer withdrew the request", gone["why"]
    ), gone["why"]
    hijack = by_id[refused.id]
    assert (hijack["status"], hijack["refused_start"], hijack["trace_recorded"]) == ("failed", True, False)
    assert "CaseRefused: " in hijack["why"] and "is not this case's ID" in hijack["why"], hijack["why"]
    [late_case] = json.loads(timed_out_json.stdout)["ended"]
    assert (late_case["case_id"], late_case["status"]) == (late.id, "timed out")
    assert "execution timeout 2s" in late_case["why"]

    # the table an operator reads
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "no stuck cases among" in text
    assert (
        "2 cases ended without a recorded outcome in the last 7d "
        "(this namespace keeps closed workflows 1d: older ones are gone)" in text
    )
    rows = [cells(line) for line in text.splitlines() if f" {refused.id} " in line or f" {terminated.id} " in line]
    assert [row[0] for row in rows] == [refused.id, terminated.id], text  # whole case IDs, newest first
    assert (rows[0][1], rows[0][-1]) == ("refused start", "none"), rows[0]
    assert (rows[1][1], rows[1][-1]) == ("terminated", "recorded"), rows[1]

    # PostgreSQL unreachable: one line says so, and the cases are still listed
    assert unreachable.returncode == 0, unreachable.stderr
    problem = [line for line in unreachable.stdout.splitlines() if line.startswith("decision traces not checked: ")]
    assert len(problem) == 1 and "cannot reach PostgreSQL" in problem[0], unreachable.stdout
    assert refused.id in unreachable.stdout and terminated.id in unreachable.stdout

    # hitl report: per kind and gate, by status (other tests' cases may have ended within the hour too)
    assert report_json.returncode == 0, report_json.stderr
    ended = {e["kind"]: e for e in json.loads(report_json.stdout)["ended"]}
    assert [(e["kind"], e["gate"]) for e in ended.values()] == [
        ("renewal_discount_exception", "finance"), ("procurement_threshold_breach", "ops"), ("access_escalation", "security")
    ]
    for kind, counts in expected.items():
        for name, at_least in counts.items():
            assert ended[kind][name] >= at_least, (kind, name, ended[kind])
    assert report_text.returncode == 0, report_text.stderr
    assert "Ended without a recorded outcome, since " in report_text.stdout
    assert "this namespace keeps closed workflows 1d: older ones are gone" in report_text.stdout  # --since 30d
    section = report_text.stdout.split("Ended without a recorded outcome", 1)[1]
    table_rows = [cells(line) for line in section.splitlines() if "_" in line and "│" in line]
    assert [row[:2] for row in table_rows] == [
        ["renewal_discount_exception", "finance"], ["procurement_threshold_breach", "ops"], ["access_escalation", "security"]
    ], section
    assert all(cell.isdigit() for row in table_rows for cell in row[2:]), section
