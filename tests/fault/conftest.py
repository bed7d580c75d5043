"""A dedicated stack per fault module: its own PostgreSQL, its own Temporal dev server (persisted to a
db file so it can be stopped and restarted on the same port), brought up by the same `LocalStack` as
`hitl dev` and the benchmark, and the worker as a subprocess.

Nothing here touches the session fixtures (`database_url`, `temporal_env`, ...) other tests share:
a fault test may SIGKILL, stop or restart any part of *its* stack and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from activities.connectors import LocalConnector
from activities.policy_files import bundled_policy_dir, load_policies
from gates.evidence import SourceRequest
from tests.helpers import clean_env, postgres_capable_tmpdir, wait_for_text
from workers.client import DATA_CONVERTER
from workers.devstack import Child, LocalStack, spawn

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_READY = "worker polling task queue"
# Every gate has three levels; (remind_after, escalate_after) per level.
Delays = tuple[tuple[str, str], tuple[str, str], tuple[str, str]]


def write_policies(directory: Path, delays: Delays | dict[str, Delays] | None) -> Path:
    """Copies of the bundled policies (same file names, ids and versions) with other gate delays:
    one ladder for every policy, or a ladder per policy_id (others keep their bundled delays)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in sorted(bundled_policy_dir().glob("*.yaml")):
        data = yaml.safe_load(source.read_text())
        ladder = delays.get(data["policy_id"]) if isinstance(delays, dict) else delays
        if ladder is not None:
            levels = data["gate"]["levels"]
            assert len(levels) == len(ladder), f"{source.name} has {len(levels)} levels"
            for level, (remind, escalate) in zip(levels, ladder):
                level["remind_after"], level["escalate_after"] = remind, escalate
        (directory / source.name).write_text(yaml.safe_dump(data, sort_keys=False))
    load_policies(directory)  # the worker must load them: fail here, not in a case
    return directory


# --- a slow CRM ---------------------------------------------------------------------------------


class SlowCrm:
    """A CRM service on loopback answering the HTTP connector contract after `delay` seconds.

    Counts requests in flight so a test knows a case is in the middle of gathering."""

    def __init__(self, answers: dict[str, dict[str, Any]], delay: float):
        self.answers = answers
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.started = 0
        self.completed = 0
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                with crm.lock:
                    crm.in_flight += 1
                    crm.started += 1
                try:
                    time.sleep(crm.delay)
                    account = (query.get("account") or [""])[0]
                    items = (query.get("items") or [""])[0].split(",")
                    answer = crm.answers.get(account)
                    if url.path != "/api/crm" or answer is None:
                        status, body = 404, {"error": "no such account"}
                    else:
                        status, body = 200, {"items": {k: answer[k] for k in items if k in answer}, "ref": f"crm:{account}"}
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker that asked was killed
                finally:
                    with crm.lock:
                        crm.in_flight -= 1
                        crm.completed += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="slow-crm", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api"

    def __enter__(self) -> SlowCrm:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def crm_answers_from_world(dsn: str, accounts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the demo world's CRM says about `accounts`, so the HTTP CRM answers exactly the same."""
    from activities.connectors._items import CrmItems

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        answers = {}
        for account in accounts:
            result = await LocalConnector(pool).fetch(
                SourceRequest(source="crm", key={"account": account}, items=list(CrmItems.model_fields))
            )
            assert not result.missing, result.missing
            answers[account] = {item.item: item.value for item in result.items}
        return answers
    finally:
        await pool.close()


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class FaultStack(LocalStack):
    """The module's own `LocalStack` (the bring-up of `hitl dev`: PostgreSQL migrated and seeded, Temporal
    persisted to a db file) plus worker processes; each part can be killed and restarted."""

    worker_env: dict[str, str] = field(default_factory=dict)
    task_queue: str = field(default_factory=lambda: f"fault-{uuid.uuid4()}")
    # Durability across a machine crash is not under test; a killed PostgreSQL still recovers from its WAL.
    postgres_settings: dict[str, str] = field(default_factory=lambda: {"fsync": "off", "full_page_writes": "off"})
    source: str = "the fault suite's PostgreSQL"
    worker: Child | None = None
    workers_started: int = 0
    client: Client | None = None

    @property
    def worker_log(self) -> Path:
        return self.root / f"worker-{self.workers_started}.log"

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """A fresh connection per query: the server may have been restarted since the last one."""
        conn = await asyncpg.connect(self.database_url, timeout=5)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    # Temporal ---------------------------------------------------------------------------------

    async def connect(self, timeout: float = 60) -> Client:
        """The port answers before the frontend is healthy ("Frontend is not healthy yet"): retry until it is."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client = await Client.connect(self.temporal_address, data_converter=DATA_CONVERTER)
                return self.client
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def wait_for_frontend(self, timeout: float = 60) -> None:
        """After a restart: until the frontend answers health checks (the clients reconnect by themselves)."""
        assert self.client is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self.client.service_client.check_health(timeout=timedelta(seconds=2)):
                    return
            except RPCError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Temporal frontend not healthy within {timeout:.0f}s\n{self.log_tails()}")
            await asyncio.sleep(0.2)

    # worker -----------------------------------------------------------------------------------

    async def start_worker(self) -> Child:
        """`python -m hitl_temporal.cli worker` in its own process, ready once it polls."""
        assert self.worker is None or not self.worker.alive(), "a worker is already running"
        self.workers_started += 1
        log = self.worker_log
        argv = [sys.executable, "-m", "hitl_temporal.cli", "worker"]
        self.worker = spawn("worker", argv, log_path=log, env=self.worker_env, cwd=PROJECT_ROOT)
        await wait_for_text(log, WORKER_READY, timeout=60, process=self.worker.process)
        return self.worker

    def kill_worker(self) -> None:
        """SIGKILL: no draining, no goodbye to the server; in-flight activities are simply lost."""
        assert self.worker is not None and self.worker.alive()
        self.worker.process.send_signal(signal.SIGKILL)
        self.worker.process.wait(10)

    def stop_all(self) -> None:
        for child in (self.worker, self.temporal, self.postgres):
            if child is not None:
                with contextlib.suppress(Exception):
                    child.stop()

    def log_tails(self) -> str:
        parts = []
        for name in ("temporal.log", "postgres.log", *(f"worker-{n}.log" for n in range(1, self.workers_started + 1))):
            path = self.root / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-15:]
                parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def fault_stack(
    name: str,
    *,
    delays: Delays | dict[str, Delays] | None = None,
    connector_urls: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
) -> AsyncIterator[FaultStack]:
    """Start PostgreSQL (migrated, seeded), Temporal and one worker subprocess; stop them all afterwards.
    `worker_env`: more settings for every worker (e.g. HITL_SMTP_*), over the stack's own."""
    with postgres_capable_tmpdir(f"hitl-fault-{name}-") as root:
        policy_dir = write_policies(root / "policies", delays)
        stack = FaultStack(root=root)
        stack.worker_env = clean_env(
            TEMPORAL_ADDRESS=stack.temporal_address,
            TEMPORAL_NAMESPACE="default",
            TEMPORAL_CONFIG_FILE="/nonexistent",
            HITL_DATABASE_URL=stack.database_url,
            HITL_TASK_QUEUE=stack.task_queue,
            HITL_POLICY_DIR=str(policy_dir),
            HITL_STATE_DIR=str(root / "state"),
            HITL_IDENTITY="asserted",  # these tests are about crashes, not proofs (tests/*/test_trust.py are)
            **({"HITL_CONNECTOR_URLS": json.dumps(connector_urls)} if connector_urls else {}),
        )
        stack.worker_env.update(worker_env or {})
        try:
            await stack.start()
            await stack.connect()
            await stack.start_worker()
            yield stack
        except BaseException:
            print(stack.log_tails(), file=sys.stderr)
            raise
        finally:
            stack.stop_all()


# --- what every fault test ends with ------------------------------------------------------------


async def assert_decided_once(
    stack: FaultStack,
    handle: WorkflowHandle,
    *,
    outcome: str | None = None,
    decided_by: str | Iterable[str] | None = None,
    timeout: float = 90,
) -> dict[str, Any]:
    """The case finished, and PostgreSQL holds exactly one decision row for it (and no precedent: asserted),
    agreeing with the workflow's result and with the trace it carries. Returns the trace."""
    try:
        result = await asyncio.wait_for(handle.result(), timeout)
    except TimeoutError:
        raise AssertionError(f"{handle.id} did not finish within {timeout:.0f}s\n{stack.log_tails()}") from None
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED, description.status
    first_run = description.raw_description.workflow_execution_info.first_run_id or description.run_id
    # this case's rows: not a seeded past decision, nor an earlier test's case under the same ID
    rows = await stack.fetch(
        "SELECT * FROM decision_traces WHERE case_id = $1 AND (decision_key = $2 OR run_id = $3)",
        handle.id,
        f"{handle.id}#{first_run}",
        description.run_id,
    )
    assert len(rows) == 1, f"expected exactly one decision row for {handle.id}, found {len(rows)}"
    row = rows[0]
    trace = json.loads(row["trace"])
    assert row["decision_key"] == f"{handle.id}#{first_run}"
    assert (row["outcome"], row["decided_by"], row["decided_via"]) == (result.outcome, result.decided_by, result.decided_via)
    assert (trace["outcome"], trace["decided_by"], trace["decided_via"]) == (
        row["outcome"], row["decided_by"], row["decided_via"]
    )
    assert row["id"] == result.trace_id
    if outcome is not None:
        assert row["outcome"] == outcome, (handle.id, row["outcome"], row["decided_by"])
    if decided_by is not None:
        allowed = {decided_by} if isinstance(decided_by, str) else set(decided_by)
        assert row["decided_by"] in allowed, (handle.id, row["decided_by"], allowed)
    # the stack runs with HITL_IDENTITY=asserted: no decision here is a verified reviewer's, so none is precedent
    assert await stack.fetch("SELECT id FROM precedents WHERE decision_trace_id = $1", row["id"]) == []
    return trace


async def activity_starts(handle: WorkflowHandle, activity_type: str) -> list:
    """The last start of each activity of that type (history keeps only the last one)."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id) == activity_type
    ]


async def activity_attempts(handle: WorkflowHandle, activity_type: str) -> list[int]:
    """The attempt number each completed activity of that type finished on."""
    return [started.attempt for started in await activity_starts(handle, activity_type)]


async def pending_attempts(handle: WorkflowHandle, activity_type: str) -> list[int]:
    """Attempt numbers of pending activities of that type (1 = never failed yet)."""
    description = await handle.describe()
    return [
        p.attempt
        for p in description.raw_description.pending_activities
        if p.activity_type.name == activity_type
    ]


async def trace_table_locks(conn: asyncpg.Connection) -> tuple[int, int]:
    """How many other backends wait for a lock on `decision_traces`, and how many hold one that writes (an
    INSERT in an open transaction; the reads `record_decision` makes before its INSERT hold ACCESS SHARE,
    which is not counted). pg_locks, not pg_stat_activity: a statement blocked while being parsed (asyncpg
    prepares every statement) can still show the connection's previous query there."""
    rows = await conn.fetch(
        """SELECT granted, count(DISTINCT pid) AS n FROM pg_locks
           WHERE relation = 'decision_traces'::regclass AND pid <> pg_backend_pid()
             AND (NOT granted OR mode <> 'AccessShareLock')
           GROUP BY granted"""
    )
    counts = {r["granted"]: r["n"] for r in rows}
    return counts.get(False, 0), counts.get(True, 0)


__all__ = [
    "FaultStack",
    "SlowCrm",
    "activity_attempts",
    "assert_decided_once",
    "crm_answers_from_world",
    "fault_stack",
    "pending_attempts",
    "trace_table_locks",
    "write_policies",
]
