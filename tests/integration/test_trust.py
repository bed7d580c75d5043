"""Who decided is proven, on the real dev server and PostgreSQL: a worker in verified mode, the demo
world's directory (demo/directory.yaml, loaded by the seed), proofs from the local issuer of the
test's state directory.

A raw update or signal naming vp_ops_raj without a proof, with someone else's, or with a stale
digest is refused and leaves the case waiting; the subject of an access case is refused on both
paths; a directory change mid-wait takes effect; the trace says who, verified by whom, on which
digest, under which directory version.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from activities.identity import LocalIssuer
from activities.store.directory import current_directory, load_directory
from demo.examples import example
from gates.cases import CaseKind
from gates.directory import Directory
from hitl_temporal import CaseClient
from tests.case_helpers import case_view, save_history, start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker
from workers.config import Settings
from workers.devstack import free_port


def verified_settings(state_dir: Path) -> Settings:
    return Settings(_env_file=None, database_url=None, identity="verified", state_dir=state_dir)


def decision(issuer: LocalIssuer, reviewer: str, digest: str | None, *, proof_of: str | None = None, **fields) -> dict:
    payload = {"outcome": "approve", "reviewer": reviewer, "reason": "checked the quote", **fields}
    if digest is not None:
        payload["digest"] = digest
    payload["proof"] = issuer.mint(proof_of or reviewer, ttl=timedelta(minutes=30))
    return payload


async def refused(handle: WorkflowHandle, payload: dict) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update("submit_decision", payload)
    return str(failed.value.cause)


async def test_a_raw_update_needs_the_reviewers_proof_and_digest_and_the_trace_records_the_verified_identity(
    temporal_env, world_pool, tmp_path
):
    issuer = LocalIssuer(tmp_path)
    async with new_worker(temporal_env.client, world_pool, settings=verified_settings(tmp_path)) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        view = await wait_until_waiting(handle)
        digest = view.gate.digest
        assert view.gate.identity == "verified" and digest.startswith("sha256:")
        assert view.gate.directory_version  # the demo directory's version, as loaded by the seed

        no_proof = {"outcome": "approve", "reviewer": "vp_ops_raj", "reason": "ok", "digest": digest}
        assert "needs a proof that you are vp_ops_raj" in await refused(handle, no_proof)
        assert "this proof is buyer_pat's" in await refused(handle, decision(issuer, "vp_ops_raj", digest, proof_of="buyer_pat"))
        stale = decision(issuer, "vp_ops_raj", "sha256:" + "1" * 64)
        assert "the evidence changed since you looked" in await refused(handle, stale)
        assert "buyer_pat requested this case" in await refused(handle, decision(issuer, "buyer_pat", digest))
        view = await case_view(handle)
        assert view.state.value == "waiting" and view.decision is None

        await handle.execute_update("submit_decision", decision(issuer, "vp_ops_raj", digest))
        await handle.result()
        await save_history(handle, CaseKind.PROCUREMENT, "verified_approve")
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert trace["identity"] == "verified" and trace["decided_by"] == "vp_ops_raj"
    assert trace["decided_identity"]["issuer"] == "hitl-local" and trace["decided_identity"]["token_id"]
    assert trace["evidence_digest"] == digest
    directory = await current_directory(world_pool)
    assert directory is not None and trace["directory_version"] == directory.version


async def test_the_subject_of_an_access_case_is_refused_on_the_update_and_the_signal(temporal_env, world_pool, tmp_path):
    issuer = LocalIssuer(tmp_path)
    async with new_worker(temporal_env.client, world_pool, settings=verified_settings(tmp_path)) as worker:
        request = example(CaseKind.ACCESS, human=True, subject_user="sec_rev_eli")
        handle = await start_case(temporal_env.client, request, worker.task_queue)
        digest = (await wait_until_waiting(handle)).gate.digest
        assert "sec_rev_eli is the subject of this case" in await refused(handle, decision(issuer, "sec_rev_eli", digest))
        await handle.signal("decide", decision(issuer, "sec_rev_eli", digest))

        async def kept_as_refused():
            attempts = (await case_view(handle)).rejected_attempts
            assert attempts and "is the subject of this case" in attempts[-1].error

        await assert_eventually(kept_as_refused)
        assert (await case_view(handle)).state.value == "waiting"

        # the inbox agrees with the gate: the subject does not see the case, a colleague does
        cases = CaseClient(temporal_env.client, worker.task_queue)

        async def listed_for(reviewer: str) -> list[str]:
            page = await cases.inbox(reviewer=reviewer, reviewer_groups=["security_reviewers"])
            return [item.case_id for item in page.items]

        async def inbox_agrees():
            assert handle.id in await listed_for("sec_rev_zoe")
            assert handle.id not in await listed_for("sec_rev_eli")

        await assert_eventually(inbox_agrees)
        await handle.terminate("test over")


async def test_a_reviewer_removed_from_the_directory_mid_wait_can_no_longer_decide(temporal_env, world_pool, tmp_path):
    issuer = LocalIssuer(tmp_path)
    async with new_worker(temporal_env.client, world_pool, settings=verified_settings(tmp_path)) as worker:
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        digest = (await wait_until_waiting(handle)).gate.digest
        directory = await current_directory(world_pool)
        assert directory is not None
        # a new directory version: vp_ops_raj leaves the ops VP approvers
        document = directory.document()
        document["version"] = f"{directory.version}-raj-moved"
        for group in document["groups"]:
            if group["id"] == "ops_vp_approvers":
                group["members"] = [m for m in group["members"] if m != "vp_ops_raj"]
        async with world_pool.acquire() as conn:
            await load_directory(conn, Directory.model_validate(document), "test")
        assert "vp_ops_raj may not decide" in await refused(handle, decision(issuer, "vp_ops_raj", digest))
        await handle.execute_update("submit_decision", decision(issuer, "vp_proc_dana", digest))
        result = await handle.result()
        assert result.decided_by == "vp_proc_dana"
    trace = json.loads((await trace_row(world_pool, handle))["trace"])
    assert trace["directory_version"].endswith("-raj-moved")


async def test_a_case_its_policy_decides_is_not_held_up_by_an_unreachable_identity_provider(temporal_env, world_pool, tmp_path):
    """The first round reads the issuers' keys with its precedents, before it knows whether a gate
    opens. With the identity provider down, a case the policy decides goes ahead, and one that needs
    a person waits at its gate's own read of the keys, where `hitl ops stuck` shows it."""
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = verified_settings(tmp_path).model_copy(update={"oidc_issuer": down, "oidc_audience": "hitl"})
    async with new_worker(temporal_env.client, world_pool, settings=settings) as worker:
        auto = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        human = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        result = await auto.result()

        async def reading_the_gate() -> None:
            pending = (await human.describe()).raw_description.pending_activities
            assert [a.activity_id for a in pending] == ["read-gate"], pending

        await assert_eventually(reading_the_gate, timeout=60, interval=0.5)
        assert (await case_view(human)).state == "gathering"
        await human.terminate("test over")
    assert result.decided_via == "policy"
