"""`hitl precedent show | retract` and `hitl trace` after a re-run, through the real `hitl` binary,
against a migrated database of their own; the decisions are recorded by the real `record_decision`."""

from __future__ import annotations

import json

import asyncpg
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.case_activities import CaseActivities
from activities.migrations import apply_migrations
from activities.store.audit import case_rows
from activities.store.precedents import find_precedents
from gates.audit import AuditKind
from gates.cases import CaseKind
from gates.messages import RecordDecisionInput, RecordReceipt
from tests.helpers import clean_env, run_hitl
from tests.integration.test_one_truth import decided
from workers.config import Settings


@pytest_asyncio.fixture
async def pool(empty_database_url: str):
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(empty_database_url, min_size=1, max_size=2)
    yield pool
    await pool.close()


@pytest.fixture
def env(empty_database_url: str) -> dict[str, str]:
    return clean_env(HITL_DATABASE_URL=empty_database_url)


async def record(pool: asyncpg.Pool, decision: RecordDecisionInput) -> RecordReceipt:
    return await ActivityEnvironment().run(CaseActivities(pool, Settings(_env_file=None)).record_decision, decision)


async def test_show_a_verified_decisions_precedent_retract_it_once_and_the_chain_records_who_and_why(pool, env):
    decision = decided("update", "verified")
    case_id = decision.trace.case_id
    trace_id = (await record(pool, decision)).trace_id
    [recorded] = [r for r in await case_rows(pool, case_id) if r.kind == AuditKind.TRACE_RECORDED]

    shown = await run_hitl(env, "precedent", "show", str(trace_id))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"precedent of trace {trace_id}: case {case_id} ({CaseKind.PROCUREMENT.value})"
    assert "  decided by  vp_ops_raj via update (verified by hitl-local)" in lines
    assert f"  chain       global_seq {recorded.global_seq} (the trace's trace_recorded row)" in lines
    assert "  status      cited by new cases of its kind and band" in lines

    retracted = await run_hitl(env, "precedent", "retract", str(trace_id), "--reason", "the quote was forged", "--as", "op_lee")
    assert retracted.returncode == 0, retracted.stderr
    assert "no new case cites it" in retracted.stdout and "as op_lee (identity asserted)" in retracted.stdout
    cited = await find_precedents(
        pool, kind=CaseKind.PROCUREMENT, amount_band="amount_10k_50k", tags=[], exclude_case_id=None, limit=5, reason_chars=50
    )
    assert cited == []

    again = await run_hitl(env, "precedent", "retract", str(trace_id), "--reason", "once more", "--as", "op_kim")
    assert again.returncode == 1
    assert again.stderr.startswith(f"hitl: refused: the precedent of trace {trace_id} was retracted already, at ")
    assert again.stderr.rstrip().endswith("by op_lee (identity asserted): the quote was forged")

    document = json.loads((await run_hitl(env, "precedent", "show", str(trace_id), "--json")).stdout)
    assert document["chain_global_seq"] == recorded.global_seq
    assert document["identity"] == {"mode": "verified", "issuer": "hitl-local", "channel": "update"}
    assert {k: document["retracted"][k] for k in ("by", "identity", "reason")} == {
        "by": "op_lee",
        "identity": "asserted",
        "reason": "the quote was forged",
    }

    events = [r for r in await case_rows(pool, case_id) if r.kind == AuditKind.PRECEDENT_RETRACTED]
    assert [json.loads(r.body_canonical) for r in events] == [
        {"operator": "op_lee", "operator_identity": "asserted", "reason": "the quote was forged", "trace_id": trace_id}
    ]
    verified = await run_hitl(env, "audit", "verify", "--case", case_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_trace_that_is_not_precedent_an_unknown_trace_and_bad_input_are_one_line_errors(pool, env):
    policy_trace = (await record(pool, decided("policy", None))).trace_id
    asserted_trace = (await record(pool, decided("signal", "asserted"))).trace_id

    not_precedent = await run_hitl(env, "precedent", "show", str(policy_trace))
    assert (not_precedent.returncode, not_precedent.stderr) == (
        1,
        f"hitl: trace {policy_trace} is not precedent: it was decided via policy, not by a reviewer\n",
    )
    asserted = await run_hitl(env, "precedent", "retract", str(asserted_trace), "--reason", "r", "--as", "op_lee")
    assert (asserted.returncode, asserted.stderr) == (
        1,
        f"hitl: trace {asserted_trace} is not precedent: its reviewer's identity was asserted, not verified\n",
    )
    unknown = await run_hitl(env, "precedent", "show", "999999")
    assert unknown.returncode == 1 and unknown.stderr.startswith("hitl: no decision trace 999999")
    assert (await run_hitl(env, "precedent", "show", "first")).returncode == 2
    blank = await run_hitl(env, "precedent", "retract", str(policy_trace), "--reason", " ", "--as", "op_lee")
    assert (blank.returncode, blank.stderr) == (2, "hitl: --reason has no visible characters\n")


async def test_hitl_trace_prints_the_newest_trace_and_the_one_it_supersedes(pool, env):
    first = decided("update", "verified")
    case_id = first.trace.case_id
    rerun = first.model_copy(
        update={
            "decision_key": f"{case_id}#run-2",
            "trace": first.trace.model_copy(update={"run_id": "run-2", "outcome": "reject", "reason": "on hold"}),
        }
    )
    old, new = (await record(pool, first)).trace_id, (await record(pool, rerun)).trace_id

    printed = await run_hitl(env, "trace", case_id, "--format", "json")
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert (document["trace_id"], document["outcome"]) == (new, "reject")
    assert [(e["trace_id"], e["outcome"], e["superseded_after"]) for e in document["supersedes"]] == [(old, "approve", "re-run")]
    precedents = await pool.fetch("SELECT decision_trace_id, retracted_at IS NULL AS cited FROM precedents ORDER BY id")
    assert [tuple(p) for p in precedents] == [(old, False), (new, True)]
