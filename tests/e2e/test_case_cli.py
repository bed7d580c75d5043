"""The case commands as a user runs them: `hitl start | approve | reject | request-info | show | trace`,
as subprocesses against a real dev server, a real worker and a seeded PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from demo.examples import EXAMPLES
from tests.helpers import assert_eventually, new_worker, run_hitl

CASE = "renewal_discount_exception:acme_enterprise/fy26"


hitl = run_hitl


async def test_start_show_refuse_approve_and_trace_a_renewal_from_the_cli(temporal_env, world_pool, cli_env, tmp_path: Path):
    async with new_worker(temporal_env.client, world_pool) as worker:
        env = cli_env(worker.task_queue)
        # a unique renewal period keeps this case apart from other tests on the shared server
        case_file = tmp_path / "case.json"
        payload = json.loads((EXAMPLES / "renewal_acme_fy26.json").read_text())
        payload["renewal"] = f"fy26-{worker.task_queue[-8:]}"
        case_file.write_text(json.dumps(payload))
        case_id = f"renewal_discount_exception:acme_enterprise/{payload['renewal']}"

        started = await hitl(env, "start", "renewal", "--file", str(case_file), "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout) == {"case_id": case_id, "created": True}
        again = await hitl(env, "start", "renewal", "--file", str(case_file))
        assert again.returncode == 0 and again.stdout.strip() == f"{case_id} (already exists)"

        async def waiting():
            shown = await hitl(env, "show", case_id, "--json")
            assert shown.returncode == 0, shown.stderr
            view = json.loads(shown.stdout)
            assert view["state"] == "waiting"
            return view

        view = await assert_eventually(waiting, timeout=30, interval=0.3)
        assert "fin_rev_ana" in view["gate"]["may_decide"] and "ae_sam" not in view["gate"]["may_decide"]
        text = await hitl(env, "show", case_id)
        assert "may decide now: fin_rev_ana" in text.stdout and "**Proposed**: approve" in text.stdout

        own = await hitl(env, "approve", case_id, "--as", "ae_sam", "--reason", "my deal")
        assert own.returncode == 1
        assert own.stderr.strip() == "hitl: rejected: ae_sam requested this case and may not decide it"
        blank = await hitl(env, "reject", case_id, "--as", "fin_rev_ana", "--reason", " ")
        assert blank.returncode == 2 and "reason" in blank.stderr and "Traceback" not in blank.stderr

        ok = await hitl(env, "approve", case_id, "--as", "fin_rev_ana", "--reason", "service-impact precedent")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "accepted: approve by fin_rev_ana accepted at level 1"
        late = await hitl(env, "request-info", case_id, "--as", "fin_rev_ben", "--reason", "too late")
        assert late.returncode == 1 and "already decided" in late.stderr

        async def recorded():
            traced = await hitl(env, "trace", case_id, "--format", "json")
            assert traced.returncode == 0, traced.stderr
            return json.loads(traced.stdout)

        trace = await assert_eventually(recorded, timeout=20, interval=0.3)
    assert list(trace)[:4] == ["decision_trace", "entities", "inputs", "human_gate"]
    assert trace["decision_trace"] == "renewal_discount_exception"
    assert trace["entities"] == {"account": "acme_enterprise", "renewal": payload["renewal"], "policy": "discount_policy_v3_2"}
    assert "crm: enterprise_arr" in trace["inputs"] and "chat: vp_approval_thread" in trace["inputs"]
    assert (trace["human_gate"], trace["outcome"], trace["decided_by"]) == ("finance", "approve", "fin_rev_ana")
    as_yaml = yaml.safe_load((await hitl(env, "trace", case_id)).stdout)
    assert as_yaml["trace_id"] == trace["trace_id"]


async def test_invalid_case_file_and_unknown_case_get_one_line_errors(cli_env, tmp_path: Path):
    env = cli_env("unused")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"account": "Acme!", "renewal": "fy26", "requested_discount_pct": 140, "requester": "ae_sam"}))
    result = await hitl(env, "start", "renewal", "--file", str(bad))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "invalid renewal_discount_exception case" in line
    for field in ("account", "requested_discount_pct", "justification"):
        assert field in line
    not_json = tmp_path / "not.json"
    not_json.write_text("{oops")
    assert (await hitl(env, "start", "renewal", "--file", str(not_json))).returncode == 2
    missing = await hitl(env, "trace", "renewal_discount_exception:nobody/fy01")
    assert missing.returncode == 1 and "no decision trace recorded" in missing.stderr
    unknown = await hitl(env, "approve", "renewal_discount_exception:nobody/fy01", "--as", "fin_rev_ana", "--reason", "x")
    assert unknown.returncode == 1 and "no case renewal_discount_exception:nobody/fy01" in unknown.stderr
