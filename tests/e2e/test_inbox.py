"""`hitl inbox`: the cases waiting for a decision, from Temporal visibility queries.

Real dev server (shared by the session: other tests' cases may be waiting too, so every assertion
looks at this test's own case IDs, and lists with --all, or uses a gate of its own), a real worker
and the seeded PostgreSQL directory. Visibility is eventually consistent: the tests poll the
in-process client until the server shows the state they set up, then run the CLI once against that
settled state."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.store.directory import reviewer_groups
from demo.examples import example
from gates import search_attributes as sa
from gates.cases import CaseKind, RenewalDiscountRequest
from gates.gate import Decision, OperatorAction
from hitl_temporal import CaseClient
from hitl_temporal.cli.render import inbox_footer, inbox_table, plain
from hitl_temporal.inbox import (
    CutoffSearch,
    InboxItem,
    inbox_query,
)
from hitl_temporal.ops import StuckKind, find_stuck
from tests.case_helpers import start_case, wait_until_waiting
from tests.helpers import assert_eventually, new_worker, run_hitl, unique_task_queue

VISIBILITY_TIMEOUT = 20


hitl = run_hitl



def unique() -> str:
    return uuid.uuid4().hex[:8]


async def inbox_ids(cases: CaseClient, **filters) -> list[str]:
    return [item.case_id for item in (await cases.inbox(limit=None, **filters)).items]


async def eventually_listed(cases: CaseClient, present: list[str], absent: list[str] = (), **filters) -> None:
    """Poll visibility until `present` are listed (in this order) and `absent` are not."""

    async def settled():
        ids = await inbox_ids(cases, **filters)
        assert [i for i in ids if i in present] == present, f"listed: {ids}"
        assert not set(absent) & set(ids), f"listed: {ids}"

    await assert_eventually(settled, timeout=VISIBILITY_TIMEOUT, interval=0.3)


def ids_in_json(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [item["case_id"] for item in json.loads(result.stdout)]


async def test_inbox_lists_waiting_cases_oldest_first_and_leaves_out_decided_and_policy_decided_cases(
    temporal_env, world_pool, cli_env
):
    client = temporal_env.client
    tag = unique()
    async with new_worker(client, world_pool) as worker:
        cases = CaseClient(client, worker.task_queue)
        env = cli_env(worker.task_queue)
        renewal = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{tag}"), worker.task_queue)
        await wait_until_waiting(renewal)
        purchase = await start_case(
            client, example(CaseKind.PROCUREMENT, human=True, request_id=f"pr-{tag}"), worker.task_queue
        )
        await wait_until_waiting(purchase)
        decided = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal=f"fy27-{tag}"), worker.task_queue)
        await wait_until_waiting(decided)
        await decided.execute_update("submit_decision", Decision(outcome="approve", reviewer="fin_rev_ana", reason="ok"))
        by_policy = await start_case(
            client, example(CaseKind.RENEWAL, human=False, renewal=f"fy26-{tag}"), worker.task_queue
        )
        await by_policy.result()
        await decided.result()
        mine = [renewal.id, purchase.id, decided.id, by_policy.id]
        try:
            await eventually_listed(cases, [renewal.id, purchase.id], [decided.id, by_policy.id])

            table, as_json, ops, renewals, none = await asyncio.gather(
                hitl(env, "inbox", "--all"),
                hitl(env, "inbox", "--all", "--json"),
                hitl(env, "inbox", "--gate", "ops", "--all", "--json"),
                hitl(env, "inbox", "--kind", "renewal", "--all", "--json"),
                hitl(env, "inbox", "--gate", "finance", "--kind", "procurement", "--all"),
            )
        finally:
            for handle in (renewal, purchase):
                await handle.terminate("test over")

    # the table, piped: plain text, one line per case, full case IDs, oldest first
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CASE", "KIND", "ASK", "GATE", "LEVEL", "AGE", "NEXT"]
    rows = {case_id: line for line in lines for case_id in mine if line.startswith(case_id + " ")}
    assert list(rows) == [renewal.id, purchase.id], table.stdout
    assert lines.index(rows[renewal.id]) < lines.index(rows[purchase.id])
    assert lines[-1] == f"{len(lines) - 2} waiting, oldest first", lines[-1]  # --all: every case, no hint
    renewal_row = rows[renewal.id]
    for text in (
        "renewal",
        f"28% renewal discount for acme_enterprise (fy26-{tag})",
        "finance",
        "1 finance_reviewers",
        "escalates in 23h",
    ):
        assert text in renewal_row, renewal_row
    purchase_row = rows[purchase.id]
    for text in (
        "procurement",
        f"180,000.00 USD software purchase from northwind_cloud (pr-{tag})",
        "ops",
        "2 ops_vp_approvers",
        "escalates in 1d 23h",
    ):
        assert text in purchase_row, purchase_row

    # --json: a list of objects, the same cases in the same order
    items = [item for item in json.loads(as_json.stdout) if item["case_id"] in mine]
    assert [item["case_id"] for item in items] == [renewal.id, purchase.id]
    first = InboxItem.model_validate(items[0])
    assert (first.kind, first.gate, first.escalation_level, first.reviewer_group) == (
        "renewal_discount_exception", "finance", 0, "finance_reviewers"
    )
    assert first.eligible_groups == ["finance_reviewers", "finance_directors", "cfo_office"]
    assert (first.requester, first.business_key, first.deadline_action) == ("ae_sam", f"acme_enterprise/fy26-{tag}", "escalates")
    assert first.ask == f"28% renewal discount for acme_enterprise (fy26-{tag})"
    assert first.next_deadline - first.gate_opened_at == timedelta(hours=24)
    assert 0 <= first.age_seconds < 120 and 24 * 3600 - 120 < first.time_left_seconds <= 24 * 3600
    assert set(items[0]) >= {
        "case_id",
        "kind",
        "ask",
        "gate",
        "escalation_level",
        "age_seconds",
        "time_left_seconds",
        "next_deadline",
    }

    # filters
    assert [i for i in ids_in_json(ops) if i in mine] == [purchase.id]
    assert [i for i in ids_in_json(renewals) if i in mine] == [renewal.id]
    assert none.returncode == 0 and not any(case_id in none.stdout for case_id in mine)


async def test_reviewer_inbox_shows_what_they_may_decide_now_and_never_their_own_request(temporal_env, world_pool, cli_env):
    client = temporal_env.client
    tag = unique()
    async with new_worker(client, world_pool) as worker:
        cases = CaseClient(client, worker.task_queue)
        env = cli_env(worker.task_queue)
        theirs = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal=f"fy26-{tag}"), worker.task_queue)
        await wait_until_waiting(theirs)
        # requested by a Finance reviewer: their own group may decide it, they may not
        own = await start_case(
            client, example(CaseKind.RENEWAL, human=True, renewal=f"fy27-{tag}", requester="fin_rev_ben"), worker.task_queue
        )
        await wait_until_waiting(own)
        ana, ben = await reviewer_groups(world_pool, "fin_rev_ana"), await reviewer_groups(world_pool, "fin_rev_ben")
        try:
            await eventually_listed(cases, [theirs.id, own.id], reviewer="fin_rev_ana", reviewer_groups=ana)
            await eventually_listed(cases, [theirs.id], [own.id], reviewer="fin_rev_ben", reviewer_groups=ben)
            ana_before, ben_before = await asyncio.gather(
                hitl(env, "inbox", "--reviewer", "fin_rev_ana", "--all", "--json"),
                hitl(env, "inbox", "--reviewer", "fin_rev_ben", "--all", "--json"),
            )

            # escalated to the Finance directors: no longer fin_rev_ana's to decide
            await theirs.execute_update(
                "operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="deal closes today")
            )
            omar = await reviewer_groups(world_pool, "fin_dir_omar")
            await eventually_listed(cases, [own.id], [theirs.id], reviewer="fin_rev_ana", reviewer_groups=ana)
            await eventually_listed(cases, [theirs.id], reviewer="fin_dir_omar", reviewer_groups=omar)
            ana_after, omar_after, stale, unknown = await asyncio.gather(
                hitl(env, "inbox", "--reviewer", "fin_rev_ana", "--all", "--json"),
                hitl(env, "inbox", "--reviewer", "fin_dir_omar", "--all", "--json"),
                hitl(env, "approve", theirs.id, "--as", "fin_rev_ana", "--reason", "from the old inbox"),
                hitl(env, "inbox", "--reviewer", f"nobody_{tag}"),
            )
        finally:
            for handle in (theirs, own):
                await handle.terminate("test over")

    mine = {theirs.id, own.id}
    assert [i for i in ids_in_json(ana_before) if i in mine] == [theirs.id, own.id]
    assert [i for i in ids_in_json(ben_before) if i in mine] == [theirs.id]
    assert [i for i in ids_in_json(ana_after) if i in mine] == [own.id]
    escalated = [item for item in json.loads(omar_after.stdout) if item["case_id"] == theirs.id]
    assert len(escalated) == 1
    assert (escalated[0]["escalation_level"], escalated[0]["reviewer_group"]) == (1, "finance_directors")
    assert escalated[0]["eligible_groups"] == ["finance_directors", "cfo_office"]
    # deciding from a stale view is refused with the reason, in one line
    assert stale.returncode == 1 and len(stale.stderr.strip().splitlines()) == 1
    assert "fin_rev_ana may not decide at level 2" in stale.stderr
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == f"hitl: no person 'nobody_{tag}' in the directory"


# -- the oldest page ---------------------------------------------------------------------------


async def start_stand_in(
    client: Client, task_queue: str, gate: str, name: str, opened: datetime, *, workflow_type: str = "RenewalDiscountException"
) -> WorkflowHandle:
    """A running workflow of one of our types with a waiting case's search attributes, set at start, on
    a task queue no worker polls (its CaseClient uses that queue): cases with any opening time, in
    seconds rather than the minute real cases would take."""
    attributes = TypedSearchAttributes([
        SearchAttributePair(sa.CASE_KIND, "renewal_discount_exception"),
        SearchAttributePair(sa.BUSINESS_KEY, f"{name}/fy26"),
        SearchAttributePair(sa.CASE_STATE, "waiting"),
        SearchAttributePair(sa.GATE, gate),
        SearchAttributePair(sa.REQUESTER, "ae_sam"),
        SearchAttributePair(sa.REVIEWER_GROUP, "finance_reviewers"),
        SearchAttributePair(sa.ESCALATION_LEVEL, 0),
        SearchAttributePair(sa.ASK, f"28% renewal discount for {name} (fy26)"),
        SearchAttributePair(sa.ELIGIBLE_GROUPS, ["finance_reviewers", "finance_directors"]),
        SearchAttributePair(sa.REASON_CODES, ["threshold_breach"]),
        SearchAttributePair(sa.GATE_OPENED_AT, opened),
        SearchAttributePair(sa.NEXT_DEADLINE, opened + timedelta(hours=24)),
    ])
    return await client.start_workflow(
        workflow_type, id=f"renewal_discount_exception:{name}/fy26", task_queue=task_queue, search_attributes=attributes
    )


async def test_the_inbox_shows_the_oldest_page_and_the_total(temporal_env, cli_env):
    client = temporal_env.client
    tag = unique()
    gate = f"paging_{tag}"  # a gate of its own: no other test's case is counted
    queue = unique_task_queue("inbox-stand-in")
    cases = CaseClient(client, queue)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=50)
    opened = [
        base + timedelta(minutes=1, microseconds=250_000),
        base + timedelta(minutes=2, microseconds=746_506),  # the store rounds it up to .747
        base + timedelta(minutes=3),
        base + timedelta(minutes=4, microseconds=1),
        base + timedelta(minutes=5),
        *[base + timedelta(minutes=6)] * 4,  # four at one instant, a whole second
        *[base + timedelta(minutes=7, microseconds=123_456)] * 2,  # two within one millisecond
        base + timedelta(minutes=8),
    ]
    # started newest first, so the start time (the first tie-breaker) disagrees with the case IDs
    handles = {}
    for i in reversed(range(len(opened))):
        handles[i] = await start_stand_in(client, queue, gate, f"paging{tag}_{i:02d}", opened[i])
    ids = [handles[i].id for i in range(len(opened))]
    # oldest gate first, ties by start time: among the four at minute 6 the last started (index 8) first
    expected = ids[:5] + [ids[8], ids[7], ids[6], ids[5], ids[10], ids[9], ids[11]]
    try:
        async def all_visible():
            assert (await client.count_workflows(inbox_query(task_queue=queue, gate=gate))).count == len(opened)

        await assert_eventually(all_visible, timeout=VISIBILITY_TIMEOUT, interval=0.3)

        everything = await cases.inbox(gate=gate, limit=None)
        assert [item.case_id for item in everything.items] == expected and everything.total == 12
        for limit in (1, 5, 7, 11, 12, 50):
            page = await cases.inbox(gate=gate, limit=limit)
            assert [item.case_id for item in page.items] == expected[:limit], limit
            assert page.total == 12 and page.complete == (limit >= 12)
        assert (await cases.inbox(gate=gate, limit=5)).items[1].gate_opened_at == opened[1]

        # the cutoff search against the real store, pushed to list not one case more than it must
        query = inbox_query(task_queue=queue, gate=gate)
        for limit in range(1, 12):
            search = CutoffSearch(limit, datetime.now(UTC), slack=0)
            while windows := search.probes():
                for window in windows:
                    search.record(window, (await client.count_workflows(window.query(query))).count)
            listed = [w.id async for w in client.list_workflows(search.listing().query(query))]
            assert set(listed) == set(expected[: len(listed)]) and len(listed) >= limit, (limit, listed)

        env = cli_env(queue)
        five, all_of_them, default, as_json, both = await asyncio.gather(
            hitl(env, "inbox", "--gate", gate, "--limit", "5"),
            hitl(env, "inbox", "--gate", gate, "--all"),
            hitl(env, "inbox", "--gate", gate),
            hitl(env, "inbox", "--gate", gate, "--limit", "5", "--json"),
            hitl(env, "inbox", "--gate", gate, "--limit", "5", "--all"),
        )
    finally:
        for handle in handles.values():
            await handle.terminate("test over")

    assert five.returncode == 0, five.stderr
    lines = five.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == expected[:5]
    assert lines[-1] == "5 of 12 waiting, oldest first (--limit N or --all for more)"
    for result in (all_of_them, default):
        lines = result.stdout.splitlines()
        assert [line.split()[0] for line in lines[1:-1]] == expected and lines[-1] == "12 waiting, oldest first"
    assert ids_in_json(as_json) == expected[:5]
    assert as_json.stderr.strip() == "hitl: 5 of 12 waiting, oldest first (--limit N or --all for more)"
    assert both.returncode == 2 and "--limit and --all" in both.stderr


@workflow.defn(name="RenewalDiscountException")
class BrokenRenewal:
    """A bad deployment of the renewal workflow: every workflow task it takes fails."""

    @workflow.run
    async def run(self, request: RenewalDiscountRequest) -> None:
        raise RuntimeError("renewal code is broken in this build")


async def test_the_inbox_lists_only_healthy_cases_of_ours(temporal_env, world_pool, cli_env):
    """Attributes set by whoever starts a workflow stay until the workflow upserts its own: a workflow
    of another type, or one of our types on a task queue our worker never polls, could pose as a
    waiting case forever; and a case whose workflow task keeps failing cannot take a decision now."""
    client = temporal_env.client
    tag = unique()
    now = datetime.now(UTC)
    elsewhere = unique_task_queue("inbox-elsewhere")  # polled by nobody
    posing = await start_stand_in(client, elsewhere, "finance", f"posing{tag}", now)
    other_type = await start_stand_in(client, elsewhere, "finance", f"othertype{tag}", now, workflow_type="InboxPhantom")
    async with new_worker(client, world_pool) as worker:
        queue = worker.task_queue
        healthy = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal=f"fy26-ok-{tag}"), queue)
        failing = await start_case(client, example(CaseKind.RENEWAL, human=True, renewal=f"fy26-bad-{tag}"), queue)
        await wait_until_waiting(healthy)
        await wait_until_waiting(failing)
    ours, theirs = CaseClient(client, queue), CaseClient(client, elsewhere)
    stand_ins = [posing, other_type, healthy, failing]
    try:
        await eventually_listed(ours, [healthy.id], [posing.id, other_type.id])
        await eventually_listed(ours, [failing.id])  # listed while it is healthy
        await eventually_listed(theirs, [posing.id], [other_type.id])  # our type on its own queue: listed there

        # a bad build takes over the queue: the failing case's next task (the signal wakes it) fails, again and again
        async with Worker(client, task_queue=queue, workflows=[BrokenRenewal], workflow_runner=UnsandboxedWorkflowRunner()):
            await failing.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": "wakes it up"})

            async def flagged():
                query = f"TemporalReportedProblems IS NOT NULL AND WorkflowId = '{failing.id}'"
                assert (await client.count_workflows(query)).count == 1, "not flagged yet"

            await assert_eventually(flagged, timeout=60, interval=0.5)
            await eventually_listed(ours, [healthy.id], [failing.id, posing.id, other_type.id])
            here, there = await asyncio.gather(
                hitl(cli_env(queue), "inbox", "--all", "--json"), hitl(cli_env(elsewhere), "inbox", "--all", "--json")
            )
            stuck = await find_stuck(client, task_queue=queue)
    finally:
        for handle in stand_ins:
            await handle.terminate(reason="test over")

    mine = {handle.id for handle in stand_ins}
    assert [i for i in ids_in_json(here) if i in mine] == [healthy.id]
    assert [i for i in ids_in_json(there) if i in mine] == [posing.id]
    # the failing case is the operator's: `hitl ops stuck` reports it
    [reported] = [c for c in stuck.stuck if c.case_id == failing.id]
    assert StuckKind.WORKFLOW_TASK_FAILING in [r.kind for r in reported.reasons]
    assert "renewal code is broken in this build" in reported.reasons[0].detail


def test_inbox_footer_counts_with_thousands_separators():
    assert inbox_footer(50, 1667) == "50 of 1,667 waiting, oldest first (--limit N or --all for more)"
    assert inbox_footer(3, 3) == "3 waiting, oldest first"


async def test_reviewer_groups_come_from_the_directory(world_pool):
    assert await reviewer_groups(world_pool, "fin_rev_ana") == ["finance_reviewers"]
    assert await reviewer_groups(world_pool, "cfo_jane") == ["cfo_office"]
    assert await reviewer_groups(world_pool, "fin_rev_greta") == []  # left the company: on no roster
    assert await reviewer_groups(world_pool, "ae_sam") == []


HEALTHY_CASES_OF_OURS = (
    "HitlCaseState = 'waiting' AND ExecutionStatus = 'Running' AND "
    "WorkflowType IN ('RenewalDiscountException', 'ProcurementThresholdBreach', 'AccessEscalation') AND "
    "TaskQueue = 'hitl-cases' AND TemporalReportedProblems IS NULL"
)


def test_inbox_query_is_one_visibility_query_over_the_search_attributes():
    assert inbox_query(task_queue="hitl-cases") == HEALTHY_CASES_OF_OURS
    assert inbox_query(
        task_queue="hitl-cases",
        gate="finance",
        kind="renewal_discount_exception",
        eligible_groups=["finance_reviewers"],
        exclude_requester="fin_rev_ana",
    ) == (
        f"{HEALTHY_CASES_OF_OURS} AND HitlGate = 'finance' AND "
        "HitlCaseKind = 'renewal_discount_exception' AND HitlEligibleGroups IN ('finance_reviewers') AND "
        "HitlRequester != 'fin_rev_ana' AND HitlMayNotDecide != 'fin_rev_ana'"
    )
    with pytest.raises(ValueError):
        inbox_query(task_queue="hitl-cases", gate="finance' OR 1=1")
    with pytest.raises(ValueError):
        inbox_query(task_queue="hitl-cases' OR TaskQueue != 'x")


def test_piped_table_keeps_long_case_ids_whole_and_adds_no_ansi_codes():
    now = datetime.now(UTC)
    case_id = "access_escalation:" + "a-very-long-user-name" * 4 + "/prod_db/admin"
    item = InboxItem(
        case_id=case_id, kind="access_escalation", ask="admin " * 60, gate="security", escalation_level=2,
        reviewer_group="ciso_office", eligible_groups=["ciso_office"], requester="eng_lee", business_key="x",
        reason_codes=[], gate_opened_at=now - timedelta(days=3), next_deadline=now - timedelta(minutes=5),
        deadline_action="times out", age_seconds=3 * 86400, time_left_seconds=-300, workflow_type="AccessEscalation",
        run_id="r", started_at=now - timedelta(days=3),
    )
    text = plain(inbox_table([item]))
    row = text.splitlines()[1]
    assert row.startswith(case_id + "  ") and "\x1b" not in text
    assert row.endswith("timeout overdue by 5m")
    assert "3 ciso_office" in row and " 3d " in row
