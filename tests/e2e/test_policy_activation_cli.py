"""`hitl policy show`, `history` and `suggest` through the real binary against a real PostgreSQL, over
activations and traces written here with known content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import asyncpg
import pytest

from activities.policy_files import bundled_policy_dir
from activities.store.policy_activations import activate, activate_if_none, activation_history
from activities.store.traces import insert_trace
from gates.cases import CaseKind
from gates.policy import parse_policy_file
from tests.helpers import clean_env, run_hitl
from tests.unit.test_policy_suggest import band, decided

DISCOUNT = bundled_policy_dir() / "discount_policy_v3_2.yaml"


def v3_3() -> str:
    return DISCOUNT.read_text().replace('version: "3.2"', 'version: "3.3"').replace("value: 15}", "value: 18}")


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    for path in bundled_policy_dir().glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    return directory


async def test_show_and_history_say_what_is_in_force_and_what_is_only_a_proposal(world_database_url, policy_dir):
    env = clean_env(HITL_DATABASE_URL=world_database_url, HITL_POLICY_DIR=str(policy_dir))
    done = await run_hitl(env, "policy", "show", "renewal", "--json")
    assert done.returncode == 0, done.stderr
    (renewal,) = json.loads(done.stdout)["kinds"]
    assert renewal["active"] is None and [p["policy_ref"] for p in renewal["proposals"]] == ["discount_policy_v3_2"]

    conn = await asyncpg.connect(world_database_url)
    try:
        await activate_if_none(conn, policy_text=DISCOUNT.read_text(), reason=f"initial activation: newest file in {policy_dir}")
        (policy_dir / "discount_policy_v3_3.yaml").write_text(v3_3())
        shown = await run_hitl(env, "policy", "show", "renewal")
        assert shown.returncode == 0, shown.stderr
        assert "renewal_discount_exception: discount_policy_v3_2 in force since" in shown.stdout
        assert "approved by nobody (initial activation)" in shown.stdout
        assert "proposal, not in force: discount_policy_v3_3" in shown.stdout

        await activate(
            conn,
            policy_text=v3_3(),
            approved_by=["fin_dir_omar", "cfo_jane"],
            reason="DISC-2 at 18%",
            change_id="pc-e2e",
            trace_id="42",
        )
    finally:
        await conn.close()
    done = await run_hitl(env, "policy", "show", "renewal", "--json")
    (renewal,) = json.loads(done.stdout)["kinds"]
    assert renewal["active"]["policy_ref"] == "discount_policy_v3_3" and renewal["proposals"] == []
    assert renewal["active"]["approved_by"] == ["fin_dir_omar", "cfo_jane"] and renewal["active"]["change_id"] == "pc-e2e"

    history = await run_hitl(env, "policy", "history", "renewal", "--json")
    assert history.returncode == 0, history.stderr
    refs = [a["policy_ref"] for a in json.loads(history.stdout)["activations"]]
    assert refs == ["discount_policy_v3_3", "discount_policy_v3_2"]
    text = await run_hitl(env, "policy", "history", "renewal")
    assert "discount_policy_v3_3 (in force)" in text.stdout and "discount_policy_v3_2 (superseded)" in text.stdout
    assert "change pc-e2e, trace 42" in text.stdout
    empty = await run_hitl(env, "policy", "history", "access")
    assert empty.returncode == 0 and "no version activated yet" in empty.stdout

    wrong = await run_hitl(env, "policy", "history", "payroll")
    assert wrong.returncode == 2 and "payroll" in wrong.stderr


async def test_suggest_writes_a_proposal_from_consistent_precedent_and_activates_nothing(
    world_database_url, policy_dir, tmp_path
):
    env = clean_env(HITL_DATABASE_URL=world_database_url, HITL_POLICY_DIR=str(policy_dir))
    conn = await asyncpg.connect(world_database_url)
    try:
        for n, pct in enumerate(band(24)):
            trace = decided(n, pct)
            await insert_trace(conn, f"key-{n}", trace)
        before = await activation_history(conn, CaseKind.RENEWAL)
    finally:
        await conn.close()
    out = tmp_path / "out"
    out.mkdir()
    done = await run_hitl(env, "policy", "suggest", "--kind", "renewal", "--out", str(out), "--min-cases", "20")
    assert done.returncode == 0, done.stderr
    assert "DISC-3: threshold gt 25 -> gt 30: 24 of 24 verified decisions where DISC-3 fired were approved" in done.stdout
    written = out / "discount_policy_v3_3.yaml"
    assert f"wrote discount_policy_v3_3 to {written}" in done.stdout
    assert parse_policy_file(written.read_bytes(), written).version == "3.3"
    assert written.read_text().startswith("# Suggested by `hitl policy suggest`")

    again = await run_hitl(env, "policy", "suggest", "--kind", "renewal", "--out", str(out))
    assert again.returncode == 2 and "exists; suggest never overwrites a file" in again.stderr

    nothing = await run_hitl(env, "policy", "suggest", "--kind", "access", "--out", str(out), "--json")
    assert nothing.returncode == 0, nothing.stderr
    (access,) = json.loads(nothing.stdout)["kinds"]
    assert access["suggestions"] == [] and access["written_to"] is None
    assert sorted(p.name for p in out.iterdir()) == ["discount_policy_v3_3.yaml"]

    conn = await asyncpg.connect(world_database_url)
    try:
        assert await activation_history(conn, CaseKind.RENEWAL) == before
    finally:
        await conn.close()
