"""`hitl dev`: the whole system on a laptop, in the foreground, with state that survives restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from activities.db import DatabaseUnavailable, connect
from activities.migrations import MigrationError, apply_migrations
from activities.seed import seed_demo_world
from workers.config import DevStack, Settings, StateDirLock, read_running_dev_stack, stack_file, write_dev_stack
from workers.devstack import (
    Child,
    ChildFailed,
    clean_temporal_env,
    ensure_database,
    ensure_port_free,
    postgres_dsn,
    prepare_postgres,
    spawn,
    start_postgres,
    start_temporal,
)

NAMESPACE = "default"


@dataclass(frozen=True)
class DevOptions:
    state_dir: Path
    temporal_port: int = 7233
    ui_port: int = 8233
    pg_port: int = 55432
    with_worker: bool = True


class AlreadyRunning(RuntimeError):
    pass


def _check_before_starting(options: DevOptions) -> StateDirLock:
    """Take the state directory's lock and check the ports, before anything is started."""
    ensure_port_free(options.temporal_port, "--temporal-port")
    ensure_port_free(options.ui_port, "--ui-port")
    ensure_port_free(options.pg_port, "--pg-port")
    lock = StateDirLock(options.state_dir)
    if not lock.acquire():
        running = read_running_dev_stack(options.state_dir)
        pid = f" (pid {running.pid})" if running else ""
        raise AlreadyRunning(f"hitl dev is already running from {options.state_dir}{pid}; stop it first or use --state-dir")
    return lock


async def _prepare_database(dsn_port: int) -> None:
    await ensure_database(dsn_port)
    conn = await connect(postgres_dsn(dsn_port), source="the embedded PostgreSQL")
    try:
        await apply_migrations(conn)
        # first start only: the demo world, so the example cases find accounts, reviewers and precedent
        await seed_demo_world(conn)
    finally:
        await conn.close()


def _banner(options: DevOptions, stack: DevStack, worker: Child | None, task_queue: str) -> str:
    worker_line = f"task queue {task_queue} (pid {worker.process.pid})" if worker else "not started (--no-worker)"
    return "\n".join(
        [
            f"hitl dev is up; state in {options.state_dir}",
            f"  Temporal    {stack.temporal_address}  (namespace {stack.namespace})",
            f"  Web UI      {stack.ui_url}",
            f"  PostgreSQL  {stack.database_url}",
            f"  Worker      {worker_line}",
            "Start a demo case: hitl start renewal --file examples/renewal_acme_fy26.json",
            "Then:              hitl show acme_enterprise/fy26",
            "Stop with Ctrl-C.",
        ]
    )


def run_dev(options: DevOptions, settings: Settings) -> int:
    """Start PostgreSQL, Temporal and a worker; block until a signal or a child dies; stop all in order."""
    options = DevOptions(**{**options.__dict__, "state_dir": options.state_dir.resolve()})
    lock = _check_before_starting(options)

    stop_requested = False

    def request_stop(signum, _frame):
        nonlocal stop_requested
        stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    children: list[Child] = []
    try:
        layout = prepare_postgres(options.state_dir / "postgres")
        children.append(start_postgres(layout, options.pg_port))
        asyncio.run(_prepare_database(options.pg_port))
        children.append(
            start_temporal(
                options.state_dir / "temporal.db",
                options.temporal_port,
                options.ui_port,
                options.state_dir / "temporal.log",
            )
        )
        stack = DevStack(
            temporal_address=f"127.0.0.1:{options.temporal_port}",
            namespace=NAMESPACE,
            ui_url=f"http://localhost:{options.ui_port}",
            database_url=postgres_dsn(options.pg_port),
            pid=os.getpid(),
        )
        worker = None
        if options.with_worker:
            env = clean_temporal_env(dict(os.environ), stack.temporal_address, NAMESPACE)
            env["HITL_DATABASE_URL"] = stack.database_url
            env["HITL_STATE_DIR"] = str(options.state_dir)
            env["HITL_TASK_QUEUE"] = settings.task_queue
            worker = spawn("worker", [sys.executable, "-m", "workers.cli", "worker"], log_path=None, env=env)
            children.append(worker)
        write_dev_stack(options.state_dir, stack)
        print(_banner(options, stack, worker, settings.task_queue), flush=True)

        while not stop_requested:
            for child in children:
                if not child.alive():
                    raise ChildFailed(f"{child.name} exited unexpectedly with code {child.process.returncode}")
            time.sleep(0.2)
        print("stopping hitl dev ...", flush=True)
        return 0
    except (ChildFailed, DatabaseUnavailable, MigrationError) as err:
        print(f"hitl dev: {err}", file=sys.stderr, flush=True)
        return 1
    finally:
        for child in reversed(children):
            child.stop()
        stack_file(options.state_dir).unlink(missing_ok=True)
        lock.release()
