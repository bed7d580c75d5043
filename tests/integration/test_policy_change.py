"""Policy changes are cases, on the real dev server and PostgreSQL (the demo world and its directory):
a proposed version is activated only when its owners approve it, with a proof; the proposer cannot
approve their own change; raising a rule to auto needs a quorum of owners; a customer_commitment
rule at auto cannot be proposed; a rejected change activates nothing; a case started before the
activation keeps its version and one started after gets the new one; no input can wedge, lose or
fake a change (a flood continues it as new with its approvals; operators cancel or note it; a
Temporal cancel is recorded; an inactive owner cannot approve; an approval that cannot be put in
force is recorded as approved, not activated).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import Replayer, Worker

from activities.identity import LocalIssuer
from activities.policy_change import PolicyChangeActivities
from activities.policy_files import bundled_policy_dir
from activities.store.audit import verify_log
from activities.store.directory import current_directory, load_directory
from activities.store.policy_activations import activate, activate_if_none, active_policy
from demo.examples import example
from gates.bounds import CONTINUE_AS_NEW_AFTER_SIGNALS
from gates.cases import CaseKind
from gates.directory import Directory
from gates.policy_change import (
    WORKFLOW_TYPE,
    ChangeResult,
    ChangeState,
    ChangeView,
    PolicyChangeRequest,
    PrepareChangeInput,
    PreparedChange,
    change_details,
    change_summary,
)
from tests.case_helpers import HISTORIES, case_view, start_case, wait_until_waiting
from tests.helpers import HoldTheContinueAsNew, assert_eventually, run_hitl, unique_task_queue
from workers.client import WORKER_DATA_CONVERTER, worker_client
from workers.config import Settings
from workers.heartbeat import HeartbeatWhileRunning
from workers.worker import STRICT_WORKFLOW_RUNNER, WORKFLOW_RUNNER, WORKFLOWS, activities_for
from workflows.policy_change import PolicyChangeWorkflow

ACTIVE_TEXT = (bundled_policy_dir() / "discount_policy_v3_2.yaml").read_text()
OWNERS = ["fin_dir_omar", "fin_dir_lina", "cfo_jane"]  # the bundled discount policy's owners


def version(v: str, text: str = ACTIVE_TEXT) -> str:
    return text.replace('version: "3.2"', f'version: "{v}"')


def raised_band(v: str) -> str:
    """DISC-2 from above 15% to above 18%: no rule raised to auto, one owner approves."""
    return version(v).replace("op: gt, value: 15}", "op: gt, value: 18}")


def to_auto(v: str) -> str:
    """DISC-6 (unusual case) raised to auto: a majority of the three owners approves."""
    return version(v).replace("    reason_code: unusual_case\n", "    reason_code: unusual_case\n    automation: auto\n")


def ref(v: str) -> str:
    return f"discount_policy_v{v.replace('.', '_')}"


def change_worker(
    client: Client, pool, settings: Settings, *, interceptors: list | None = None, task_queue: str | None = None
) -> Worker:
    """The project's worker with the PolicyChange workflow and its activities (listed in workers/worker.py or not)."""
    activities = activities_for(pool, settings, client)
    known = {getattr(a, "__temporal_activity_definition").name for a in activities}
    activities += [a for a in PolicyChangeActivities(pool, settings).activities() if a.__name__ not in known]
    workflows = WORKFLOWS if PolicyChangeWorkflow in WORKFLOWS else [*WORKFLOWS, PolicyChangeWorkflow]
    return Worker(
        worker_client(client),
        task_queue=task_queue or unique_task_queue("policy-change"),
        workflows=workflows,
        activities=activities,
        workflow_runner=WORKFLOW_RUNNER,
        interceptors=[HeartbeatWhileRunning(), *(interceptors or [])],
    )


def settings_for(tmp_path: Path, identity: Literal["verified", "asserted"] = "verified") -> Settings:
    return Settings(_env_file=None, database_url=None, identity=identity, state_dir=tmp_path)


def proposal(text: str, proposer: str, issuer: LocalIssuer | None, reason: str = "fewer small exceptions") -> PolicyChangeRequest:
    v = text.split('version: "', 1)[1].split('"', 1)[0]
    proof = issuer.mint(proposer, ttl=timedelta(minutes=30)) if issuer else None
    return PolicyChangeRequest(file_name=f"{ref(v)}.yaml", policy_text=text, proposer=proposer, reason=reason, proof=proof)


async def start_change(client: Client, request: PolicyChangeRequest, task_queue: str, *, id: str | None = None) -> WorkflowHandle:
    return await client.start_workflow(
        WORKFLOW_TYPE,
        request,
        id=id or f"policy_change:{request.file_name.removesuffix('.yaml')}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,  # the session's server is shared
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary=change_summary(request),
        static_details=change_details(request),
        result_type=ChangeResult,
    )


async def view_of(handle: WorkflowHandle) -> ChangeView:
    return await handle.query("policy_change_state", result_type=ChangeView)


async def waiting(handle: WorkflowHandle) -> ChangeView:
    async def at_gate() -> ChangeView:
        view = await view_of(handle)
        assert view.state == ChangeState.WAITING, view.state
        return view

    return await assert_eventually(at_gate, timeout=60)


def decision(issuer: LocalIssuer | None, reviewer: str, outcome: str = "approve", **fields) -> dict:
    payload = {"outcome": outcome, "reviewer": reviewer, "reason": f"{reviewer} read the what-if", **fields}
    if issuer is not None:
        payload["proof"] = issuer.mint(reviewer, ttl=timedelta(minutes=30))
    return payload


async def refused(handle: WorkflowHandle, payload: dict, update: str = "submit_decision") -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(update, payload)
    return str(failed.value.cause)


def operator(issuer: LocalIssuer | None, person: str, action: str, reason: str = "asked by the policy owners") -> dict:
    payload = {"action": action, "operator": person, "reason": reason}
    if issuer is not None:
        payload["proof"] = issuer.mint(person, ttl=timedelta(minutes=30))
    return payload


async def save_change_history(handle: WorkflowHandle, path: str, *, folder: str = "") -> None:
    """With HITL_RECORD_HISTORIES=1, keep this run's history as a replay fixture
    (tests/histories/[FOLDER/]policy_change--PATH.json)."""
    if os.environ.get("HITL_RECORD_HISTORIES") == "1":
        (HISTORIES / folder / f"policy_change--{path}.json").write_text((await handle.fetch_history()).to_json())


async def audit_kinds(pool, change_id: str) -> list[str]:
    rows = await pool.fetch("SELECT kind FROM audit_events WHERE case_id = $1 ORDER BY case_seq", change_id)
    return [r["kind"] for r in rows]


async def set_inactive(pool, *people: str) -> None:
    """A new directory version in which `people` are inactive (left the company)."""
    directory = await current_directory(pool)
    assert directory is not None
    document = directory.document()
    document["version"] = f"{directory.version}-{'-'.join(people)}-left"
    for person in document["people"]:
        if person["id"] in people:
            person["active"] = False
    async with pool.acquire() as conn:
        await load_directory(conn, Directory.model_validate(document), "test")


async def test_an_owner_approves_with_a_proof_and_the_version_is_activated_for_new_cases_only(temporal_env, world_pool, tmp_path):
    issuer = LocalIssuer(tmp_path)
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path)) as worker:
        request = proposal(raised_band("3.3"), "fin_dir_omar", issuer)
        handle = await start_change(temporal_env.client, request, worker.task_queue)
        view = await waiting(handle)
        brief = view.brief
        assert brief is not None and brief.active == "discount_policy_v3_2" and brief.proposed == "discount_policy_v3_3"
        assert [c.rule_id for c in brief.diff.rules_changed] == ["DISC-2"]
        assert brief.plan.approvals_needed == 1 and brief.whatif is not None and brief.whatif.totals.cases >= 0
        assert "fin_dir_omar" not in view.may_decide and "fin_dir_lina" in view.may_decide

        before = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        assert (await wait_until_waiting(before)).policy == "discount_policy_v3_2"

        # the proposer is an owner, and still may not approve their own change: refused, nothing written
        assert "fin_dir_omar proposed this change and may not decide it" in await refused(
            handle, decision(issuer, "fin_dir_omar")
        )
        no_proof = {"outcome": "approve", "reviewer": "fin_dir_lina", "reason": "ok"}
        assert "needs a proof that you are fin_dir_lina" in await refused(handle, no_proof)
        forged = decision(issuer, "fin_dir_lina") | {"proof": issuer.mint("fin_rev_ana", ttl=timedelta(minutes=5))}
        assert "fin_rev_ana" in await refused(handle, forged)
        assert "brief changed since you looked" in await refused(
            handle, decision(issuer, "fin_dir_lina", digest="sha256:" + "1" * 64)
        )
        assert "fin_rev_ana may not decide" in await refused(handle, decision(issuer, "fin_rev_ana"))
        # the CFO's office is the escalation level, not an owner: before the change escalates it cannot approve
        assert "fin_cos_raf" in await refused(handle, decision(issuer, "fin_cos_raf"))
        still = await view_of(handle)
        assert still.state == ChangeState.WAITING and still.approvals == [] and still.decision is None
        in_force = await active_policy(world_pool, CaseKind.RENEWAL)
        assert in_force is not None and in_force.policy_ref == "discount_policy_v3_2"

        receipt = await handle.execute_update("submit_decision", decision(issuer, "fin_dir_lina", digest=brief.digest))
        assert receipt["accepted"] and receipt["reviewer"] == "fin_dir_lina"
        result = await handle.result()
        assert result.outcome == "approve" and result.activated == "discount_policy_v3_3"
        await save_change_history(handle, "approve")

        active = await active_policy(world_pool, CaseKind.RENEWAL)
        assert active is not None and active.policy_ref == "discount_policy_v3_3"
        assert (
            active.change_id == handle.id and active.approved_by == ["fin_dir_lina"] and active.policy_text == request.policy_text
        )

        after = await start_case(
            temporal_env.client, example(CaseKind.RENEWAL, human=True, renewal="fy26-after"), worker.task_queue
        )
        assert (await wait_until_waiting(after)).policy == "discount_policy_v3_3"
        assert (await case_view(before)).policy == "discount_policy_v3_2"  # a running case keeps its version
        for case in (before, after):
            await case.terminate("test over")

    row = await world_pool.fetchrow("SELECT * FROM policy_changes WHERE change_id = $1", handle.id)
    record = json.loads(row["record"])
    assert row["outcome"] == "approve" and row["decided_by"] == "fin_dir_lina" and row["proposer"] == "fin_dir_omar"
    assert record["decision"]["identity"]["mode"] == "verified" and record["proposer_identity"]["issuer"] == "hitl-local"
    kinds = [
        r["kind"] for r in await world_pool.fetch("SELECT kind FROM audit_events WHERE case_id = $1 ORDER BY case_seq", handle.id)
    ]
    assert kinds == ["case_opened", "gate_opened", "decision_accepted"]
    assert await world_pool.fetchval("SELECT count(*) FROM precedents WHERE case_id = $1", handle.id) == 0
    async with world_pool.acquire() as conn:
        assert (await verify_log(conn)).ok  # the change's events chain like a case's; no trace event to bind
    described = await handle.describe()
    assert await described.static_summary() == "Policy change: `discount_policy_v3_3` proposed by `fin_dir_omar`"
    assert "as `fin_dir_omar` wrote it" in (await described.static_details() or "")


async def test_raising_a_rule_to_auto_waits_for_a_quorum_of_owners(temporal_env, world_pool, tmp_path):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(to_auto("3.4"), "fin_rev_ana", None), worker.task_queue)
        view = await waiting(handle)
        assert (
            view.brief is not None
            and view.brief.plan.raised_to_auto == ["DISC-6"]
            and view.still_needed == ["a member of policy_owners"] * 2
        )

        first = await handle.execute_update("submit_decision", decision(None, "fin_dir_omar"))
        assert first["message"] == "approve by fin_dir_omar recorded; still needed: a member of policy_owners"
        view = await view_of(handle)
        assert view.state == ChangeState.WAITING and [a.decided_by for a in view.approvals] == ["fin_dir_omar"]
        assert "has already approved" in await refused(handle, decision(None, "fin_dir_omar"))
        active = await active_policy(world_pool, CaseKind.RENEWAL)
        assert active is None or active.policy_ref != "discount_policy_v3_4"

        await handle.execute_update("submit_decision", decision(None, "cfo_jane"))
        result = await handle.result()
        assert result.activated == "discount_policy_v3_4"
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert (
        active is not None and active.policy_ref == "discount_policy_v3_4" and active.approved_by == ["fin_dir_omar", "cfo_jane"]
    )


async def test_a_rejected_change_activates_nothing(temporal_env, world_pool, tmp_path):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("3.5"), "fin_rev_ana", None), worker.task_queue)
        await waiting(handle)
        await handle.execute_update("submit_decision", decision(None, "fin_dir_lina", "reject"))
        result = await handle.result()
        assert result.outcome == "reject" and result.activated is None
        assert (await view_of(handle)).state == ChangeState.REJECTED
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.policy_ref == "discount_policy_v3_2"
    assert await world_pool.fetchval("SELECT outcome FROM policy_changes WHERE change_id = $1", handle.id) == "reject"


async def test_a_start_with_a_customer_commitment_rule_at_auto_or_under_another_id_is_refused(temporal_env, world_pool, tmp_path):
    commitment = version("3.6").replace(
        "    reason_code: customer_commitment\n", "    reason_code: customer_commitment\n    automation: auto\n"
    )
    # built without the model's checks: a sender need not use our client
    raw = proposal(version("3.6"), "fin_rev_ana", None).model_copy(update={"policy_text": commitment})
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, raw, worker.task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert "DISC-5" in str(failed.value.cause) and "customer_commitment" in str(failed.value.cause)

        elsewhere = await start_change(
            temporal_env.client,
            proposal(raised_band("3.7"), "fin_rev_ana", None),
            worker.task_queue,
            id="policy_change:discount_policy_v9_9",
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await elsewhere.result()
        assert "is not this change's ID" in str(failed.value.cause)

        await activate_if_none(world_pool, policy_text=ACTIVE_TEXT, reason="in force before the test's proposal")
        in_force = await start_change(temporal_env.client, proposal(ACTIVE_TEXT, "fin_rev_ana", None), worker.task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await in_force.result()
        assert "discount_policy_v3_2 is the version in force already" in str(failed.value.cause)

        posing = proposal(raised_band("3.7"), "fin_rev_ana", None)
        handle = await temporal_env.client.start_workflow(
            WORKFLOW_TYPE,
            posing,
            id="policy_change:discount_policy_v3_7",
            task_queue=worker.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            static_summary="Approved by the CFO",
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        assert "static summary is not this change's own text" in str(failed.value.cause)
    assert await world_pool.fetchval("SELECT count(*) FROM policy_activations WHERE policy_ref LIKE 'discount_policy_v3_6%'") == 0


async def test_the_cli_refuses_a_customer_commitment_rule_at_auto_and_proposing_twice_returns_the_same_change(
    temporal_env, world_pool, cli_env, tmp_path
):
    bad = tmp_path / "discount_policy_v3_8.yaml"
    bad.write_text(
        version("3.8").replace(
            "    reason_code: customer_commitment\n", "    reason_code: customer_commitment\n    automation: auto\n"
        )
    )
    LocalIssuer(tmp_path).mint(
        "fin_rev_ana", ttl=timedelta(minutes=1)
    )  # the state directory's issuer key, for the CLI and the worker
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path)) as worker:
        env = cli_env(worker.task_queue) | {"HITL_IDENTITY": "verified", "HITL_STATE_DIR": str(tmp_path)}
        refusal = await run_hitl(env, "policy", "propose", str(bad), "--reason", "faster", "--as", "fin_rev_ana")
        assert refusal.returncode == 2 and "DISC-5" in refusal.stderr and refusal.stdout == ""

        good = tmp_path / "discount_policy_v3_9.yaml"
        good.write_text(raised_band("3.9"))
        first = await run_hitl(env, "policy", "propose", str(good), "--reason", "fewer small exceptions", "--as", "fin_rev_ana")
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines()[0] == "policy_change:discount_policy_v3_9"
        assert "~ rule DISC-2" in first.stdout and "one of the owners" in first.stdout
        again = await run_hitl(env, "policy", "propose", str(good), "--reason", "once more", "--as", "fin_rev_ana")
        assert again.returncode == 0 and again.stdout.splitlines()[0] == "policy_change:discount_policy_v3_9 (already proposed)"

        # `hitl approve` decides a change as it decides a case, with a proof (verified identity)
        own = await run_hitl(env, "approve", "policy_change:discount_policy_v3_9", "--as", "fin_rev_ana", "--reason", "mine")
        assert own.returncode == 1 and "fin_rev_ana proposed this change and may not decide it" in own.stderr
        approved = await run_hitl(
            env, "approve", "policy_change:discount_policy_v3_9", "--as", "fin_dir_omar", "--reason", "the what-if is clean"
        )
        assert approved.returncode == 0, approved.stderr
        handle = temporal_env.client.get_workflow_handle("policy_change:discount_policy_v3_9", result_type=ChangeResult)
        result = await handle.result()
        assert result.activated == "discount_policy_v3_9"
        reviewed = await run_hitl(env, "policy", "review", "discount_policy_v3_9")
        assert reviewed.returncode == 0 and "activated: discount_policy_v3_9" in reviewed.stdout
        # the change's decision is a trace like a case's: `hitl trace` prints who decided, how, and its record id
        traced = await run_hitl(env, "trace", "policy_change:discount_policy_v3_9", "--format", "json")
        assert traced.returncode == 0, traced.stderr
        printed = json.loads(traced.stdout)
        assert printed["decision"]["decided_by"] == "fin_dir_omar" and printed["trace_id"].startswith("policy_changes/")
        undecided = await run_hitl(env, "trace", "policy_change:discount_policy_v9_9")
        assert undecided.returncode != 0 and "no decision recorded for policy_change:discount_policy_v9_9" in undecided.stderr
    record = json.loads(await world_pool.fetchval("SELECT record FROM policy_changes WHERE change_id = $1", handle.id))
    assert record["proposer_identity"]["mode"] == record["decision"]["identity"]["mode"] == "verified"


async def test_an_unanswered_change_is_reminded_escalated_to_the_last_level_and_times_out_rejected(
    time_skipping_env, world_pool, tmp_path
):
    async with change_worker(time_skipping_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(
            time_skipping_env.client, proposal(raised_band("4.1"), "fin_rev_ana", None), worker.task_queue
        )
        result = await handle.result()  # the test server skips the owners' 24 h and the CFO office's 48 h
        history = await handle.fetch_history()
    assert (result.outcome, result.decided_by, result.activated) == ("reject", "timeout:finance", None)
    kinds = [
        r["kind"] for r in await world_pool.fetch("SELECT kind FROM audit_events WHERE case_id = $1 ORDER BY case_seq", handle.id)
    ]
    assert kinds == ["case_opened", "gate_opened", "reminded", "reminded", "escalated", "timed_out"]
    escalated = json.loads(
        await world_pool.fetchval("SELECT body_canonical FROM audit_events WHERE case_id = $1 AND kind = 'escalated'", handle.id)
    )
    assert escalated["to_group"] == "cfo_office"
    told = await world_pool.fetch(
        "SELECT kind, reviewer_group FROM notifications WHERE case_id = $1 AND kind <> 'decided' ORDER BY id", handle.id
    )
    assert [(r["kind"], r["reviewer_group"]) for r in told] == [
        ("reminder", "policy_owners"),
        ("escalation", "cfo_office"),
        ("reminder", "cfo_office"),
        ("timeout", "cfo_office"),
    ]
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.policy_ref == "discount_policy_v3_2"
    # the run replays in the strict sandbox, which fails a replay on a non-deterministic call in workflow code
    replayer = Replayer(
        workflows=[PolicyChangeWorkflow], data_converter=WORKER_DATA_CONVERTER, workflow_runner=STRICT_WORKFLOW_RUNNER
    )
    await replayer.replay_workflow(history)


async def test_a_signalled_decision_from_someone_who_may_not_decide_is_kept_as_a_refused_attempt(
    temporal_env, world_pool, tmp_path
):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("4.2"), "fin_rev_ana", None), worker.task_queue)
        await waiting(handle)
        await handle.signal("decide", decision(None, "fin_rev_ana"))
        await handle.signal("decide", "not a decision")

        async def kept() -> None:
            attempts = (await view_of(handle)).rejected_attempts
            assert [a.reviewer for a in attempts] == ["fin_rev_ana", None]
            assert "fin_rev_ana proposed this change" in attempts[0].error

        await assert_eventually(kept)
        await handle.signal("decide", decision(None, "fin_dir_lina"))
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.activated == "discount_policy_v4_2" and result.decided_by == "fin_dir_lina"
    record = json.loads(await world_pool.fetchval("SELECT record FROM policy_changes WHERE change_id = $1", handle.id))
    assert len(record["rejected_attempts"]) == 2
    replayer = Replayer(
        workflows=[PolicyChangeWorkflow], data_converter=WORKER_DATA_CONVERTER, workflow_runner=STRICT_WORKFLOW_RUNNER
    )
    await replayer.replay_workflow(history)


async def test_a_flood_of_signals_continues_the_change_as_new_with_its_id_and_pending_approvals(
    temporal_env, world_pool, tmp_path
):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(to_auto("5.1"), "fin_rev_ana", None), worker.task_queue)
        await waiting(handle)
        first_run = (await handle.describe()).run_id
        await handle.execute_update("submit_decision", decision(None, "fin_dir_omar"))
        for n in range(CONTINUE_AS_NEW_AFTER_SIGNALS + 4):  # more than one run takes
            await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": f"flood {n}"})

        async def continued() -> ChangeView:
            assert (await handle.describe()).run_id != first_run
            view = await view_of(handle)
            assert view.state == ChangeState.WAITING
            return view

        view = await assert_eventually(continued, timeout=60)
        assert [a.decided_by for a in view.approvals] == ["fin_dir_omar"] and view.still_needed == ["a member of policy_owners"]
        assert view.rejected_attempts and all("proposed this change" in a.error for a in view.rejected_attempts)
        await handle.execute_update("submit_decision", decision(None, "cfo_jane"))
        result = await handle.result()
        await save_change_history(
            temporal_env.client.get_workflow_handle(handle.id, run_id=first_run), "flood_first_run", folder="continued"
        )
        await save_change_history(handle, "flood_next_run", folder="continued")
    assert result.activated == "discount_policy_v5_1" and handle.id == "policy_change:discount_policy_v5_1"
    row = await world_pool.fetchrow("SELECT run_id, record FROM policy_changes WHERE change_id = $1", handle.id)
    assert row["run_id"] == first_run  # one record, under the change's first run
    assert [a["decided_by"] for a in json.loads(row["record"])["approvals"]] == ["fin_dir_omar", "cfo_jane"]
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.approved_by == ["fin_dir_omar", "cfo_jane"]


async def test_a_decision_and_a_signal_that_reach_the_continued_change_before_it_restored_its_state_are_taken(
    temporal_env, world_pool, tmp_path
):
    """As tests/integration/test_continue_as_new.py for cases: the continued run's first task brings a
    signal and an update; they are judged against the restored change, not refused or lost."""
    client, hold = temporal_env.client, HoldTheContinueAsNew()
    worker = change_worker(client, world_pool, settings_for(tmp_path, "asserted"), interceptors=[hold])
    async with worker:
        handle = await start_change(client, proposal(raised_band("5.3"), "fin_rev_ana", None), worker.task_queue)
        await waiting(handle)
        for n in range(CONTINUE_AS_NEW_AFTER_SIGNALS):
            await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": f"flood {n}"})
        await asyncio.to_thread(hold.continuing.wait, 30)
    latest = client.get_workflow_handle(handle.id)
    assert (await latest.describe()).run_id != handle.first_execution_run_id
    await latest.signal("decide", {"outcome": "approve", "reviewer": "nobody_here", "reason": "kept"})
    update = asyncio.create_task(latest.execute_update("submit_decision", decision(None, "fin_dir_omar")))
    await asyncio.sleep(1.0)  # admitted by the server, waiting for the run's first task
    async with change_worker(client, world_pool, settings_for(tmp_path, "asserted"), task_queue=worker.task_queue):
        receipt = await asyncio.wait_for(update, timeout=60)
        await asyncio.wait_for(latest.result(), timeout=60)
    assert receipt["accepted"]
    row = await world_pool.fetchrow("SELECT outcome, decided_by, record FROM policy_changes WHERE change_id = $1", handle.id)
    assert (row["outcome"], row["decided_by"]) == ("approve", "fin_dir_omar")
    assert "nobody_here" in [a["reviewer"] for a in json.loads(row["record"])["rejected_attempts"]]


async def test_an_operator_notes_and_cancels_a_change_with_a_proof_and_nothing_is_activated(temporal_env, world_pool, tmp_path):
    issuer = LocalIssuer(tmp_path)
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path)) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("5.2"), "fin_rev_ana", issuer), worker.task_queue)
        await waiting(handle)
        assert "fin_rev_ana proposed this change and may not operate it" in await refused(
            handle, operator(issuer, "fin_rev_ana", "cancel"), "operator_action"
        )
        assert "has no operator role" in await refused(handle, operator(issuer, "fin_rev_ben", "cancel"), "operator_action")
        assert "takes cancel or note, not escalate" in await refused(
            handle, operator(issuer, "fin_cos_raf", "escalate"), "operator_action"
        )
        assert "needs a proof" in await refused(handle, operator(None, "fin_cos_raf", "cancel"), "operator_action")
        assert "invalid operator action" in await refused(handle, {"action": "cancel"}, "operator_action")
        assert (await view_of(handle)).state == ChangeState.WAITING

        noted = await handle.execute_update("operator_action", operator(issuer, "fin_cos_raf", "note", "owners are away"))
        assert noted["result"] == "noted"
        cancelled = await handle.execute_update("operator_action", operator(issuer, "fin_cos_raf", "cancel", "superseded"))
        assert cancelled["result"] == "cancelled while waiting for a decision; nothing activated"
        result = await handle.result()
        assert (result.outcome, result.decided_by, result.activated) == ("cancelled", "operator:fin_cos_raf", None)
        await save_change_history(handle, "operator_cancel")
        view = await view_of(handle)
        assert view.state == ChangeState.CANCELLED and [a.action for a in view.operator_actions] == ["note", "cancel"]
    row = await world_pool.fetchrow("SELECT outcome, decided_by, record FROM policy_changes WHERE change_id = $1", handle.id)
    assert (row["outcome"], row["decided_by"]) == ("cancelled", "operator:fin_cos_raf")
    assert json.loads(row["record"])["operator_actions"][1]["identity"]["mode"] == "verified"
    assert await audit_kinds(world_pool, handle.id) == [
        "case_opened",
        "gate_opened",
        "operator_action",
        "operator_action",
        "cancelled",
    ]
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.policy_ref != "discount_policy_v5_2"


async def test_a_cancel_through_temporal_is_recorded_as_cancelled(temporal_env, world_pool, cli_env, tmp_path):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("5.3"), "fin_rev_ana", None), worker.task_queue)
        await waiting(handle)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        await save_change_history(handle, "temporal_cancel")
        reviewed = await run_hitl(cli_env(worker.task_queue), "policy", "review", handle.id)
        assert reviewed.returncode == 0, reviewed.stderr
        assert "(cancelled)" in reviewed.stdout and "cancelled by temporal:cancel-request" in reviewed.stdout
    row = await world_pool.fetchrow("SELECT outcome, decided_by FROM policy_changes WHERE change_id = $1", handle.id)
    assert (row["outcome"], row["decided_by"]) == ("cancelled", "temporal:cancel-request")
    assert (await audit_kinds(world_pool, handle.id))[-1] == "cancelled"
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.policy_ref != "discount_policy_v5_3"


async def test_an_owner_inactive_in_the_directory_cannot_approve(temporal_env, world_pool, tmp_path):
    await set_inactive(world_pool, "fin_dir_lina")  # left before the change was proposed
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("5.4"), "fin_rev_ana", None), worker.task_queue)
        view = await waiting(handle)
        assert "fin_dir_lina" not in view.may_decide and "fin_dir_omar" in view.may_decide
        assert "fin_dir_lina may not decide" in await refused(handle, decision(None, "fin_dir_lina"))
        await set_inactive(world_pool, "fin_dir_omar")  # leaves while the change waits
        assert "fin_dir_omar may not decide" in await refused(handle, decision(None, "fin_dir_omar"))
        await handle.signal("decide", decision(None, "fin_dir_omar"))

        async def kept() -> None:
            assert any("fin_dir_omar may not decide" in a.error for a in (await view_of(handle)).rejected_attempts)

        await assert_eventually(kept)
        await handle.execute_update("submit_decision", decision(None, "cfo_jane"))
        result = await handle.result()
    assert result.decided_by == "cfo_jane" and result.activated == "discount_policy_v5_4"


async def test_an_approval_that_cannot_be_put_in_force_is_recorded_as_approved_not_activated(
    temporal_env, world_pool, cli_env, tmp_path
):
    async with change_worker(temporal_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("5.5"), "fin_rev_ana", None), worker.task_queue)
        assert (await waiting(handle)).brief.active == "discount_policy_v3_2"  # type: ignore[union-attr]
        # meanwhile another version is put in force: approving 5.5 would silently undo it
        await activate(
            world_pool, policy_text=version("5.6"), approved_by=["cfo_jane"], reason="hotfix", change_id=None, trace_id=None
        )
        await handle.execute_update("submit_decision", decision(None, "fin_dir_lina"))
        result = await handle.result()
        assert result.outcome == "approve" and result.activated is None
        assert result.not_activated is not None and "discount_policy_v5_6 was put in force after" in result.not_activated
        assert (await view_of(handle)).state == ChangeState.NOT_ACTIVATED
        env = cli_env(worker.task_queue)
        reviewed = await run_hitl(env, "policy", "review", handle.id)
        assert reviewed.returncode == 0 and "approved, not activated: discount_policy_v5_6 was put in force" in reviewed.stdout
        shown = await run_hitl(env, "show", handle.id)
        assert shown.returncode == 1 and f"is a policy change: use `hitl policy review {handle.id}`" in shown.stderr
    active = await active_policy(world_pool, CaseKind.RENEWAL)
    assert active is not None and active.policy_ref == "discount_policy_v5_6"
    row = await world_pool.fetchrow("SELECT outcome, record FROM policy_changes WHERE change_id = $1", handle.id)
    assert row["outcome"] == "approve" and "put in force after" in json.loads(row["record"])["not_activated"]


async def test_a_change_that_continued_as_new_keeps_its_deadlines_and_times_out_with_every_event_recorded(
    time_skipping_env, world_pool, tmp_path
):
    async with change_worker(time_skipping_env.client, world_pool, settings_for(tmp_path, "asserted")) as worker:
        handle = await start_change(
            time_skipping_env.client, proposal(raised_band("5.7"), "fin_rev_ana", None), worker.task_queue
        )
        await waiting(handle)
        first_run = (await handle.describe()).run_id
        for n in range(CONTINUE_AS_NEW_AFTER_SIGNALS + 2):
            await handle.signal("decide", {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": f"flood {n}"})
        result = await handle.result()  # the owners' 24 h and the CFO office's 48 h, skipped, across the runs
        assert (await handle.describe()).run_id != first_run
    assert (result.outcome, result.decided_by, result.activated) == ("reject", "timeout:finance", None)
    kinds = await audit_kinds(world_pool, handle.id)
    assert [k for k in kinds if k != "decision_refused"] == [
        "case_opened",
        "gate_opened",
        "reminded",
        "reminded",
        "escalated",
        "timed_out",
    ]
    assert kinds.count("decision_refused") == CONTINUE_AS_NEW_AFTER_SIGNALS + 2
    assert await world_pool.fetchval("SELECT run_id FROM policy_changes WHERE change_id = $1", handle.id) == first_run


@activity.defn(name="prepare_policy_change")
async def stuck_preparation(prepare: PrepareChangeInput) -> PreparedChange:
    """A preparation that never ends (a database that hangs, say), until it is cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.5)


async def test_a_change_stuck_in_preparation_is_cancelled_by_an_operator_through_temporal_and_recorded(
    temporal_env, world_pool, cli_env, tmp_path
):
    settings = settings_for(tmp_path, "asserted")
    activities = [
        a
        for a in activities_for(world_pool, settings, temporal_env.client)
        if getattr(a, "__temporal_activity_definition").name != "prepare_policy_change"
    ]
    async with Worker(
        worker_client(temporal_env.client),
        task_queue=unique_task_queue("policy-change-stuck"),
        workflows=[PolicyChangeWorkflow],
        activities=[*activities, stuck_preparation],
        workflow_runner=WORKFLOW_RUNNER,
    ) as worker:
        handle = await start_change(temporal_env.client, proposal(raised_band("5.8"), "fin_rev_ana", None), worker.task_queue)

        async def preparing() -> None:
            assert (await view_of(handle)).state == ChangeState.PREPARING

        await assert_eventually(preparing)
        cancelled = await run_hitl(
            cli_env(worker.task_queue), "ops", "cancel", handle.id, "--as", "fin_cos_raf", "--reason", "wrong file", "--yes"
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert (
            "cancellation requested in state preparing" in cancelled.stdout and "sent Temporal cancellation" in cancelled.stdout
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        view = await view_of(handle)
        assert view.state == ChangeState.CANCELLED and view.brief is None
    row = await world_pool.fetchrow("SELECT outcome, decided_by, reason FROM policy_changes WHERE change_id = $1", handle.id)
    assert (row["outcome"], row["decided_by"], row["reason"]) == ("cancelled", "operator:fin_cos_raf", "wrong file")
    assert await audit_kinds(world_pool, handle.id) == ["case_opened", "operator_action", "cancelled"]
