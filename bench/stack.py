"""A fresh, throw-away stack for one benchmark run, built from the project's own helpers.

Same servers and flags as `hitl dev` (workers/dev.py): embedded PostgreSQL (migrations + seed,
default durability settings), the Temporal dev server with the project's search attributes,
the server limits of gates/bounds.py (`dynamic_config_flags`), WAL SQLite pragmas and a Web UI
port, all in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from activities.db import connect
from activities.migrations import apply_migrations
from activities.seed import add_lookalike_people, seed_demo_world
from workers.devstack import (
    Child,
    ChildFailed,
    clean_temporal_env,
    ensure_database,
    free_port,
    postgres_dsn,
    prepare_postgres,
    spawn,
    start_postgres,
    start_temporal,
    temporal_dev_server_argv,
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
SOURCE_PACKAGES = ("gates", "activities", "workflows", "workers", "bench")


@dataclass
class Stack:
    base: Path
    src: Path = Path()
    pg_port: int = 0
    temporal_port: int = 0
    ui_port: int = 0
    children: list[Child] = field(default_factory=list)
    temporal_argv: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return postgres_dsn(self.pg_port)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    def temporal_pid(self) -> int | None:
        for child in self.children:
            if child.name.startswith("Temporal"):
                return child.process.pid
        return None

    def postgres_pids(self) -> list[int]:
        """The postmaster and its backends (all PostgreSQL CPU is spent in these)."""
        for child in self.children:
            if child.name == "PostgreSQL":
                try:
                    proc = psutil.Process(child.process.pid)
                    return [proc.pid] + [c.pid for c in proc.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return []
        return []

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(_mirror(self.base), ignore_errors=True)  # this run's compiled copies of src/


def start_stack() -> Stack:
    """PostgreSQL (migrated, seeded) and Temporal, on free ports, in a new temporary directory."""
    # Not under /tmp/pytest-of-*: the unprivileged PostgreSQL user must traverse the path (see conftest).
    stack = Stack(base=Path(tempfile.mkdtemp(prefix="hitl-bench-")))
    try:
        stack.src = snapshot_source(stack.base / "src")
        stack.pg_port = free_port()
        layout = prepare_postgres(stack.base / "postgres")
        stack.children.append(start_postgres(layout, stack.pg_port))
        asyncio.run(_prepare_database(stack.pg_port))
        stack.temporal_port, stack.ui_port = free_port(), free_port()
        stack.temporal_argv = temporal_dev_server_argv(stack.base / "temporal.db", stack.temporal_port, stack.ui_port)
        stack.children.append(
            start_temporal(stack.base / "temporal.db", stack.temporal_port, stack.ui_port, stack.base / "temporal.log")
        )
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


# People who look like the access example's subject to the IAM connector (activities/seed.py),
# enough for every access case one bench run opens (bench/driver.py numbers them).
ACCESS_SUBJECT = "eng_lee"
ACCESS_LOOKALIKE_PREFIX = "eng_lee_b"
ACCESS_LOOKALIKES = 10_000


async def _prepare_database(port: int) -> None:
    await ensure_database(port)
    conn = await connect(postgres_dsn(port), source="the bench PostgreSQL")
    try:
        await apply_migrations(conn)
        await seed_demo_world(conn)
        # access cases need distinct users: each runs under its own user/system/entitlement key
        await add_lookalike_people(conn, ACCESS_SUBJECT, ACCESS_LOOKALIKES, prefix=ACCESS_LOOKALIKE_PREFIX)
        await conn.execute(BARE_TABLE_SQL)
    finally:
        await conn.close()


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
    env["HITL_STATE_DIR"] = str(stack.base / "state")
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
