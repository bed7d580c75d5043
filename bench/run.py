"""One command for the whole benchmark: `python -m bench.run [--quick] [--out bench/results.json]`.

Starts a fresh stack (embedded PostgreSQL, migrated and seeded; the Temporal dev server with the
`hitl dev` flags and the project's search attributes; a bench worker subprocess running the
project's `build_worker` plus the bare approval workflow), then measures, in order:

1. throughput of the real case workflows against the bare approval workflow (same server, same worker);
2. decision latency, update and signal, from the send to the decision row visible in PostgreSQL,
   unloaded and at half the measured real throughput;
3. history cost per path against the floor for the same steps, worker CPU per case and path, the
   sandbox cost (workflow runner variants) and bench-only variants of the proposed changes;
4. scale: N cases open and waiting at once, worker memory, inbox-style visibility queries, and the
   time to escalate them all when their first-level deadlines pass.

It prints a table and writes every figure to JSON (see BENCHMARKS.md for what each one means).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client

from bench import driver
from bench.driver import KINDS, SHORT, Case, TraceWatcher, history_cost, percentiles
from bench.policies import activate_files, write_bundled, write_delays
from bench.stack import ROOT, Stack, WorkerProcess, start_stack, start_worker
from gates import search_attributes as sa
from gates.cases import CaseKind
from gates.gate import DecisionOutcome
from gates.identity import TrustSnapshot
from gates.info_request import InfoAnswer
from workers.client import DATA_CONVERTER, client_interceptors
from workers.devstack import _postgres_bin

REAL_QUEUE = "bench-real"  # the product as configured by default: verified identity, the local issuer
ASSERTED_QUEUE = "bench-asserted"  # the same worker process, identity off (variant `asserted`)
BARE_QUEUE = "bench-bare"
# The product's identity modes measured side by side in the main worker (result key, task queue).
NO_AUDIT_QUEUE = "bench-no-audit"  # the same worker process, verified, no audit rows written (variant `no_audit_writes`)
MODES = (("real", REAL_QUEUE), ("asserted", ASSERTED_QUEUE), ("no_audit", NO_AUDIT_QUEUE))
TARGET_RATIO = 0.6
TARGET_P99_MS = 100.0


@dataclass(frozen=True)
class Config:
    throughput_n: int  # cases per batch, real and bare each
    throughput_rounds: int  # alternating bare/real batches
    concurrency: int  # cases in flight in the closed-loop throughput batches
    latency_n: int  # unloaded decisions per channel
    loaded_seconds: float  # duration of the open-loop run at half the real throughput
    path_repeats: int  # cases per kind per path for the per-path CPU figures
    variant_n: int  # real-mix cases per runner/variant worker
    scale_n: int  # cases open at once
    scale_escalate_after: int  # seconds from a gate opening to its first escalation (bench policy)
    scale_start_concurrency: int
    timeout_delays: tuple[str, str]  # remind_after, escalate_after of every level, timeout path
    warmup_n: int  # real-mix cases run on each new worker/queue before measuring
    compare_rounds: int  # rounds of the runner/variant comparison batches


QUICK = Config(
    throughput_n=6, throughput_rounds=1, concurrency=6, latency_n=3, loaded_seconds=3.0, path_repeats=1,
    variant_n=5, scale_n=50, scale_escalate_after=6, scale_start_concurrency=25, timeout_delays=("0.5s", "1s"),
    warmup_n=3, compare_rounds=1,
)
FULL = Config(
    throughput_n=300, throughput_rounds=2, concurrency=50, latency_n=40, loaded_seconds=45.0, path_repeats=5,
    variant_n=60, scale_n=5000, scale_escalate_after=60, scale_start_concurrency=50, timeout_delays=("1s", "2s"),
    warmup_n=6, compare_rounds=2,
)
# Workflow runners compared (project = workers.worker.WORKFLOW_RUNNER); project_no_pyc is the project
# runner in a worker process without compiled modules (PYTHONDONTWRITEBYTECODE=1, no .pyc anywhere).
RUNNERS = ("project", "default_sandbox", "passthrough_all", "strict", "unsandboxed", "project_no_pyc")
VARIANTS = (
    "before_hardened", "before_lean", "before_local_gathers", "merged_upserts", "asserted", "before_trust", "before_combined",
    "no_audit_writes",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- machine and versions ---------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load1, load5, load15 = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "platform": platform.platform(),
        "load_average_at_start": [round(load1, 2), round(load5, 2), round(load15, 2)],
    }


def versions() -> dict[str, str]:
    temporal = Path(sys.executable).parent / "temporal"
    cli = subprocess.run([str(temporal), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    pg = subprocess.run([_postgres_bin("postgres"), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "python": platform.python_version(),
        "temporalio": importlib.metadata.version("temporalio"),
        "temporal_cli": cli,
        "postgresql": pg,
        "asyncpg": importlib.metadata.version("asyncpg"),
        "pydantic": importlib.metadata.version("pydantic"),
    }


def source_info() -> dict[str, Any]:
    """The commit under measurement and any uncommitted change to product code at the start."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False).stdout

    status = git("status", "--porcelain", "--", "gates", "activities", "workflows", "workers")
    changed = [line[3:] for line in status.splitlines() if len(line) > 3]
    return {"git_head": git("rev-parse", "HEAD").strip(), "uncommitted_product_files": changed}


# --- CPU accounting ---------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.NoSuchProcess:
        return 0.0


class Meter:
    """CPU seconds spent by the worker, the Temporal server, PostgreSQL and this driver process over a span."""

    def __init__(self, stack: Stack, worker: WorkerProcess):
        self.stack, self.worker = stack, worker
        self.server = psutil.Process(stack.temporal_pid())
        self.me = psutil.Process()

    def _pg(self) -> dict[int, float]:
        out = {}
        for pid in self.stack.postgres_pids():
            try:
                out[pid] = _cpu(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "t": time.perf_counter(),
            "worker": self.worker.cpu_seconds(),
            "server": _cpu(self.server),
            "driver": _cpu(self.me),
            "pg": self._pg(),
        }

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        pg = sum(cpu - a["pg"].get(pid, 0.0) for pid, cpu in b["pg"].items())
        return {
            "seconds": b["t"] - a["t"],
            "worker_cpu_s": b["worker"] - a["worker"],
            "server_cpu_s": b["server"] - a["server"],
            "postgres_cpu_s": pg,
            "driver_cpu_s": b["driver"] - a["driver"],
        }


def per_case(d: dict[str, float], n: int) -> dict[str, float]:
    return {
        "cpu_ms_per_case": round(1000 * (d["worker_cpu_s"] + d["server_cpu_s"] + d["postgres_cpu_s"]) / n, 2),
        "cases": n,
        "seconds": round(d["seconds"], 3),
        "cases_per_s": round(n / d["seconds"], 2) if d["seconds"] > 0 else 0.0,
        "worker_cpu_ms_per_case": round(1000 * d["worker_cpu_s"] / n, 2),
        "server_cpu_ms_per_case": round(1000 * d["server_cpu_s"] / n, 2),
        "postgres_cpu_ms_per_case": round(1000 * d["postgres_cpu_s"] / n, 2),
        "driver_cpu_ms_per_case": round(1000 * d["driver_cpu_s"] / n, 2),
    }


class Bench:
    def __init__(self, cfg: Config, quick: bool):
        self.cfg = cfg
        self.quick = quick
        self.stack: Stack | None = None
        self.worker: WorkerProcess | None = None
        self.client: Client | None = None
        self.policy_dir: Path | None = None
        self.results: dict[str, Any] = {}
        self._seq = 0
        self._workers: list[WorkerProcess] = []
        self.reviewers: driver.Reviewers | None = None

    @property
    def policy_source(self) -> Path:
        assert self.stack is not None
        return self.stack.src / "gates" / "policies"

    def emergency_stop(self) -> None:
        """On SIGINT/SIGTERM: stop every child this run started (workers, Temporal, PostgreSQL)."""
        for w in self._workers:
            try:
                w.stop()
            except OSError as err:  # best effort on the way out
                log(f"stopping {w.name}: {err}")
        if self.stack is not None:
            self.stack.stop()

    def tag(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    # -- plumbing ----------------------------------------------------------------------------

    def start_worker(
        self, queues: list[tuple[str, str, str]], bare: str | None, name: str, bytecode: bool = True
    ) -> WorkerProcess:
        assert self.stack is not None
        w = start_worker(
            self.stack, queues=queues, bare_task_queue=bare, policy_dir=self.policy_dir, name=name, bytecode=bytecode
        )
        self._workers.append(w)
        return w

    async def measured(self, worker: WorkerProcess, n: int, body: Callable[[], Awaitable[Any]]) -> tuple[dict[str, float], Any]:
        """Run `body` (n cases) and account the CPU of every process over it. A batch that does not
        finish in 60 s + 5 s per case fails the run with a message instead of hanging it."""
        assert self.stack is not None
        meter = Meter(self.stack, worker)
        a = meter.snapshot()
        out = await within(60 + 5 * n, body(), f"a batch of {n} cases")
        b = meter.snapshot()
        return per_case(Meter.delta(a, b), n), out

    async def real_batch(self, n: int, queue: str, concurrency: int, prefix: str) -> list[Case]:
        assert self.client is not None
        assert self.reviewers is not None
        cases = driver.real_mix(n, self.tag(prefix))
        await driver.run_closed_loop(
            [lambda c=c: driver.run_case(self.client, c, queue, self.reviewers) for c in cases], concurrency
        )
        return cases

    async def bare_batch(self, n: int, queue: str, concurrency: int, prefix: str) -> None:
        assert self.client is not None
        tag = self.tag(prefix)
        runs = [lambda i=i: driver.run_bare(self.client, f"{tag}-{i}", queue) for i in range(n)]
        await driver.run_closed_loop(runs, concurrency)

    async def warm_up(self, queue_real: str, queue_bare: str | None) -> None:
        """A few real-mix cases (and bare ones), so first-use costs stay out of the measurements."""
        n = self.cfg.warmup_n
        await within(120, self.real_batch(n, queue_real, n, "warm"), "the warm-up")
        if queue_bare:
            await within(60, self.bare_batch(3, queue_bare, 3, "warm"), "the bare warm-up")

    # -- 1. throughput ---------------------------------------------------------------------------

    async def throughput(self) -> None:
        cfg, w = self.cfg, self.worker
        assert w is not None
        rounds: list[dict[str, Any]] = []
        names = ("bare", *(name for name, _ in MODES))
        totals = {name: [0, 0.0] for name in names}
        sums: dict[str, dict[str, float]] = {name: {} for name in names}
        costs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in MODES}
        for r in range(cfg.throughput_rounds):
            # bare, verified, asserted; the next round in the reverse order (to spread drift in the machine's load)
            for name in names if r % 2 == 0 else tuple(reversed(names)):
                log(
                    f"throughput round {r + 1}/{cfg.throughput_rounds}: {cfg.throughput_n} {name} cases, "
                    f"{cfg.concurrency} in flight"
                )
                batch = self.bare_batch if name == "bare" else self.real_batch
                queue, prefix = (BARE_QUEUE, "tb") if name == "bare" else (dict(MODES)[name], f"t{name[0]}")
                body = partial(batch, cfg.throughput_n, queue, cfg.concurrency, prefix)
                fig, cases = await self.measured(w, cfg.throughput_n, body)
                if name != "bare":
                    costs[name].append(await self._sample_costs(cases))
                rounds.append({"round": r + 1, "workload": name, **fig})
                totals[name][0] += cfg.throughput_n
                totals[name][1] += fig["seconds"]
                for key, value in fig.items():
                    if key.endswith("_per_case"):
                        sums[name][key] = sums[name].get(key, 0.0) + value * cfg.throughput_n
                log(f"  {name}: {fig['cases_per_s']} cases/s, worker {fig['worker_cpu_ms_per_case']} ms/case")
        out: dict[str, Any] = {"rounds": rounds, "concurrency": cfg.concurrency}
        for name in names:
            n, secs = totals[name]
            out[name] = {"cases": n, "seconds": round(secs, 3), "cases_per_s": round(n / secs, 2)}
            out[name].update({k: round(v / n, 2) for k, v in sums[name].items()})
            if name in costs:
                out[name].update({k: round(statistics.mean(c[k] for c in costs[name]), 2) for k in costs[name][0]})
        out["real_mix"] = (
            "kinds round robin (renewal, procurement, access); 4 of 5 need a human and are approved through "
            "the submit_decision update once waiting, 1 of 5 is decided by policy"
        )
        out["real_identity"] = "verified (a proof minted per decision by the local issuer, the digest from case_state)"
        out["asserted_identity"] = "asserted (identity off on that queue's worker; the digest still sent, as hitl approve does)"
        out["ratio"] = round(out["real"]["cases_per_s"] / out["bare"]["cases_per_s"], 3)
        out["asserted_ratio"] = round(out["asserted"]["cases_per_s"] / out["bare"]["cases_per_s"], 3)
        out["no_audit_identity"] = "verified, as real; its activities write no audit rows (the audit log's database side)"
        out["no_audit_ratio"] = round(out["no_audit"]["cases_per_s"] / out["bare"]["cases_per_s"], 3)
        out["target_ratio"] = TARGET_RATIO
        out["target_met"] = out["ratio"] >= TARGET_RATIO
        self.results["throughput"] = out

    # -- 2. decision latency -----------------------------------------------------------------

    async def latency(self) -> None:
        assert self.client is not None and self.stack is not None
        cfg = self.cfg
        out: dict[str, Any] = {"target_p99_ms": TARGET_P99_MS, "poll_interval_ms": 2.0}
        assert self.reviewers is not None
        reviewers = self.reviewers
        async with TraceWatcher(self.stack.database_url) as watcher:
            # Unloaded: open all cases first, then decide one at a time and let each finish; verified
            # and asserted cases (two queues of one worker) interleaved: update, signal, update, signal.
            unloaded: dict[str, dict[str, list[float]]] = {m: {"update": [], "signal": []} for m, _ in MODES}
            calls: dict[str, dict[str, list[float]]] = {m: {"update": [], "signal": []} for m, _ in MODES}
            steps: dict[str, dict[str, dict[str, list[float]]]] = {m: {"update": {}, "signal": {}} for m, _ in MODES}
            tag = self.tag("lu")
            plan = [(MODES[(i // 2) % 2], "update" if i % 2 == 0 else "signal") for i in range(2 * len(MODES) * cfg.latency_n)]
            cases = [driver.make_case(KINDS[i % 3], True, f"{tag}-{i}") for i in range(len(plan))]
            log(f"latency, unloaded: opening {len(cases)} cases (verified and asserted)")
            handles = await asyncio.gather(
                *(driver.start_case(self.client, c, queue) for c, ((_, queue), _) in zip(cases, plan))
            )
            opening = asyncio.gather(*(driver.wait_for_gate(h) for h in handles))
            await within(60 + 2 * len(cases), opening, "opening the latency cases")
            await asyncio.sleep(1.0)
            log(f"latency, unloaded: {cfg.latency_n} decisions per channel and identity mode, one at a time")
            for case, handle, ((mode, queue), channel) in zip(cases, handles, plan):
                d = await reviewers.decision(handle, case, queue)  # digest and proof first: not timed
                timing = await driver.decide_and_time(handle, d, channel, watcher)
                unloaded[mode][channel].append(1000 * timing.seen_s)
                calls[mode][channel].append(1000 * timing.call_s)
                await within(60, handle.result(), f"case {case.workflow_id}")
                split = driver.record_step_times((await handle.fetch_history()).events, timing.sent_at, timing.seen_s)
                for key, value in (split or {}).items():
                    steps[mode][channel].setdefault(key, []).append(value)
                await asyncio.sleep(0.05)
            unloaded_gaps = list(watcher.gaps)
            out["postgres_commit_ms"] = _ms(percentiles(await _commit_times(self.stack.database_url, 30)))
            watcher.gaps.clear()
            for mode, _ in MODES:
                prefix = "" if mode == "real" else f"{mode}_"
                out[f"{prefix}unloaded"] = {ch: _ms(percentiles(v)) for ch, v in unloaded[mode].items()}
                out[f"{prefix}unloaded_send_call_ms"] = {ch: _ms(percentiles(v)) for ch, v in calls[mode].items()}
                out[f"{prefix}unloaded_steps_ms_median"] = {
                    ch: {k: round(statistics.median(v), 1) for k, v in parts.items()} for ch, parts in steps[mode].items()
                }
            out["unloaded_identity"] = "verified; asserted_unloaded: the same decisions on the asserted queue, interleaved"

            # Loaded: open-loop arrivals at half the measured real throughput, every human case decided.
            rate = self.results["throughput"]["real"]["cases_per_s"] / 2
            duration = cfg.loaded_seconds
            log(f"latency, loaded: {rate:.2f} cases/s for {duration:.0f} s")
            loaded: dict[str, list[float]] = {"update": [], "signal": []}
            tag = self.tag("ll")
            tasks: list[asyncio.Task] = []
            counter = {"human": 0}

            async def lifecycle(case: Case) -> None:
                handle = await driver.start_case(self.client, case, REAL_QUEUE)
                if case.human:
                    await driver.wait_for_gate(handle)
                    channel = "update" if counter["human"] % 2 == 0 else "signal"
                    counter["human"] += 1
                    d = await reviewers.decision(handle, case, REAL_QUEUE)
                    timing = await driver.decide_and_time(handle, d, channel, watcher)
                    loaded[channel].append(1000 * timing.seen_s)
                await handle.result()

            t0 = time.perf_counter()
            i = 0
            while True:
                due = t0 + i / rate
                now = time.perf_counter()
                # At least 3 decisions per channel, however short the run.
                if due - t0 >= duration and sum(1 for k in range(i) if _is_human(k)) >= 6:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
                tasks.append(asyncio.create_task(lifecycle(_mixed(i, f"{tag}-{i}"))))
                i += 1
            await within(120 + 5 * len(tasks), asyncio.gather(*tasks), "the loaded latency run")
            elapsed = time.perf_counter() - t0
            out["loaded"] = {ch: _ms(percentiles(v)) for ch, v in loaded.items()}
            out["loaded_target_rate_cases_per_s"] = round(rate, 2)
            out["loaded_achieved_rate_cases_per_s"] = round(len(tasks) / elapsed, 2)
            out["loaded_cases"] = len(tasks)
            out["poll_gap_ms"] = {
                "unloaded": _ms(percentiles([1000 * g for g in unloaded_gaps])),
                "loaded": _ms(percentiles([1000 * g for g in watcher.gaps])),
            }
        out["unloaded_all_p99_ms"] = max(out["unloaded"]["update"]["p99"], out["unloaded"]["signal"]["p99"])
        out["asserted_unloaded_all_p99_ms"] = max(
            out["asserted_unloaded"]["update"]["p99"], out["asserted_unloaded"]["signal"]["p99"]
        )
        out["target_met"] = out["unloaded_all_p99_ms"] <= TARGET_P99_MS
        self.results["latency"] = out

    # -- 3. history cost ---------------------------------------------------------------------

    async def run_path(self, case: Case, path: str, queue: str) -> Any:
        """Drive one case along `path` and return its history."""
        assert self.client is not None and self.reviewers is not None
        decision = partial(self.reviewers.decision, case=case, task_queue=queue)
        handle = await driver.start_case(self.client, case, queue)
        if path == "approve_update":
            await driver.wait_for_gate(handle)
            await driver.decide_update(handle, await decision(handle))
        elif path == "approve_signal":
            await driver.wait_for_gate(handle)
            await driver.decide_signal(handle, await decision(handle))
        elif path == "request_info":
            await driver.wait_for_gate(handle)
            question = "bench: which incident, and who approved in the thread?"
            await driver.decide_update(handle, await decision(handle, outcome=DecisionOutcome.REQUEST_INFO, reason=question))
            await driver.wait_for_gate(handle, nth=2)  # the question's reminder timer: the case waits for the answer
            requester = case.request.requester  # asked by default
            answer = InfoAnswer(
                answerer=requester, text="bench: the March outage; Dana approved.", proof=self.reviewers.proof(requester, queue)
            )
            await handle.execute_update("answer_info", answer)
            await driver.wait_for_gate(handle, nth=3)  # the gate's reminder timer again: back at the gate
            await driver.decide_update(handle, await decision(handle))
        result = await handle.result()
        history = await handle.fetch_history()
        return result, history.events

    async def history_paths(self) -> None:
        assert self.worker is not None and self.policy_dir is not None
        cfg = self.cfg
        paths: dict[str, Any] = {}
        cpu: dict[str, Any] = {}
        plan = [
            ("auto", False, KINDS),
            ("approve_update", True, KINDS),
            ("approve_signal", True, KINDS),
            ("request_info", True, KINDS),
            # Renewals never time out here: a recorded rejection would end the precedent relief the
            # other renewal cases of this run rely on (see driver.FIRST_REVIEWER).
            ("escalate_to_timeout", True, [CaseKind.PROCUREMENT, CaseKind.ACCESS]),
        ]
        for path, human, kinds in plan:
            if path == "escalate_to_timeout":
                write_delays(self.policy_dir, [cfg.timeout_delays] * 3, source=self.policy_source)
                await activate_files(self.stack.database_url, self.policy_dir, "bench: timeout delays")
            tag = self.tag("h")
            cases = [driver.make_case(k, human, f"{tag}-{SHORT[k]}-{i}") for k in kinds for i in range(cfg.path_repeats)]
            log(f"history: {path}, {len(cases)} cases")

            async def body(cases=cases, path=path):
                return await asyncio.gather(*(self.run_path(c, path, REAL_QUEUE) for c in cases))

            fig, outs = await self.measured(self.worker, len(cases), body)
            if path == "escalate_to_timeout":
                write_bundled(self.policy_dir, self.policy_source)
                await activate_files(self.stack.database_url, self.policy_dir, "bench: bundled delays again")
            per_kind: dict[str, Any] = {}
            for case, (result, events) in zip(cases, outs):
                if SHORT[case.kind] in per_kind:
                    continue
                cost = history_cost(events)
                per_kind[SHORT[case.kind]] = {
                    "outcome": result.outcome,
                    "decided_via": result.decided_via,
                    "events": cost.events,
                    "floor": cost.floor,
                    "floor_if_regular": cost.floor_if_regular,
                    "local_activities": cost.local_activities,
                    "excess": cost.excess,
                    "upserts": cost.upserts,
                    "workflow_tasks": cost.workflow_tasks,
                    "activity_tasks": cost.activity_tasks,
                    "floor_terms": cost.floor_terms,
                    "by_type": cost.by_type,
                }
            paths[path] = {
                "per_kind": per_kind,
                "events_mean": round(statistics.mean(v["events"] for v in per_kind.values()), 1),
                "floor_mean": round(statistics.mean(v["floor"] for v in per_kind.values()), 1),
                "floor_if_regular_mean": round(statistics.mean(v["floor_if_regular"] for v in per_kind.values()), 1),
                "local_activities_mean": round(statistics.mean(v["local_activities"] for v in per_kind.values()), 1),
                "upserts_mean": round(statistics.mean(v["upserts"] for v in per_kind.values()), 1),
                "workflow_tasks_mean": round(statistics.mean(v["workflow_tasks"] for v in per_kind.values()), 1),
            }
            cpu[path] = fig
        # The bare workflow, for reference (its floor is its history).
        assert self.client is not None
        key = self.tag("hb")
        handle = self.client.get_workflow_handle(f"bare:{key}")
        await within(60, driver.run_bare(self.client, key, BARE_QUEUE), "one bare case")
        bare_cost = history_cost((await handle.fetch_history()).events)
        paths["bare"] = {
            "events_mean": bare_cost.events,
            "floor_mean": bare_cost.floor,
            "floor_if_regular_mean": bare_cost.floor,
            "local_activities_mean": 0,
            "upserts_mean": 0,
            "workflow_tasks_mean": bare_cost.workflow_tasks,
            "by_type": bare_cost.by_type,
        }
        self.results["history"] = {
            "paths": paths,
            "cpu_per_path": cpu,
            "worker_cpu_ms_per_case": {p: v["worker_cpu_ms_per_case"] for p, v in cpu.items()},
            "timeout_policy_delays": list(cfg.timeout_delays),
            "floor_rule": (
                "start 4 + per batch of activities scheduled together 6 + 3 per extra one + per signal wait 6 "
                "+ per update wait 7 + per fired timer 5 + completion 1"
            ),
            "floor_if_regular_rule": "the floor + 6 per local activity (each counted as a sequential regular activity)",
        }

    # -- 3b. runner and variant comparisons ----------------------------------------------------

    async def comparisons(self) -> None:
        """Every runner and variant in one fresh worker process, one `build_worker` per task queue, plus
        the bare workflow; the batches run one after the other, so only one queue is busy at a time,
        in `compare_rounds` rounds whose order alternates (to spread drift in the machine's load).
        The runner without compiled modules needs its own process (the setting is per interpreter)."""
        cfg = self.cfg
        jobs = [("runner", r, r, "product") for r in RUNNERS if r != "project_no_pyc"]
        jobs += [("variant", v, "project", v) for v in VARIANTS]
        queues = {name: f"bench-{what}-{name}" for what, name, _, _ in jobs}
        rounds: dict[str, list[dict[str, Any]]] = {}

        async def batch(w: WorkerProcess, name: str, queue: str) -> None:
            holder: dict[str, list[Case]] = {}

            async def body():
                if name == "bare":
                    await self.bare_batch(cfg.variant_n, queue, cfg.concurrency, "cb")
                else:
                    holder["cases"] = await self.real_batch(cfg.variant_n, queue, cfg.concurrency, f"c-{name}-")

            fig, _ = await self.measured(w, cfg.variant_n, body)
            if name != "bare":
                fig.update(await self._sample_costs(holder["cases"]))
            rounds.setdefault(name, []).append(fig)
            log(
                f"  {name}: {fig['cases_per_s']} cases/s, worker {fig['worker_cpu_ms_per_case']} / "
                f"server {fig['server_cpu_ms_per_case']} CPU ms/case"
            )

        bare_q = BARE_QUEUE + "-compare"
        log(f"comparisons: one fresh worker with {len(queues)} task queues and the bare workflow, {cfg.compare_rounds} round(s)")
        w = self.start_worker([(queues[name], runner, variant) for _, name, runner, variant in jobs], bare_q, "compare")
        try:
            await within(60, self.bare_batch(3, bare_q, 3, "cbw"), "the bare warm-up")
            for _, name, _, _ in jobs:
                await self.warm_up(queues[name], None)
            order = [("bare", bare_q)] + [(name, queues[name]) for _, name, _, _ in jobs]
            for r in range(cfg.compare_rounds):
                log(f"comparisons: round {r + 1}/{cfg.compare_rounds}")
                for name, queue in order if r % 2 == 0 else list(reversed(order)):
                    await batch(w, name, queue)
            self.results["compare_worker_rss_mb"] = round(w.rss() / 2**20, 1)
        finally:
            w.stop()
        log("comparisons: a worker without compiled modules (PYTHONDONTWRITEBYTECODE=1, no .pyc)")
        queue = "bench-runner-project_no_pyc"
        w = self.start_worker([(queue, "project", "product")], None, "nopyc", bytecode=False)
        try:
            await self.warm_up(queue, None)
            for _ in range(cfg.compare_rounds):
                await batch(w, "project_no_pyc", queue)
        finally:
            w.stop()
        combined = {name: _combine(figs) for name, figs in rounds.items()}
        bare_fig = combined.pop("bare")
        sandbox = {name: combined[name] for name in RUNNERS}
        variants = {name: combined[name] for name in VARIANTS}
        base = sandbox["project"]
        for fig in list(sandbox.values()) + list(variants.values()):
            for side in ("worker", "server"):
                ratio = fig[f"{side}_cpu_ms_per_case"] / base[f"{side}_cpu_ms_per_case"]
                fig[f"{side}_cpu_vs_project_pct"] = round(100 * (ratio - 1), 1)
            fig["throughput_vs_project_pct"] = round(100 * (fig["cases_per_s"] / base["cases_per_s"] - 1), 1)
            fig["cpu_vs_project_pct"] = round(100 * (fig["cpu_ms_per_case"] / base["cpu_ms_per_case"] - 1), 1)
        unsandboxed = sandbox["unsandboxed"]["worker_cpu_ms_per_case"]
        sandbox["sandbox_cost_ms_per_case"] = round(base["worker_cpu_ms_per_case"] - unsandboxed, 2)
        sandbox["passthrough_all_saves_ms_per_case"] = round(
            base["worker_cpu_ms_per_case"] - sandbox["passthrough_all"]["worker_cpu_ms_per_case"], 2
        )
        sandbox["project_saves_vs_default_ms_per_case"] = round(
            sandbox["default_sandbox"]["worker_cpu_ms_per_case"] - base["worker_cpu_ms_per_case"], 2
        )
        sandbox["no_pyc_costs_ms_per_case"] = round(
            sandbox["project_no_pyc"]["worker_cpu_ms_per_case"] - base["worker_cpu_ms_per_case"], 2
        )
        for fig in variants.values():
            fig["ratio_vs_bare"] = round(fig["cases_per_s"] / bare_fig["cases_per_s"], 3)
        base["ratio_vs_bare"] = round(base["cases_per_s"] / bare_fig["cases_per_s"], 3)
        self.results["sandbox"] = sandbox
        self.results["variants"] = {"bare": bare_fig, "product": base, **variants}

    async def _sample_costs(self, cases: list[Case]) -> dict[str, float]:
        """Mean history cost over the batch's cases (all of them; histories are small)."""
        assert self.client is not None
        costs = []
        for case in cases:
            events = (await self.client.get_workflow_handle(case.workflow_id).fetch_history()).events
            costs.append(history_cost(events))
        return {
            "events_per_case": round(statistics.mean(c.events for c in costs), 1),
            "upserts_per_case": round(statistics.mean(c.upserts for c in costs), 2),
            "workflow_tasks_per_case": round(statistics.mean(c.workflow_tasks for c in costs), 2),
            "activity_tasks_per_case": round(statistics.mean(c.activity_tasks for c in costs), 2),
            "local_activities_per_case": round(statistics.mean(c.local_activities for c in costs), 2),
        }

    # -- 4. scale ------------------------------------------------------------------------------

    async def scale(self) -> None:
        assert self.client is not None and self.policy_dir is not None
        cfg = self.cfg
        n, e = cfg.scale_n, cfg.scale_escalate_after
        write_delays(self.policy_dir, None, first_level=(f"{e // 2}s", f"{e}s"), source=self.policy_source)
        await activate_files(self.stack.database_url, self.policy_dir, "bench: scale delays")
        log(f"scale: fresh worker; {n} cases, first escalation {e} s after each gate opens")
        real_q = REAL_QUEUE + "-scale"
        w = self.start_worker([(real_q, "project", "product")], None, "scale")
        client = self.client
        waiting_q = "ExecutionStatus='Running' AND HitlCaseState='waiting'"
        level1_q = "ExecutionStatus='Running' AND HitlEscalationLevel=1"
        base_waiting = (await client.count_workflows(waiting_q)).count
        base_level1 = (await client.count_workflows(level1_q)).count
        sampler = _Sampler({"worker": w.proc, "server": psutil.Process(self.stack.temporal_pid())})  # type: ignore[union-attr]
        sampler.start()
        out: dict[str, Any] = {"cases": n, "escalate_after_s": e, "remind_after_s": e // 2}
        meter = Meter(self.stack, w)  # type: ignore[arg-type]
        try:
            rss_before = w.rss()
            m_start = meter.snapshot()
            tag = self.tag("s")
            cases = [driver.make_case(KINDS[i % 3], True, f"{tag}-{i}", scale=True) for i in range(n)]
            sem = asyncio.Semaphore(cfg.scale_start_concurrency)
            samples: list[tuple[float, int]] = []  # (wall time, running cases at level 1)

            async def start(case: Case) -> None:
                async with sem:
                    await driver.start_case(client, case, real_q)

            t0 = time.time()
            start_task = asyncio.gather(*(start(c) for c in cases))
            all_started = None
            waiting = 0
            while True:
                await asyncio.sleep(1.0)
                if all_started is None and start_task.done():
                    await start_task
                    all_started = time.time()
                waiting = (await client.count_workflows(waiting_q)).count - base_waiting
                level1 = (await client.count_workflows(level1_q)).count - base_level1
                samples.append((time.time(), level1))
                if waiting >= n:
                    break
                if time.time() - t0 > 3600:
                    raise RuntimeError(f"scale: only {waiting} of {n} cases waiting after an hour")
            all_waiting = time.time()
            m_open = meter.snapshot()
            out["open_cpu"] = per_case(Meter.delta(m_start, m_open), n)
            out["start_seconds"] = round((all_started or all_waiting) - t0, 2)
            out["open_seconds"] = round(all_waiting - t0, 2)
            out["open_rate_cases_per_s"] = round(n / (all_waiting - t0), 2)
            out["worker_rss_mb_before"] = round(rss_before / 2**20, 1)
            log(f"scale: {n} waiting after {out['open_seconds']} s; visibility queries")

            out["visibility"] = await self._visibility_queries(real_q)
            log("scale: waiting for every case to escalate to level 1")
            deadline_wait = time.time() + e + 3 * (all_waiting - t0) + 120
            while True:
                level1 = (await client.count_workflows(level1_q)).count - base_level1
                samples.append((time.time(), level1))
                if level1 >= n:
                    break
                if time.time() > deadline_wait:
                    log(f"scale: gave up with {level1} of {n} escalated")
                    break
                await asyncio.sleep(1.0)
            m_end = meter.snapshot()
            out["escalation"] = await self._escalation_figures(samples, n, e)
            # CPU from all waiting to all escalated (includes the reminders and, for cases that opened
            # before the others, escalations that already happened while opening).
            out["escalation"]["cpu_after_open"] = per_case(Meter.delta(m_open, m_end), n)
        finally:
            sampler.stop()
            out["worker_rss_peak_mb"] = round(sampler.peak["worker"] / 2**20, 1)
            out["server_rss_peak_mb"] = round(sampler.peak["server"] / 2**20, 1)
            w.stop()
        self.results["scale"] = out

    async def _visibility_queries(self, task_queue: str, repeats: int = 5) -> dict[str, Any]:
        """Raw list and count calls on the Finance inbox query, then the real path: `CaseClient.inbox`
        (a page of the oldest 50 found with counts, the reviewer's page, every case) and the whole
        `hitl inbox --gate finance` command, Python start-up included, on the scale phase's task queue
        (the inbox lists only cases on the queue it is given)."""
        from hitl_temporal import CaseClient

        assert self.client is not None
        client = self.client
        inbox = "HitlCaseState='waiting' AND HitlGate='finance'"
        timings: dict[str, list[float]] = {
            "list_all": [], "list_first_page_50": [], "count_inbox": [], "count_waiting": [],
            "inbox_page": [], "inbox_reviewer_page": [], "inbox_all": [], "cli_inbox": [],
        }
        rows = 0
        for _ in range(repeats):
            t = time.perf_counter()
            rows = 0
            async for _wf in client.list_workflows(inbox):
                rows += 1
            timings["list_all"].append(time.perf_counter() - t)
            t = time.perf_counter()
            async for _wf in client.list_workflows(inbox, limit=50, page_size=50):
                pass
            timings["list_first_page_50"].append(time.perf_counter() - t)
            t = time.perf_counter()
            count_inbox = (await client.count_workflows(inbox)).count
            timings["count_inbox"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await client.count_workflows("HitlCaseState='waiting'")
            timings["count_waiting"].append(time.perf_counter() - t)
        cases = CaseClient(client, task_queue)
        # a Finance director may decide at level 1 and 2: the cases that opened first have escalated by now
        reviewer = {"reviewer": "fin_dir_omar", "reviewer_groups": ["finance_directors"]}
        for _ in range(repeats):
            t = time.perf_counter()
            page = await cases.inbox(gate="finance")
            timings["inbox_page"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reviewer_page = await cases.inbox(**reviewer)  # type: ignore[arg-type]
            timings["inbox_reviewer_page"].append(time.perf_counter() - t)
            t = time.perf_counter()
            everything = await cases.inbox(gate="finance", limit=None)
            timings["inbox_all"].append(time.perf_counter() - t)
            t = time.perf_counter()
            cli_footer = await self._hitl_inbox(task_queue, "--gate", "finance")
            timings["cli_inbox"].append(time.perf_counter() - t)
        out: dict[str, Any] = {"query": inbox, "rows": rows, "count": count_inbox, "repeats": repeats}
        out["inbox_page_rows"], out["inbox_page_total"] = len(page.items), page.total
        out["inbox_reviewer_page_rows"], out["inbox_reviewer_page_total"] = len(reviewer_page.items), reviewer_page.total
        out["inbox_all_rows"] = len(everything.items)
        out["cli_inbox_footer"] = cli_footer
        for key, values in timings.items():
            out[f"{key}_ms_median"] = round(1000 * statistics.median(values), 1)
            out[f"{key}_ms_max"] = round(1000 * max(values), 1)
        return out

    async def _hitl_inbox(self, task_queue: str, *args: str) -> str:
        """Run `hitl inbox ARGS` as a user would (a new Python process, from the source snapshot); its last line."""
        from bench.stack import NAMESPACE, PYCACHE
        from workers.devstack import clean_temporal_env

        assert self.stack is not None
        env = {k: v for k, v in clean_temporal_env(dict(os.environ), self.stack.temporal_address, NAMESPACE).items()
               if not k.startswith("HITL_") and k != "PYTHONDONTWRITEBYTECODE"}
        env.update(HITL_DATABASE_URL=self.stack.database_url, HITL_STATE_DIR=str(self.stack.base / "state"),
                   HITL_TASK_QUEUE=task_queue,
                   PYTHONPYCACHEPREFIX=str(PYCACHE))
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "hitl_temporal.cli", "inbox", *args],
            cwd=self.stack.src, env=env, capture_output=True, text=True, timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"hitl inbox {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""

    async def _escalation_figures(self, samples: list[tuple[float, int]], n: int, e: int) -> dict[str, Any]:
        """Deadlines come from each case's HitlGateOpenedAt + the first level's escalate_after; the
        escalation times from the sampled count of running cases at level 1 (1 s resolution, and
        visibility is eventually consistent): the k-th escalation is matched with the k-th deadline."""
        assert self.client is not None
        deadlines: list[float] = []
        async for wf in self.client.list_workflows("ExecutionStatus='Running' AND HitlCaseState='waiting'"):
            opened = wf.typed_search_attributes.get(sa.GATE_OPENED_AT)
            if opened is not None:
                deadlines.append((opened + timedelta(seconds=e)).timestamp())
        deadlines.sort()
        lags: list[float] = []
        j = 0
        for k, d in enumerate(deadlines[:n], start=1):
            while j < len(samples) and samples[j][1] < k:
                j += 1
            if j == len(samples):
                break
            lags.append(samples[j][0] - d)
        escalated = samples[-1][1] if samples else 0
        out: dict[str, Any] = {
            "escalated": escalated,
            "all_escalated": escalated >= n,
            "deadlines_spread_s": round(deadlines[-1] - deadlines[0], 2) if deadlines else 0.0,
            "lag_s": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in percentiles(lags).items()},
        }
        if deadlines and escalated >= n:
            t_all = next(t for t, c in samples if c >= n)
            out["all_escalated_after_last_deadline_s"] = round(t_all - deadlines[-1], 2)
            out["all_escalated_after_first_deadline_s"] = round(t_all - deadlines[0], 2)
        else:
            out["all_escalated_after_last_deadline_s"] = float("nan")
            out["all_escalated_after_first_deadline_s"] = float("nan")
        return out

    # -- the whole run -------------------------------------------------------------------------

    async def run_all(self) -> None:
        assert self.stack is not None
        self.client = await Client.connect(
            self.stack.temporal_address, namespace="default", data_converter=DATA_CONVERTER, interceptors=client_interceptors()
        )
        self.results["micro"] = micro_costs(self.policy_source)
        self.results["micro"].update(await trust_micro_costs(self.stack))
        log("warm-up")
        await self.warm_up(REAL_QUEUE, BARE_QUEUE)
        await self.warm_up(ASSERTED_QUEUE, None)
        await self.throughput()
        await self.latency()
        await self.history_paths()
        self.results["trust"] = trust_summary(self.results)
        self.results["worker_rss_mb_after_main_phases"] = round(self.worker.rss() / 2**20, 1)  # type: ignore[union-attr]
        self.worker.stop()  # type: ignore[union-attr]
        self.worker = None
        await self.comparisons()
        self.results["trust"]["without_trust_patch"] = trust_patch_cost(self.results["variants"])
        await self.scale()

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        log("starting a fresh stack (PostgreSQL + migrations + seed, Temporal dev server)")
        self.stack = start_stack()
        try:
            self.policy_dir = self.stack.base / "policies"
            write_bundled(self.policy_dir, self.policy_source)
            self.results["stack"] = {
                "temporal_argv": [Path(self.stack.temporal_argv[0]).name, *self.stack.temporal_argv[1:]],
                "postgres": "embedded, default settings (as hitl dev)",
                "worker": (
                    "subprocess `python -m bench.worker_proc` running a copy of the source taken at the start: "
                    "workers.worker.build_worker (WORKFLOW_RUNNER, default slots and cache) + the bare workflow in a "
                    "second Worker with the same runner and options; compiled modules cached outside the tree"
                ),
                "policy_dir": (
                    "bench copy of gates/policies (identical, except the timeout path and the scale phase which "
                    "shorten gate delays)"
                ),
            }
            self.reviewers = driver.Reviewers(
                self.stack.state_dir, asserted_queues={ASSERTED_QUEUE, "bench-variant-asserted"}
            )
            self.worker = self.start_worker(
                [
                    (REAL_QUEUE, "project", "product"),
                    (ASSERTED_QUEUE, "project", "asserted"),
                    (NO_AUDIT_QUEUE, "project", "no_audit_writes"),
                ],
                BARE_QUEUE,
                "main",
            )
            asyncio.run(self.run_all())
        finally:
            for w in self._workers:
                w.stop()
            self.stack.stop()
        self.results["duration_s"] = round(time.time() - t0, 1)
        return self.results


async def _commit_times(dsn: str, n: int) -> list[float]:
    """Round trips of a one-row autocommit INSERT (what a commit costs on this disk, fsync included)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        times = []
        for i in range(n):
            t = time.perf_counter()
            await conn.execute("INSERT INTO bench_bare_steps (case_key, step) VALUES ($1, 'commit-probe')", f"probe-{i}")
            times.append(1000 * (time.perf_counter() - t))
            await asyncio.sleep(0.01)
        return times
    finally:
        await conn.close()


def micro_costs(policy_dir: Path, n: int = 20) -> dict[str, float]:
    """CPU per call (process time, so the machine's load matters little) of what `resolve_policy` does
    for every case, and of two cheaper ways to get the same answer."""
    import yaml

    from activities.policy_files import PolicyCache, load_policies
    from gates.policy import Policy

    def cpu_ms(fn) -> float:
        fn()
        t = time.process_time()
        for _ in range(n):
            fn()
        return round(1000 * (time.process_time() - t) / n, 3)

    def with_c_loader():
        files = sorted(policy_dir.glob("*.yaml"))
        return [Policy.model_validate(yaml.load(p.read_text(), Loader=yaml.CSafeLoader)) for p in files]

    return {
        "load_policies_cpu_ms": cpu_ms(lambda: load_policies(policy_dir)),
        "load_policies_c_yaml_cpu_ms": cpu_ms(with_c_loader),
        "policy_cache_hit_cpu_ms": cpu_ms(lambda: PolicyCache.key(policy_dir)),
    }


def trust_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per case, bare / asserted / verified from the same run, worker and server: what verified identity costs.

    CPU and history figures are the throughput phase's (the real mix, closed loop); latency the unloaded
    phase's (one decision at a time, verified and asserted interleaved)."""
    t, lat = results["throughput"], results["latency"]
    lat_of = {"asserted": lat["asserted_unloaded"], "verified": lat["unloaded"]}
    modes: dict[str, Any] = {}
    bare_history = results["history"]["paths"]["bare"]
    cpu_keys = ("worker_cpu_ms_per_case", "server_cpu_ms_per_case", "postgres_cpu_ms_per_case", "cpu_ms_per_case")
    for mode, key in (("bare", "bare"), ("asserted", "asserted"), ("verified", "real")):
        fig = t[key]
        row: dict[str, Any] = {
            "events_per_case": fig.get("events_per_case", bare_history["events_mean"]),
            "local_activities_per_case": fig.get("local_activities_per_case", 0),
            "workflow_tasks_per_case": fig.get("workflow_tasks_per_case", bare_history["workflow_tasks_mean"]),
            **{k: fig[k] for k in cpu_keys},
            "cases_per_s": fig["cases_per_s"],
            "ratio_vs_bare": round(fig["cases_per_s"] / t["bare"]["cases_per_s"], 3),
        }
        if mode != "bare":
            for ch in ("update", "signal"):
                row[f"decision_{ch}_ms"] = {p: lat_of[mode][ch][p] for p in ("p50", "p99")}
        modes[mode] = row
    v, a = modes["verified"], modes["asserted"]
    cost = {
        k: round(v[k] - a[k], 2)
        for k in ("events_per_case", "local_activities_per_case", "worker_cpu_ms_per_case", "server_cpu_ms_per_case",
                  "cpu_ms_per_case")
    }
    for ch in ("update", "signal"):
        cost[f"decision_{ch}_p50_ms"] = round(v[f"decision_{ch}_ms"]["p50"] - a[f"decision_{ch}_ms"]["p50"], 2)
        cost[f"decision_{ch}_p99_ms"] = round(v[f"decision_{ch}_ms"]["p99"] - a[f"decision_{ch}_ms"]["p99"], 2)
    cost["throughput_pct"] = round(100 * (v["cases_per_s"] / a["cases_per_s"] - 1), 1)
    return {
        "per_case": modes,
        "verification_cost_per_case": cost,
        "targets": {
            "ratio_verified": v["ratio_vs_bare"], "ratio_met": v["ratio_vs_bare"] >= TARGET_RATIO,
            "p99_verified_ms": lat["unloaded_all_p99_ms"], "p99_met": lat["unloaded_all_p99_ms"] <= TARGET_P99_MS,
            "ratio_asserted": a["ratio_vs_bare"], "p99_asserted_ms": lat["asserted_unloaded_all_p99_ms"],
        },
    }


def trust_patch_cost(variants: dict[str, Any]) -> dict[str, Any]:
    """The comparison worker's product (verified), asserted, before_trust (no TRUST_PATCH) and before_combined batches."""
    keys = ("events_per_case", "local_activities_per_case", "workflow_tasks_per_case", "worker_cpu_ms_per_case",
            "server_cpu_ms_per_case", "cpu_ms_per_case", "cases_per_s", "ratio_vs_bare")
    names = ("product", "asserted", "before_trust", "before_combined", "no_audit_writes")
    return {name: {k: variants[name][k] for k in keys} for name in names}


async def trust_micro_costs(stack: Stack, n: int = 50) -> dict[str, float]:
    """What each step verified identity adds costs on its own, in this process (outside the sandbox):
    PyJWT verifying one proof (the workflow does it in the update's validator and again in its handler),
    minting one (the reviewer's side), `resolve_trust` with the local issuer (at start and each gate
    opening), the directory re-read per decision (`load_reviewer_roster`), and the evidence digest's hash."""
    from activities.db import create_pool
    from activities.directory import DirectoryActivities
    from activities.identity import IdentityActivities, LocalIssuer
    from gates.identity import TrustRequest, evidence_digest, verify_proof
    from gates.messages import RosterRequest
    from workers.config import Settings

    issuer = LocalIssuer(stack.state_dir)
    trust = TrustSnapshot(mode="verified", issuers=[issuer.issuer_keys(fetched_at=datetime.now(UTC))])
    token = issuer.mint("fin_rev_ana")
    now = datetime.now(UTC)

    def cpu_ms(fn: Callable[[], Any]) -> float:
        fn()
        t = time.process_time()
        for _ in range(n):
            fn()
        return round(1000 * (time.process_time() - t) / n, 3)

    async def timed(fn: Callable[[], Awaitable[Any]]) -> dict[str, float]:
        await fn()
        wall, t = [], time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            await fn()
            wall.append(1000 * (time.perf_counter() - start))
        return {"wall_ms_median": round(statistics.median(wall), 3), "cpu_ms": round(1000 * (time.process_time() - t) / n, 3)}

    settings = Settings(identity="verified", local_issuer="on", state_dir=stack.state_dir, database_url=stack.database_url)
    identity = IdentityActivities(settings)
    pool = await create_pool(stack.database_url, source="the bench PostgreSQL", max_size=2)
    try:
        directory = DirectoryActivities(pool)
        roster = RosterRequest(groups=["finance_reviewers", "finance_directors", "cfo_office"], people=["ae_sam"], gate="finance")
        directory_read = await timed(lambda: directory.load_reviewer_roster(roster))
        resolve = await timed(lambda: identity.resolve_trust(TrustRequest()))
    finally:
        await pool.close()
    brief = {"facts": [{"source": f"crm:{i}", "text": "x" * 200} for i in range(40)]}
    return {
        "verify_proof_cpu_ms": cpu_ms(lambda: verify_proof(token, trust, person="fin_rev_ana", now=now)),
        "mint_proof_cpu_ms": cpu_ms(lambda: issuer.mint("fin_rev_ana")),
        "evidence_digest_40_facts_cpu_ms": cpu_ms(lambda: evidence_digest(brief)),
        "directory_reread_wall_ms_median": directory_read["wall_ms_median"],
        "directory_reread_cpu_ms": directory_read["cpu_ms"],
        "resolve_trust_local_wall_ms_median": resolve["wall_ms_median"],
        "resolve_trust_local_cpu_ms": resolve["cpu_ms"],
    }


def _combine(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rounds of one batch: cases/s over the summed time, other numbers averaged; rounds kept."""
    out: dict[str, Any] = {}
    for key in figs[0]:
        values = [f[key] for f in figs]
        if key == "cases":
            out[key] = sum(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = round(statistics.mean(values), 2)
    out["cases_per_s"] = round(out["cases"] / sum(f["seconds"] for f in figs), 2)
    out["seconds"] = round(sum(f["seconds"] for f in figs), 3)
    out["rounds"] = figs
    return out


async def within(seconds: float, awaitable: Awaitable[Any], what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout=seconds)
    except TimeoutError:
        raise RuntimeError(f"{what} did not finish within {seconds:.0f} s (a case stuck? see the worker log)") from None


def _ms(p: dict[str, float]) -> dict[str, float]:
    """Round a percentile dict already in ms (n stays an int)."""
    return {k: (round(v, 2) if k != "n" else int(v)) for k, v in p.items()}


def _is_human(i: int) -> bool:
    return i % 5 != 4  # the same mix as driver.real_mix


def _mixed(i: int, tag: str) -> Case:
    return driver.make_case(KINDS[i % 3], human=_is_human(i), tag=tag)


class _Sampler:
    """Peak RSS of some processes, sampled every 0.5 s on a thread."""

    def __init__(self, procs: dict[str, psutil.Process]):
        self.procs = procs
        self.peak = {name: 0 for name in procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self._stop.wait(0.5)


# --- output -------------------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    r = doc["results"]
    uncommitted, machine = doc["source"]["uncommitted_product_files"], doc["machine"]
    lines = [
        f"hitl-temporal benchmark ({doc['mode']}), {doc['finished_at']}",
        f"command:  {doc['command']}",
        f"source:   {doc['source']['git_head'][:12]}" + (f" + uncommitted {', '.join(uncommitted)}" if uncommitted else ""),
        f"machine:  {machine['nproc']} CPUs, {machine['memory_gib']} GiB, {machine['cpu_model']}; "
        f"load at start {machine['load_average_at_start']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        "",
    ]

    def row(label: str, value: str, note: str = "") -> None:
        lines.append(f"  {label:<46} {value:>16}  {note}")

    t = r["throughput"]
    lines.append(f"1. Throughput (closed loop, {t['concurrency']} in flight)")
    for name in ("bare", "real", "asserted", "no_audit"):
        x = t[name]
        row(f"{name} cases/s ({x['cases']} cases)", f"{x['cases_per_s']:.2f}",
            f"worker {x['worker_cpu_ms_per_case']} / server {x['server_cpu_ms_per_case']} / "
            f"pg {x['postgres_cpu_ms_per_case']} CPU ms per case")
    row("ratio real (verified identity) / bare", f"{t['ratio']:.3f}",
        f"target >= {TARGET_RATIO}: {'met' if t['target_met'] else 'NOT met'}")
    row("ratio asserted / bare", f"{t['asserted_ratio']:.3f}")
    row("ratio no_audit (verified, no audit rows) / bare", f"{t['no_audit_ratio']:.3f}")
    lat = r["latency"]
    lines.append("2. Decision latency, send -> row in decision_traces (ms, p50 / p95 / p99)")
    for mode in ("unloaded", "loaded"):
        for ch in ("update", "signal"):
            p = lat[mode][ch]
            row(f"{mode} {ch} (n={p['n']})", f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f}")
    for ch in ("update", "signal"):
        st = lat["unloaded_steps_ms_median"].get(ch, {})
        if st:
            row(f"unloaded {ch}, median split (ms)",
                f"{st['decision_task_ms']} + {st['activity_dispatch_ms']} + {st['record_activity_ms']}",
                "decision workflow task + activity dispatch + record_decision until visible")
    pc = lat["postgres_commit_ms"]
    row("PostgreSQL one-row commit (ms, p50 / p99)", f"{pc['p50']:.1f} / {pc['p99']:.1f}")
    row("loaded rate (target / achieved cases/s)",
        f"{lat['loaded_target_rate_cases_per_s']} / {lat['loaded_achieved_rate_cases_per_s']}")
    row("unloaded p99 (worst channel)", f"{lat['unloaded_all_p99_ms']:.1f}",
        f"target <= {TARGET_P99_MS:.0f} ms: {'met' if lat['target_met'] else 'NOT met'}")
    tr = r["trust"]
    lines.append("2b. Verified identity: per case, same run and server (throughput phase CPU; unloaded latency p50 / p99)")
    lines.append(f"  {'':<46} {'events / LAs':>16}  CPU ms/case worker + server + pg = total; cases/s = x bare; "
                 "update / signal ms")
    for mode, x in tr["per_case"].items():
        latency = "" if mode == "bare" else "; " + " | ".join(
            f"{x[f'decision_{ch}_ms']['p50']:.1f} / {x[f'decision_{ch}_ms']['p99']:.1f}" for ch in ("update", "signal"))
        row(mode, f"{x['events_per_case']} / {x['local_activities_per_case']}",
            f"{x['worker_cpu_ms_per_case']} + {x['server_cpu_ms_per_case']} + {x['postgres_cpu_ms_per_case']} = "
            f"{x['cpu_ms_per_case']}; {x['cases_per_s']} = x{x['ratio_vs_bare']}{latency}")
    c = tr["verification_cost_per_case"]
    row("verification costs (verified - asserted)", f"{c['events_per_case']:+} / {c['local_activities_per_case']:+}",
        f"{c['worker_cpu_ms_per_case']:+} worker, {c['cpu_ms_per_case']:+} total CPU ms; {c['throughput_pct']:+}% cases/s; "
        f"p50 {c['decision_update_p50_ms']:+} / {c['decision_signal_p50_ms']:+} ms")
    m = r["micro"]
    row("verify one proof (PyJWT, EdDSA) CPU ms", f"{m['verify_proof_cpu_ms']}",
        f"mint {m['mint_proof_cpu_ms']}; resolve_trust {m['resolve_trust_local_cpu_ms']} CPU / "
        f"{m['resolve_trust_local_wall_ms_median']} wall; directory re-read {m['directory_reread_cpu_ms']} CPU / "
        f"{m['directory_reread_wall_ms_median']} wall")
    for name, x in tr.get("without_trust_patch", {}).items():
        row(f"comparison worker: {name}", f"{x['events_per_case']} / {x['local_activities_per_case']}",
            f"{x['worker_cpu_ms_per_case']} + {x['server_cpu_ms_per_case']} = {x['cpu_ms_per_case']} (with pg); "
            f"{x['cases_per_s']} = x{x['ratio_vs_bare']}")
    h = r["history"]
    lines.append("3. History cost per case (events / floor of its regular steps / floor with every step regular / "
                 "local activities / upserts / workflow tasks; worker CPU ms)")
    for path, v in h["paths"].items():
        cpu = h["worker_cpu_ms_per_case"].get(path)
        row(path, f"{v['events_mean']} / {v['floor_mean']} / {v['floor_if_regular_mean']} / {v['local_activities_mean']} / "
            f"{v['upserts_mean']} / {v['workflow_tasks_mean']}",
            f"worker {cpu} ms/case" if cpu is not None else "")
    m = r["micro"]
    row("resolve_policy: YAML parse + validate, per case", f"{m['load_policies_cpu_ms']} ms",
        f"C YAML loader {m['load_policies_c_yaml_cpu_ms']} ms; cached (stat only) {m['policy_cache_hit_cpu_ms']} ms")
    s = r["sandbox"]
    lines.append("   Workflow runner (one fresh comparison worker, real mix): worker CPU ms/case, cases/s")
    for name in RUNNERS:
        row(name, f"{s[name]['worker_cpu_ms_per_case']} ms",
            f"{s[name]['cases_per_s']} cases/s ({s[name]['worker_cpu_vs_project_pct']:+}% CPU vs project)")
    lines.append("   Variants (same comparison worker, real mix): before_hardened = the product before the hostile-input "
                 "change, before_lean = before the local reads; the others go further")
    bare = r["variants"]["bare"]
    lines.append(f"  {'':<46} {'events/case':>16}  CPU ms/case worker + server + pg = total; cases/s")
    row("bare (same worker process)", "23", f"{bare['worker_cpu_ms_per_case']} + {bare['server_cpu_ms_per_case']} + "
        f"{bare['postgres_cpu_ms_per_case']} = {bare['cpu_ms_per_case']}; {bare['cases_per_s']}")
    for name, v in r["variants"].items():
        if name == "bare":
            continue
        row(name, f"{v['events_per_case']}",
            f"{v['worker_cpu_ms_per_case']} + {v['server_cpu_ms_per_case']} + {v['postgres_cpu_ms_per_case']} "
            f"= {v['cpu_ms_per_case']} ({v['cpu_vs_project_pct']:+}%); {v['cases_per_s']} = x{v['ratio_vs_bare']} bare")
    sc = r["scale"]
    lines.append(f"4. Scale: {sc['cases']} cases open and waiting at once")
    row("time to open all (s)", f"{sc['open_seconds']}", f"{sc['open_rate_cases_per_s']} cases/s")
    row("worker RSS peak (MiB)", f"{sc['worker_rss_peak_mb']}",
        f"before {sc['worker_rss_mb_before']}; server peak {sc['server_rss_peak_mb']}")
    v = sc["visibility"]
    row(f"inbox list, all {v['rows']} rows (ms median/max)", f"{v['list_all_ms_median']} / {v['list_all_ms_max']}")
    row("inbox list, first page of 50 (ms)", f"{v['list_first_page_50_ms_median']} / {v['list_first_page_50_ms_max']}")
    row("count_workflows inbox (ms)", f"{v['count_inbox_ms_median']} / {v['count_inbox_ms_max']}")
    row(f"CaseClient.inbox finance, {v['inbox_page_rows']} of {v['inbox_page_total']} (ms)",
        f"{v['inbox_page_ms_median']} / {v['inbox_page_ms_max']}", "the oldest page: counts find a cutoff, one short listing")
    row(f"CaseClient.inbox reviewer, {v['inbox_reviewer_page_rows']} of {v['inbox_reviewer_page_total']} (ms)",
        f"{v['inbox_reviewer_page_ms_median']} / {v['inbox_reviewer_page_ms_max']}", "fin_dir_omar (finance_directors)")
    row(f"CaseClient.inbox finance, all {v['inbox_all_rows']} (ms)", f"{v['inbox_all_ms_median']} / {v['inbox_all_ms_max']}",
        "limit=None (hitl inbox --all)")
    row("hitl inbox --gate finance, whole command (ms)", f"{v['cli_inbox_ms_median']} / {v['cli_inbox_ms_max']}",
        "new Python process, start-up included")
    esc = sc["escalation"]
    row("escalation lag after deadline p50/p99/max (s)", f"{esc['lag_s']['p50']} / {esc['lag_s']['p99']} / {esc['lag_s']['max']}")
    row("all at level 1, after the last deadline (s)", f"{esc['all_escalated_after_last_deadline_s']}",
        f"deadlines spread over {esc['deadlines_spread_s']} s")
    lines.append(f"total {r['duration_s']} s")
    return "\n".join(line.rstrip() for line in lines)


def _finite(doc: Any) -> Any:
    """JSON has no NaN: turn non-finite floats into null."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_finite(v) for v in doc]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny N (CI): finishes in about a minute")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"), help="where to write the JSON")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help=f"override one Config field, e.g. --set scale_n=1000 (fields: {', '.join(Config.__dataclass_fields__)})",
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in Config.__dataclass_fields__:
            parser.error(f"--set: unknown field {key!r}")
        current = getattr(cfg, key)
        parsed: Any = tuple(value.split(",")) if isinstance(current, tuple) else type(current)(value)
        cfg = Config(**{**asdict(cfg), key: parsed})
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, "-m", "bench.run", *given])
    doc: dict[str, Any] = {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "config": asdict(cfg),
        "machine": machine_info(),
        "versions": versions(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    doc["source"] = source_info()
    bench = Bench(cfg, args.quick)

    def on_signal(signum: int, _frame: Any) -> None:
        log(f"signal {signum}: stopping everything this run started")
        bench.emergency_stop()
        os._exit(128 + signum)

    # Installed before asyncio.run, which then leaves SIGINT to us instead of cancelling the main task.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    doc["results"] = bench.run()
    doc["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_finite(doc), indent=2) + "\n")
    print(table(doc), flush=True)
    print(f"JSON: {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # sdk-python #300: short-lived SDK processes can abort at interpreter exit
