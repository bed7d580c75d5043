"""`hitl policy agreement` and `hitl policy whatif` through the real binary, over cases run here on the
real dev server and PostgreSQL and decided with known outcomes. The expected numbers come from what
each case's brief proposed (read from the case before deciding it) and the outcomes given here."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from activities.policy_files import bundled_policy_dir, load_policies
from demo.examples import example
from gates.agreement import wilson_interval
from gates.cases import CaseKind
from gates.gate import Decision, DecisionOutcome
from tests.case_helpers import start_case, trace_row, twin, wait_until_waiting
from tests.helpers import clean_env, new_worker, run_hitl

DISCOUNT_FILE = bundled_policy_dir() / "discount_policy_v3_2.yaml"
POLICY_OF = {kind.value: policy.ref for kind, policy in load_policies(bundled_policy_dir()).items()}


def discount_variant(tmp_path: Path, change) -> Path:
    """The bundled discount policy as version 3.3, changed by `change(document)`, in a file named for it."""
    document = yaml.safe_load(DISCOUNT_FILE.read_text())
    document["version"] = "3.3"
    change(document)
    path = tmp_path / "discount_policy_v3_3.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def decide_cases(client, world_pool) -> dict[str, dict]:
    """Three renewal cases and an access case decided by reviewers, a renewal decided by policy:
    per case ID, what the brief proposed and what was decided."""
    plan = [
        (twin(CaseKind.RENEWAL, 0), "approve", "evidence supports it", "update"),
        (twin(CaseKind.RENEWAL, 1), "approve", "same outage, same answer", "update"),
        (twin(CaseKind.RENEWAL, 2), "reject", "margin too thin this quarter", "signal"),
        (twin(CaseKind.ACCESS, 0), "reject", "use break-glass instead", "update"),
    ]
    decided: dict[str, dict] = {}
    handles = []
    async with new_worker(client, world_pool) as worker:
        for request, outcome, reason, via in plan:  # one after the other: each may cite the one before
            handle = await start_case(client, request, worker.task_queue)
            view = await wait_until_waiting(handle)
            assert view.proposal is not None and view.gate is not None
            reviewer = view.gate.may_decide[0]
            if via == "update":
                decision = Decision(outcome=DecisionOutcome(outcome), reviewer=reviewer, reason=reason)
                await handle.execute_update("submit_decision", decision)
            else:
                await handle.signal("decide", {"outcome": outcome, "reviewer": reviewer, "reason": reason})
            await handle.result()
            handles.append(handle)
            proposed = view.proposal.outcome
            decided[handle.id] = {"kind": request.kind.value, "proposed": proposed, "outcome": outcome, "reason": reason}
        auto = await start_case(client, example(CaseKind.RENEWAL, human=False), worker.task_queue)
        await auto.result()
        handles.append(auto)
        decided[auto.id] = {"kind": CaseKind.RENEWAL.value, "proposed": "approve", "outcome": "approve", "reason": None}
    for handle in handles:
        decided[handle.id]["via"] = (await trace_row(world_pool, handle))["decided_via"]
    return decided


async def test_agreement_and_whatif_report_the_numbers_of_the_cases_decided_here(
    temporal_env, world_pool, world_database_url, tmp_path: Path
):
    decided = await decide_cases(temporal_env.client, world_pool)
    env = clean_env(HITL_DATABASE_URL=world_database_url)

    # -- agreement -------------------------------------------------------------------------------
    done = await run_hitl(env, "policy", "agreement", "--json", "--png", str(tmp_path / "agreement.png"))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    counted = {c: d for c, d in decided.items() if d["via"] in ("update", "signal") and d["proposed"] in ("approve", "reject")}
    agreed = {c for c, d in counted.items() if d["outcome"] == d["proposed"]}
    assert agreed and len(agreed) < len(counted), "the cases decided here agree and disagree with their briefs"
    assert (report["decisions"], report["agreed"]) == (len(counted), len(agreed))
    assert report["not_counted"]["by_policy"] == 1
    totals = {(t["kind"], t["policy"]): t for t in report["totals"]}
    for kind in sorted({d["kind"] for d in counted.values()}):
        policy = POLICY_OF[kind]
        of_kind = {c: d for c, d in counted.items() if d["kind"] == kind}
        agreeing = sum(d["outcome"] == d["proposed"] for d in of_kind.values())
        total = totals[(kind, policy)]
        assert (total["decisions"], total["agreed"]) == (len(of_kind), agreeing)
        low, high = wilson_interval(agreeing, len(of_kind)) or (None, None)
        assert (total["low"], total["high"]) == (low, high)
        assert [(d["case_id"], d["reason"]) for d in total["disagreements"]] == [
            (c, d["reason"]) for c, d in of_kind.items() if d["outcome"] != d["proposed"]
        ]
        assert [w["decisions"] for w in total["weekly"]] == [len(of_kind)], "all decided this week"
    assert (tmp_path / "agreement.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    recent = json.loads((await run_hitl(env, "policy", "agreement", "--since", "1h", "--json")).stdout)
    later = json.loads((await run_hitl(env, "policy", "agreement", "--since", "2999-01-01", "--json")).stdout)
    assert (recent["decisions"], later["decisions"]) == (len(counted), 0)
    only_access = json.loads((await run_hitl(env, "policy", "agreement", "--kind", "access", "--json")).stdout)
    assert {t["kind"] for t in only_access["totals"]} <= {CaseKind.ACCESS.value}

    # -- what-if ---------------------------------------------------------------------------------
    renewals = {c: d for c, d in decided.items() if d["kind"] == CaseKind.RENEWAL.value}
    same = json.loads((await run_hitl(env, "policy", "whatif", str(DISCOUNT_FILE), "--json")).stdout)
    assert same["totals"]["cases"] == len(renewals), "every renewal decided here, and nothing else"
    assert same["totals"]["unchanged"] == len(renewals), "the policy they were decided under moves nothing"

    def loosen(document: dict) -> None:  # only the missing-data rule left: nothing else needs a human
        document["rules"] = [r for r in document["rules"] if r["id"] == "DISC-1"]

    done = await run_hitl(env, "policy", "whatif", str(discount_variant(tmp_path, loosen)), "--json")
    assert done.returncode == 0, done.stderr
    loose = json.loads(done.stdout)
    by_human = [c for c, d in renewals.items() if d["via"] != "policy"]
    rejected = [c for c, d in renewals.items() if d["via"] != "policy" and d["outcome"] == "reject"]
    assert loose["rejected_would_pass"] == rejected
    assert loose["totals"]["human_to_none"] == len(by_human)
    assert loose["totals"]["cannot_tell"] == 0
    cases = {c["case_id"]: c for c in loose["cases"]}
    for case_id in by_human:
        assert "human needed -> not needed" in cases[case_id]["changes"]
    text = await run_hitl(env, "policy", "whatif", str(discount_variant(tmp_path, loosen)))
    assert f"{rejected[0]} " in text.stdout and "REJECTED by a human, would now pass without one" in text.stdout

    def stricter(document: dict) -> None:  # above 5% is already an exception
        next(r for r in document["rules"] if r["id"] == "DISC-2")["when"]["value"] = 5

    strict = json.loads((await run_hitl(env, "policy", "whatif", str(discount_variant(tmp_path, stricter)), "--json")).stdout)
    [auto] = [c for c, d in renewals.items() if d["via"] == "policy"]
    assert {c["case_id"]: c for c in strict["cases"]}[auto]["changes"][0] == "human not needed -> needed"
    assert strict["totals"]["none_to_human"] == 1 and strict["rejected_would_pass"] == []


async def test_whatif_refuses_a_bad_policy_file_in_one_line(world_database_url, tmp_path: Path):
    bad = tmp_path / "discount_policy_v3_3.yaml"
    bad.write_text(DISCOUNT_FILE.read_text().replace('version: "3.2"', 'version: "3.3"').replace("op: gt", "op: greater"))
    done = await run_hitl(clean_env(HITL_DATABASE_URL=world_database_url), "policy", "whatif", str(bad))
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert "invalid policy" in done.stderr and "Traceback" not in done.stderr
