"""`hitl dev`: the whole system on a laptop, in the foreground, with state that survives restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from activities.db import DatabaseUnavailable
from activities.migrations import MigrationError
from workers.config import DevStack, Settings, StateDirLock, read_running_dev_stack, stack_file, write_dev_stack
from workers.devstack import (
    Child,
    ChildFailed,
    EmbeddedStackMissing,
    LocalStack,
    clean_temporal_env,
    ensure_port_free,
    require_embedded_stack,
    spawn,
    wait_for_port,
)

NAMESPACE = "default"


@dataclass(frozen=True)
class DevOptions:
    state_dir: Path
    temporal_port: int = 7233
    ui_port: int = 8233
    pg_port: int = 55432
    with_worker: bool = True
    codec_port: int | None = None  # payloads encrypted (HITL_CODEC_KEYS): the UI's codec server listens here


class AlreadyRunning(RuntimeError):
    pass


def _check_before_starting(options: DevOptions) -> StateDirLock:
    """Take the state directory's lock and check the ports, before anything is started."""
    ensure_port_free(options.temporal_port, "--temporal-port")
    ensure_port_free(options.ui_port, "--ui-port")
    ensure_port_free(options.pg_port, "--pg-port")
    if options.codec_port is not None:
        ensure_port_free(options.codec_port, "--codec-port")
    lock = StateDirLock(options.state_dir)
    if not lock.acquire():
        running = read_running_dev_stack(options.state_dir)
        pid = f" (pid {running.pid})" if running else ""
        raise AlreadyRunning(f"hitl dev is already running from {options.state_dir}{pid}; stop it first or use --state-dir")
    return lock


def _banner(options: DevOptions, stack: DevStack, worker: Child | None, task_queue: str) -> str:
    worker_line = f"task queue {task_queue} (pid {worker.process.pid})" if worker else "not started (--no-worker)"
    codec_line = (
        [f"  Codec       {_codec_endpoint(options.codec_port)}  (payloads encrypted; the Web UI decodes through it)"]
        if options.codec_port is not None
        else []
    )
    return "\n".join(
        [
            f"hitl dev is up; state in {options.state_dir}",
            f"  Temporal    {stack.temporal_address}  (namespace {stack.namespace})",
            f"  Web UI      {stack.ui_url}",
            *codec_line,
            f"  PostgreSQL  {stack.database_url}",
            f"  Worker      {worker_line}",
            "Start a demo case: hitl start renewal --file examples/renewal_acme_fy26.json",
            "Then:              hitl show acme_enterprise/fy26",
            "Stop with Ctrl-C.",
        ]
    )


def _codec_endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _start_codec_server(options: DevOptions, env: dict[str, str]) -> Child:
    """`hitl codec-server` for the Web UI (its origin, by either loopback name), once it listens."""
    assert options.codec_port is not None
    argv = [sys.executable, "-m", "hitl_temporal.cli", "codec-server", "--port", str(options.codec_port)]
    for host in ("localhost", "127.0.0.1"):
        argv += ["--ui-origin", f"http://{host}:{options.ui_port}"]
    child = spawn("codec server", argv, log_path=options.state_dir / "codec-server.log", env=env)
    wait_for_port(child, options.codec_port, timeout=30)
    return child


def run_dev(options: DevOptions, settings: Settings) -> int:
    """Start PostgreSQL, Temporal and a worker; block until a signal or a child dies; stop all in order."""
    try:
        require_embedded_stack("hitl dev")
    except EmbeddedStackMissing as err:
        print(err, file=sys.stderr, flush=True)
        return 1
    options = DevOptions(**{**options.__dict__, "state_dir": options.state_dir.resolve()})
    lock = _check_before_starting(options)

    stop_requested = False

    def request_stop(signum, _frame):
        nonlocal stop_requested
        stop_requested = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    # State that survives restarts: the cluster in <state>/postgres, Temporal in <state>/temporal.db,
    # the demo world seeded on first start only.
    servers = LocalStack(
        root=options.state_dir,
        pg_port=options.pg_port,
        temporal_port=options.temporal_port,
        ui_port=options.ui_port,
        ui_codec_endpoint=_codec_endpoint(options.codec_port) if options.codec_port is not None else None,
    )
    worker: Child | None = None
    codec: Child | None = None
    try:
        if options.codec_port is not None:  # first: the UI calls it from its first page
            codec = _start_codec_server(options, {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")})
        asyncio.run(servers.start())
        stack = DevStack(
            temporal_address=servers.temporal_address,
            namespace=NAMESPACE,
            ui_url=f"http://localhost:{options.ui_port}",
            database_url=servers.database_url,
            pid=os.getpid(),
        )
        if options.with_worker:
            env = clean_temporal_env(dict(os.environ), stack.temporal_address, NAMESPACE)
            env["HITL_DATABASE_URL"] = stack.database_url
            env["HITL_STATE_DIR"] = str(options.state_dir)
            env["HITL_TASK_QUEUE"] = settings.task_queue
            worker = spawn("worker", [sys.executable, "-m", "hitl_temporal.cli", "worker"], log_path=None, env=env)
        children = servers.children() + [child for child in (codec, worker) if child is not None]
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
        if worker is not None:
            worker.stop()
        servers.stop()
        if codec is not None:
            codec.stop()
        stack_file(options.state_dir).unlink(missing_ok=True)
        lock.release()
