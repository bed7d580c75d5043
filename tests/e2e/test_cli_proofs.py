"""The case commands in verified identity mode, as a user runs them: `hitl approve | reject | ops ...`
attach a proof signed by the state directory's local issuer and the case's evidence digest, and
`hitl show` prints the digest to decide on and who may not decide and why. Subprocesses against the
real dev server, a real worker in verified mode and the seeded demo world (its directory's operators)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demo.examples import example
from gates.cases import CaseKind
from hitl_temporal.cli.credentials import TOKEN_FILE_NAME, CachedLogin, save_login
from tests.case_helpers import start_case, trace_row, wait_until_waiting
from tests.helpers import assert_eventually, new_worker, run_hitl
from workers.config import Settings

hitl = run_hitl
STALE = "sha256:" + "0" * 64


@pytest.fixture
def verified(tmp_path: Path) -> Settings:
    """A worker that trusts the local issuer of a state directory of this test's own."""
    return Settings(_env_file=None, database_url=None, identity="verified", state_dir=tmp_path / "state")


def cli(cli_env, settings: Settings, task_queue: str, tmp_path: Path, **more: str) -> dict[str, str]:
    """The CLI's environment: the worker's state directory (so its proofs verify), verified mode, no login."""
    return cli_env(task_queue) | {
        "HITL_IDENTITY": "verified",
        "HITL_STATE_DIR": str(settings.state_dir),
        "HITL_CONFIG_DIR": str(tmp_path / "config"),
        **more,
    }


async def traced(pool, handle) -> dict:
    async def recorded():
        row = await trace_row(pool, handle)
        assert row is not None
        return json.loads(row["trace"])

    return await assert_eventually(recorded, timeout=30, interval=0.3)


async def test_approve_as_a_reviewer_carries_a_proof_and_the_current_digest_and_show_says_who_verified_by_whom(
    temporal_env, world_pool, cli_env, verified, tmp_path
):
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli(cli_env, verified, worker.task_queue, tmp_path)
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        digest = (await wait_until_waiting(handle)).gate.digest
        assert digest and digest.startswith("sha256:")

        shown = await hitl(env, "show", handle.id)
        assert shown.returncode == 0, shown.stderr
        assert f"evidence digest: {digest}  (hitl approve {handle.id} --digest {digest} ...)" in shown.stdout
        assert "identity: verified" in shown.stdout and "directory: version " in shown.stdout

        ok = await hitl(env, "approve", handle.id, "--as", "vp_ops_raj", "--reason", "within the reserved budget")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "accepted: approve by vp_ops_raj accepted at level 2"
        assert f"decided on the case's evidence as it stood just now: digest {digest}" in ok.stderr

        trace = await traced(world_pool, handle)
        assert trace["decided_by"] == "vp_ops_raj" and trace["identity"] == "verified"
        assert trace["decided_identity"]["issuer"] == "hitl-local" and trace["decided_identity"]["channel"] == "submit_decision"
        assert trace["evidence_digest"] == digest

        traced_text = await hitl(env, "trace", handle.id)
        assert traced_text.returncode == 0, traced_text.stderr
        assert "decided_identity:" in traced_text.stdout and f"evidence_digest: {digest}" in traced_text.stdout
        decided = await hitl(env, "show", handle.id)
        assert "identity: vp_ops_raj, verified by hitl-local via submit_decision" in decided.stdout
        assert f"evidence digest: {digest}" in decided.stdout


async def test_a_stale_digest_is_refused_and_the_digest_hitl_show_printed_is_accepted(
    temporal_env, world_pool, cli_env, verified, tmp_path
):
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli(cli_env, verified, worker.task_queue, tmp_path)
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)

        stale = await hitl(env, "approve", handle.id, "--as", "fin_rev_ana", "--reason", "precedent", "--digest", STALE)
        assert stale.returncode == 1
        assert stale.stderr.strip() == "hitl: rejected: the evidence changed since you looked: hitl show CASE"
        malformed = await hitl(env, "approve", handle.id, "--as", "fin_rev_ana", "--reason", "precedent", "--digest", "abc")
        assert malformed.returncode == 2 and "digest" in malformed.stderr and "Traceback" not in malformed.stderr

        digest = json.loads((await hitl(env, "show", handle.id, "--json")).stdout)["gate"]["digest"]
        ok = await hitl(env, "reject", handle.id, "--as", "fin_rev_ana", "--reason", "no precedent", "--digest", digest)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "accepted: reject by fin_rev_ana accepted at level 1"
        assert "decided on the case's evidence" not in ok.stderr  # it said which digest itself
        assert (await traced(world_pool, handle))["evidence_digest"] == digest


async def test_a_proof_signed_with_another_state_directorys_key_is_refused(temporal_env, world_pool, cli_env, verified, tmp_path):
    """Anyone can type --as vp_ops_raj; only a proof from an issuer the worker trusts makes it so."""
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli(cli_env, verified, worker.task_queue, tmp_path, HITL_STATE_DIR=str(tmp_path / "elsewhere"))
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        forged = await hitl(env, "approve", handle.id, "--as", "vp_ops_raj", "--reason", "looks fine")
        assert forged.returncode == 1, forged.stderr
        assert forged.stderr.startswith("hitl: rejected: ") and "hitl-local" in forged.stderr
        assert (await wait_until_waiting(handle)).state == "waiting"


async def test_show_explains_who_may_not_decide_and_an_operator_needs_the_directorys_role(
    temporal_env, world_pool, cli_env, verified, tmp_path
):
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli(cli_env, verified, worker.task_queue, tmp_path)
        handle = await start_case(temporal_env.client, example(CaseKind.RENEWAL, human=True), worker.task_queue)
        await wait_until_waiting(handle)

        shown = await hitl(env, "show", handle.id)
        assert "routing explained: fin_rev_greta: “fin_rev_greta is inactive in the directory”" in shown.stdout

        no_role = await hitl(env, "ops", "escalate", handle.id, "--as", "fin_rev_ben", "--reason", "deal closes today", "--yes")
        assert no_role.returncode == 1
        assert no_role.stderr.startswith("hitl: refused: ") and "fin_rev_ben has no operator role" in no_role.stderr
        requester = await hitl(env, "ops", "note", handle.id, "--as", "ae_sam", "--reason", "please hurry", "--yes")
        assert requester.returncode == 1 and "ae_sam requested this case and may not operate it" in requester.stderr

        done = await hitl(env, "ops", "escalate", handle.id, "--as", "fin_cos_raf", "--reason", "deal closes today", "--yes")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"{handle.id}: escalated from level 1 to level 2 (finance_directors)"
        shown = await hitl(env, "show", handle.id)
        assert "escalate by fin_cos_raf (fin_cos_raf, verified by hitl-local via operator_action)" in shown.stdout


async def test_without_as_the_local_issuer_asks_for_it_before_sending_anything(cli_env, verified, tmp_path):
    env = cli(cli_env, verified, "unused", tmp_path)
    for command in (("approve", "some-case", "--reason", "ok"), ("ops", "note", "some-case", "--reason", "x", "--yes")):
        result = await hitl({**env, "USER": ""}, *command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().startswith("hitl: give --as ")


async def test_with_an_oidc_login_as_may_be_left_out_and_another_person_is_refused_before_sending(cli_env, tmp_path):
    issuer = "https://id.example.com"
    config = tmp_path / "config"
    login = CachedLogin(
        issuer=issuer,
        client_id="hitl-cli",
        access_token="opaque",
        id_token="header.claims.signature",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        person="fin_rev_ana",
    )
    save_login(login, config / TOKEN_FILE_NAME)
    env = cli_env("unused") | {
        "HITL_IDENTITY": "verified",
        "HITL_OIDC_ISSUER": issuer,
        "HITL_OIDC_CLIENT_ID": "hitl-cli",
        "HITL_CONFIG_DIR": str(config),
        "USER": "ops_oncall",
    }
    other = await hitl(env, "approve", "renewal_discount_exception:nobody/fy01", "--as", "vp_ops_raj", "--reason", "ok")
    assert other.returncode == 2
    assert "you are logged in as fin_rev_ana, not vp_ops_raj" in other.stderr
    # no --as: the login's person decides (and operates, not $USER): the command goes on to find the case
    unknown = "renewal_discount_exception:nobody/fy01"
    for command in (("approve", unknown, "--reason", "ok"), ("ops", "note", unknown, "--reason", "ok", "--yes")):
        result = await hitl(env, *command)
        assert result.returncode == 1, result.stderr
        assert "no case renewal_discount_exception:nobody/fy01" in result.stderr


async def test_hitl_delegate_lets_a_colleague_decide_for_you_in_this_case_and_the_trace_names_both(
    temporal_env, world_pool, cli_env, verified, tmp_path
):
    async with new_worker(temporal_env.client, world_pool, settings=verified) as worker:
        env = cli(cli_env, verified, worker.task_queue, tmp_path)
        handle = await start_case(temporal_env.client, example(CaseKind.PROCUREMENT, human=True), worker.task_queue)
        await wait_until_waiting(handle)
        # the requester's side cannot be made a delegate; a reviewer delegates to a colleague
        refused = await hitl(env, "delegate", handle.id, "--to", "buyer_pat", "--reason", "offsite", "--as", "vp_ops_raj")
        assert refused.returncode == 1 and "buyer_pat requested this case" in refused.stderr
        ok = await hitl(env, "delegate", handle.id, "--to", "ops_rev_kim", "--reason", "offsite", "--as", "vp_ops_raj")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == f"{handle.id}: ops_rev_kim may decide for vp_ops_raj in this case"
        approved = await hitl(env, "approve", handle.id, "--as", "ops_rev_kim", "--reason", "quote checked")
        assert approved.returncode == 0, approved.stderr
        trace = await traced(world_pool, handle)
        assert trace["decided_by"] == "ops_rev_kim" and trace["acting_for"] == "vp_ops_raj"
        assert trace["delegation"] == "delegated by vp_ops_raj, for this case only"
        assert [(a["action"], a["identity"]["person"]) for a in trace["operator_actions"]] == [("delegate", "vp_ops_raj")]
