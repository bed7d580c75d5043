"""The benchmark keeps working: `python -m bench.run --quick` runs end to end on its own fresh stack
and writes every figure BENCHMARKS.md describes as a number. No timing is asserted here: CI machines
are noisy, and the targets are judged on a quiet machine with the full run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PATHS = ("auto", "approve_update", "approve_signal", "request_info", "escalate_to_timeout")
RUNNERS = ("project", "default_sandbox", "passthrough_all", "unsandboxed", "project_no_pyc")
VARIANTS = ("product", "before_lean", "before_local_gathers", "merged_upserts")

FIGURES = [
    # 1. throughput ratio
    *(f"results.throughput.{w}.{f}" for w in ("bare", "real") for f in (
        "cases_per_s", "worker_cpu_ms_per_case", "server_cpu_ms_per_case", "postgres_cpu_ms_per_case")),
    "results.throughput.ratio",
    # 2. decision latency, update and signal, unloaded and at half the real throughput
    *(
        f"results.latency.{mode}.{ch}.{p}"
        for mode in ("unloaded", "loaded")
        for ch in ("update", "signal")
        for p in ("p50", "p95", "p99")
    ),
    "results.latency.loaded_target_rate_cases_per_s",
    "results.latency.loaded_achieved_rate_cases_per_s",
    "results.latency.unloaded_all_p99_ms",
    *(f"results.latency.unloaded_steps_ms_median.{ch}.{k}" for ch in ("update", "signal")
      for k in ("decision_task_ms", "activity_dispatch_ms", "record_activity_ms")),
    "results.latency.postgres_commit_ms.p50",
    # 3. history cost against the floor, worker CPU per path, sandbox and variants
    *(
        f"results.history.paths.{p}.{f}"
        for p in (*PATHS, "bare")
        for f in (
            "events_mean",
            "floor_mean",
            "floor_if_regular_mean",
            "local_activities_mean",
            "upserts_mean",
            "workflow_tasks_mean",
        )
    ),
    *(f"results.history.worker_cpu_ms_per_case.{p}" for p in PATHS),
    *(f"results.micro.{k}" for k in ("load_policies_cpu_ms", "load_policies_c_yaml_cpu_ms", "policy_cache_hit_cpu_ms")),
    *(f"results.sandbox.{r}.{f}" for r in RUNNERS for f in ("worker_cpu_ms_per_case", "cases_per_s")),
    "results.sandbox.sandbox_cost_ms_per_case",
    "results.sandbox.passthrough_all_saves_ms_per_case",
    "results.sandbox.no_pyc_costs_ms_per_case",
    *(f"results.variants.{v}.{f}" for v in VARIANTS for f in (
        "events_per_case", "upserts_per_case", "workflow_tasks_per_case", "worker_cpu_ms_per_case", "server_cpu_ms_per_case",
        "cpu_ms_per_case", "cases_per_s", "ratio_vs_bare")),
    "results.variants.bare.cases_per_s",
    # 2b. verified identity against asserted and bare, per case, and the pieces measured apart
    *(f"results.trust.per_case.{m}.{f}" for m in ("bare", "asserted", "verified") for f in (
        "events_per_case", "local_activities_per_case", "worker_cpu_ms_per_case", "cpu_ms_per_case", "ratio_vs_bare")),
    *(f"results.trust.per_case.{m}.decision_{ch}_ms.{p}" for m in ("asserted", "verified") for ch in ("update", "signal")
      for p in ("p50", "p99")),
    *(f"results.trust.verification_cost_per_case.{f}" for f in ("events_per_case", "worker_cpu_ms_per_case", "cpu_ms_per_case")),
    *(f"results.trust.without_trust_patch.{v}.{f}" for v in ("product", "asserted", "before_trust")
      for f in ("events_per_case", "worker_cpu_ms_per_case", "ratio_vs_bare")),
    "results.throughput.asserted_ratio",
    *(f"results.micro.{k}" for k in ("verify_proof_cpu_ms", "mint_proof_cpu_ms", "directory_reread_wall_ms_median",
                                     "resolve_trust_local_wall_ms_median")),
    # 4. scale
    "results.scale.cases",
    "results.scale.open_seconds",
    "results.scale.worker_rss_peak_mb",
    *(f"results.scale.visibility.{q}_ms_median" for q in ("list_all", "list_first_page_50", "count_inbox", "count_waiting")),
    *(f"results.scale.visibility.{q}_ms_median" for q in ("inbox_page", "inbox_reviewer_page", "inbox_all", "cli_inbox")),
    "results.scale.visibility.inbox_page_total",
    "results.scale.visibility.rows",
    "results.scale.escalation.lag_s.p50",
    "results.scale.escalation.lag_s.p99",
    "results.scale.escalation.all_escalated_after_last_deadline_s",
    # the machine
    "machine.nproc",
    "machine.memory_gib",
]
STRINGS = [
    "command",
    "machine.cpu_model",
    "versions.python",
    "versions.temporalio",
    "versions.temporal_cli",
    "versions.postgresql",
]


def _get(doc: dict, dotted: str):
    value = doc
    for part in dotted.split("."):
        assert isinstance(value, dict) and part in value, f"{dotted}: missing {part!r}"
        value = value[part]
    return value


@pytest.mark.slow
def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "HITL_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    assert "1. Throughput" in proc.stdout and "4. Scale" in proc.stdout, proc.stdout[-3000:]

    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    problems = []
    for dotted in FIGURES:
        try:
            value = _get(doc, dotted)
        except AssertionError as err:
            problems.append(str(err))
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{dotted}: {value!r} is not a finite number")
    for dotted in STRINGS:
        value = _get(doc, dotted)
        if not isinstance(value, str) or not value:
            problems.append(f"{dotted}: {value!r} is not a non-empty string")
    assert not problems, "\n".join(problems)
    # Every case of the scale phase was open and waiting at once, and every one escalated.
    assert doc["results"]["scale"]["escalation"]["all_escalated"] is True
    # Verified decisions went through (a refused proof or digest would have left the cases waiting).
    latency = doc["results"]["latency"]
    assert latency["unloaded"]["update"]["n"] > 0 and latency["asserted_unloaded"]["signal"]["n"] > 0
    assert doc["results"]["latency"]["loaded"]["update"]["n"] > 0 and doc["results"]["latency"]["loaded"]["signal"]["n"] > 0
    # The inbox of the scale phase lists the Finance cases the raw visibility query finds.
    visibility = doc["results"]["scale"]["visibility"]
    assert 0 < visibility["inbox_page_total"] <= visibility["rows"], visibility
