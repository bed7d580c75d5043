"""`hitl inbox`: the cases waiting for a decision, from one Temporal visibility query.

Real dev server (shared by the session: other tests' cases may be waiting too, so every assertion
looks at this test's own case IDs), a real worker and the seeded PostgreSQL directory. Visibility
is eventually consistent: the tests poll the in-process client until the server shows the state
they set up, then run the CLI once against that settled state."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from gates.cases import CaseKind
from gates.gate import Decision, OperatorAction
from tests.case_helpers import example, start_case, wait_until_waiting
from tests.helpers import assert_eventually, new_worker, run_hitl
from workers.cases import CaseClient
from workers.inbox import InboxItem, inbox_query, reviewer_groups
from workers.render import inbox_table, plain

VISIBILITY_TIMEOUT = 20


hitl = run_hitl



def unique() -> str:
    return uuid.uuid4().hex[:8]


async def inbox_ids(cases: CaseClient, **filters) -> list[str]:
    return [item.case_id for item in await cases.inbox(**filters)]


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
                hitl(env, "inbox"),
                hitl(env, "inbox", "--json"),
                hitl(env, "inbox", "--gate", "ops", "--json"),
                hitl(env, "inbox", "--kind", "renewal", "--json"),
                hitl(env, "inbox", "--gate", "finance", "--kind", "procurement"),
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
    renewal_row = rows[renewal.id]
    for text in ("renewal", f"28% renewal discount for acme_enterprise (fy26-{tag})", "finance", "1 finance_reviewers", "escalates in 23h"):
        assert text in renewal_row, renewal_row
    purchase_row = rows[purchase.id]
    for text in ("procurement", f"180,000.00 USD software purchase from northwind_cloud (pr-{tag})", "ops", "2 ops_vp_approvers", "escalates in 1d 23h"):
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
    assert set(items[0]) >= {"case_id", "kind", "ask", "gate", "escalation_level", "age_seconds", "time_left_seconds", "next_deadline"}

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
                hitl(env, "inbox", "--reviewer", "fin_rev_ana", "--json"),
                hitl(env, "inbox", "--reviewer", "fin_rev_ben", "--json"),
            )

            # escalated to the Finance directors: no longer fin_rev_ana's to decide
            await theirs.execute_update(
                "operator_action", OperatorAction(action="escalate", operator="ops_oncall", reason="deal closes today")
            )
            omar = await reviewer_groups(world_pool, "fin_dir_omar")
            await eventually_listed(cases, [own.id], [theirs.id], reviewer="fin_rev_ana", reviewer_groups=ana)
            await eventually_listed(cases, [theirs.id], reviewer="fin_dir_omar", reviewer_groups=omar)
            ana_after, omar_after, stale, unknown = await asyncio.gather(
                hitl(env, "inbox", "--reviewer", "fin_rev_ana", "--json"),
                hitl(env, "inbox", "--reviewer", "fin_dir_omar", "--json"),
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


async def test_reviewer_groups_come_from_the_directory(world_pool):
    assert await reviewer_groups(world_pool, "fin_rev_ana") == ["finance_reviewers"]
    assert await reviewer_groups(world_pool, "cfo_jane") == ["cfo_office"]
    assert await reviewer_groups(world_pool, "fin_rev_greta") == []  # left the company: on no roster
    assert await reviewer_groups(world_pool, "ae_sam") == []


def test_inbox_query_is_one_visibility_query_over_the_search_attributes():
    assert inbox_query() == "HitlCaseState = 'waiting' AND ExecutionStatus = 'Running'"
    assert inbox_query(
        gate="finance", kind="renewal_discount_exception", eligible_groups=["finance_reviewers"], exclude_requester="fin_rev_ana"
    ) == (
        "HitlCaseState = 'waiting' AND ExecutionStatus = 'Running' AND HitlGate = 'finance' AND "
        "HitlCaseKind = 'renewal_discount_exception' AND HitlEligibleGroups IN ('finance_reviewers') AND "
        "HitlRequester != 'fin_rev_ana'"
    )
    with pytest.raises(ValueError):
        inbox_query(gate="finance' OR 1=1")


def test_piped_table_keeps_long_case_ids_whole_and_adds_no_ansi_codes():
    now = datetime.now(timezone.utc)
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
