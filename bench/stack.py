"""A fresh, throw-away stack for one benchmark run, built by the project's own bring-up.

The same `LocalStack` as `hitl dev` (workers/devstack.py): embedded PostgreSQL (migrations + seed,
default durability settings), the Temporal dev server with the project's search attributes,
the server limits of gates/bounds.py, WAL SQLite pragmas and a Web UI port, all in a temporary
directory that is removed afterwards. The bench adds lookalike people and its own table.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from demo.world import add_lookalike_people
from workers.devstack import (
    Child,
    ChildFailed,
    LocalStack,
    clean_temporal_env,
    free_port,
    spawn,
)

NAMESPACE = "default"
ROOT = Path(__file__).resolve().parent.parent
# Compiled modules of the bench's worker processes: outside the source tree, reused across runs.
PYCACHE = Path(tempfile.gettempdir()) / "hitl-bench-pycache"

# The bare workflow's activities write here (created by the bench, not a product migration).
BARE_TABLE_SQL = """CREATE TABLE IF NOT EXISTS bench_bare_steps (
    id bigserial PRIMARY KEY, case_key text NOT NULL, step text NOT NULL, at timestamptz NOT NULL DEFAULT now())"""


# What a worker process runs: a copy taken when the stack starts, so that edits to the working tree
# during a run (other people work in the same checkout) cannot change the code under measurement.
# The sandbox re-imports workflows/*.py for every workflow run, so without the copy a half-saved edit
# in workflows/ breaks every case started after it.
SOURCE_PACKAGES = ("gates", "activities", "workflows", "workers", "hitl_temporal", "demo", "bench")


@dataclass
class Stack:
    """This run's servers (`servers`) and the snapshot of the source its workers run (`src`)."""

    base: Path
    servers: LocalStack
    src: Path = Path()

    @property
    def state_dir(self) -> Path:
        """The workers' HITL_STATE_DIR: its local issuer (identity/local-issuer.pem) signs the driver's proofs."""
        return self.base / "state"

    @property
    def database_url(self) -> str:
        return self.servers.database_url

    @property
    def temporal_address(self) -> str:
        return self.servers.temporal_address

    @property
    def temporal_argv(self) -> list[str]:
        return self.servers.temporal_argv

    def temporal_pid(self) -> int | None:
        return self.servers.temporal.process.pid if self.servers.temporal else None

    def postgres_pids(self) -> list[int]:
        """The postmaster and its backends (all PostgreSQL CPU is spent in these)."""
        if self.servers.postgres is None:
            return []
        try:
            proc = psutil.Process(self.servers.postgres.process.pid)
            return [proc.pid] + [c.pid for c in proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        self.servers.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(_mirror(self.base), ignore_errors=True)  # this run's compiled copies of src/


def start_stack() -> Stack:
    """PostgreSQL (migrated, seeded, with the bench's lookalikes) and Temporal, on free ports, in a new temporary directory."""
    # Not under /tmp/pytest-of-*: the unprivileged PostgreSQL user must traverse the path (see conftest).
    base = Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    servers = LocalStack(root=base, ui_port=free_port(), extra_setup=_prepare_bench_tables, source="the bench PostgreSQL")
    stack = Stack(base=base, servers=servers)
    try:
        stack.src = snapshot_source(base / "src")
        asyncio.run(servers.start())
    except BaseException:
        stack.stop()
        raise
    return stack


def snapshot_source(target: Path) -> Path:
    for name in SOURCE_PACKAGES:
        shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "results*.json"))
    return target


def _mirror(path: Path) -> Path:
    """Where PYTHONPYCACHEPREFIX keeps the compiled modules of sources under `path`."""
    return PYCACHE / path.resolve().relative_to(path.resolve().anchor)


# People who look like the access example's subject to the IAM connector (demo/world.py),
# enough for every access case one bench run opens (bench/driver.py numbers them).
ACCESS_SUBJECT = "eng_lee"
ACCESS_LOOKALIKE_PREFIX = "eng_lee_b"
ACCESS_LOOKALIKES = 10_000


async def _prepare_bench_tables(conn: asyncpg.Connection) -> None:
    """After migrations and the demo world: access cases need distinct users (each runs under its own
    user/system/entitlement key), and the bare workflow's table."""
    await add_lookalike_people(conn, ACCESS_SUBJECT, ACCESS_LOOKALIKES, prefix=ACCESS_LOOKALIKE_PREFIX)
    await conn.execute(BARE_TABLE_SQL)


@dataclass
class WorkerProcess:
    """A worker subprocess (`python -m bench.worker_proc`); its CPU and RSS are read with psutil."""

    child: Child
    proc: psutil.Process
    name: str

    def cpu_seconds(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def stop(self) -> None:
        self.child.stop()


def _cache_without_project(stack: Stack, target: Path) -> Path:
    """A copy of the bench's compiled-module cache without this run's project sources."""
    skip = _mirror(stack.base)
    if PYCACHE.exists():
        shutil.copytree(PYCACHE, target, dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if Path(d) / n == skip])
    target.mkdir(parents=True, exist_ok=True)
    return target


def start_worker(
    stack: Stack,
    *,
    queues: list[tuple[str, str, str]],
    bare_task_queue: str | None = None,
    policy_dir: Path | None = None,
    name: str = "worker",
    bytecode: bool = True,
    timeout: float = 90.0,
) -> WorkerProcess:
    """`python -m bench.worker_proc` with one project worker per (task queue, runner, variant).

    `bytecode`: the worker reads and writes compiled modules in a bench-owned cache outside the source
    tree (PYTHONPYCACHEPREFIX), as a worker from the Docker image (pip precompiles) or a normal
    checkout does. False reproduces PYTHONDONTWRITEBYTECODE=1 without any .pyc: then the sandbox
    compiles workflows/*.py from source each time it re-imports them, i.e. for every workflow run."""
    env = clean_temporal_env(dict(os.environ), stack.temporal_address, NAMESPACE)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        # The libraries keep their compiled modules (a copy of the bench cache, so start-up stays
        # short); the project's own packages have none and none get written.
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(_cache_without_project(stack, stack.base / f"{name}-pycache"))
    for key in [k for k in env if k.startswith("HITL_")]:
        del env[key]
    env["HITL_DATABASE_URL"] = stack.database_url
    env["HITL_TASK_QUEUE"] = queues[0][0]
    env["HITL_STATE_DIR"] = str(stack.state_dir)
    # Verified identity with the state directory's local issuer (the defaults, said explicitly); a queue
    # of variant `asserted` turns it off for its own worker only (bench.worker_proc).
    env["HITL_IDENTITY"] = "verified"
    env["HITL_LOCAL_ISSUER"] = "on"
    if policy_dir is not None:
        env["HITL_POLICY_DIR"] = str(policy_dir)
    env["PYTHONPATH"] = str(stack.src) + os.pathsep + env.get("PYTHONPATH", "")
    ready = stack.base / f"{name}.ready"
    log = stack.base / f"{name}.log"
    argv = [sys.executable, "-m", "bench.worker_proc", "--ready-file", str(ready)]
    for queue, runner, variant in queues:
        argv += ["--queue", f"{queue}={runner}:{variant}"]
    if bare_task_queue:
        argv += ["--bare-task-queue", bare_task_queue]
    child = spawn(f"bench {name}", argv, log_path=log, env=env, cwd=stack.src)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if not child.alive():
            raise ChildFailed(f"bench {name} exited with code {child.process.returncode}:\n{child.log_tail(40)}")
        if time.monotonic() > deadline:
            child.stop()
            raise ChildFailed(f"bench {name} not ready within {timeout:.0f}s:\n{child.log_tail(40)}")
        time.sleep(0.05)
    return WorkerProcess(child=child, proc=psutil.Process(child.process.pid), name=name)
