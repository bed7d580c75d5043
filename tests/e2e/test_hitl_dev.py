"""`hitl dev` as a user runs it: the real console script, real PostgreSQL and Temporal children, signals."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

# The workflow sandbox re-imports this module; the test machinery is not workflow code.
with workflow.unsafe.imports_passed_through():
    import httpx
    import psutil
    import pytest

    from demo.examples import EXAMPLES
    from tests.helpers import HITL, assert_eventually, clean_env, postgres_capable_tmpdir, wait_for_text
    from workers.client import DATA_CONVERTER
    from workers.devstack import free_port

pytestmark = pytest.mark.slow

BANNER_END = "Stop with Ctrl-C."
TIMER = timedelta(seconds=8)


@workflow.defn(name="TestWaitingTimer")
class WaitingTimerWorkflow:
    @workflow.run
    async def run(self, label: str) -> str:
        await workflow.sleep(TIMER, summary="outlive a restart of hitl dev")
        return f"woke up: {label}"


class HitlDev:
    """One state directory and one set of ports; `hitl dev` can be started and stopped on them repeatedly."""

    def __init__(self, root: Path):
        self.root = root
        self.state_dir = root / ".hitl"
        self.temporal_port, self.ui_port, self.pg_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def stdout(self) -> Path:
        return self.root / f"dev-{self.runs}.out"

    @property
    def stderr(self) -> Path:
        return self.root / f"dev-{self.runs}.err"

    def argv(self, **ports: int) -> list[str]:
        return [
            HITL,
            "dev",
            "--state-dir",
            str(self.state_dir),
            "--temporal-port",
            str(ports.get("temporal", self.temporal_port)),
            "--ui-port",
            str(ports.get("ui", self.ui_port)),
            "--pg-port",
            str(ports.get("pg", self.pg_port)),
        ]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> str:
        """Start `hitl dev` and wait for its banner; returns what it printed."""
        assert not self.running()
        self.runs += 1
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(self.argv(), env=clean_env(), cwd=self.root, stdout=out, stderr=err)
        try:
            return await wait_for_text(self.stdout, BANNER_END, timeout=60, process=self.proc)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nstderr:\n{self.stderr.read_text(errors='replace')}") from None

    async def ensure_running(self) -> None:
        if not self.running():
            await self.start()

    def children(self) -> list[psutil.Process]:
        assert self.proc is not None
        children = psutil.Process(self.proc.pid).children(recursive=True)
        assert children, "hitl dev has no child processes"
        return children

    async def stop(self, sig: int, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hitl dev did not exit within {timeout:.0f}s of {signal.Signals(sig).name}") from None

    def kill_everything(self) -> None:
        if self.proc is None:
            return
        leftovers = []
        if self.running():
            leftovers = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in leftovers:
            if child.is_running():
                child.kill()


async def assert_all_gone(processes: list[psutil.Process], timeout: float = 30) -> None:
    def check():
        left = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not left, f"child processes still running: {[(p.pid, p.name()) for p in left]}"

    await assert_eventually(check, timeout=timeout)


async def connect(dev: HitlDev) -> Client:
    return await Client.connect(dev.address, data_converter=DATA_CONVERTER)


@pytest.fixture(scope="module")
async def dev():
    with postgres_capable_tmpdir("hitl-dev-test-") as root:
        stack = HitlDev(root)
        try:
            yield stack
        finally:
            stack.kill_everything()


def hitl_from_project_dir(dev: HitlDev, *args: str) -> subprocess.CompletedProcess:
    """A `hitl` command run from the directory `hitl dev` was started in, with no Temporal or HITL settings."""
    return subprocess.run([HITL, *args], env=clean_env(), cwd=dev.root, capture_output=True, text=True, timeout=60)


async def test_hitl_dev_comes_up_with_web_ui_and_is_found_by_check_and_migrate(dev):
    await dev.ensure_running()
    banner = dev.stdout.read_text()
    assert dev.address in banner

    ui_url = json.loads((dev.state_dir / "stack.json").read_text())["ui_url"]
    assert ui_url in banner
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(ui_url)
    assert response.status_code == 200

    check = await asyncio.to_thread(hitl_from_project_dir, dev, "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok:"), check.stdout
    assert f"Temporal at {dev.address}" in check.stdout

    migrate = await asyncio.to_thread(hitl_from_project_dir, dev, "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout.strip() == "schema is up to date"


async def test_second_hitl_dev_on_same_state_dir_refuses_in_one_line(dev):
    await dev.ensure_running()
    other_ports = dict(temporal=free_port(), ui=free_port(), pg=free_port())

    second = await asyncio.to_thread(
        subprocess.run, dev.argv(**other_ports), env=clean_env(), cwd=dev.root, capture_output=True, text=True, timeout=30
    )

    assert second.returncode != 0
    assert "Traceback" not in second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0], second.stderr
    assert dev.running(), "the first hitl dev must keep running"
    assert (dev.state_dir / "stack.json").exists(), "the refused second instance must not remove the first's stack.json"


async def test_hitl_dev_survives_restart_with_waiting_timer(dev):
    await dev.ensure_running()
    client = await connect(dev)
    task_queue = f"restart-{uuid.uuid4()}"
    workflow_id = f"restart-{uuid.uuid4()}"

    async with Worker(client, task_queue=task_queue, workflows=[WaitingTimerWorkflow]):
        handle = await client.start_workflow(WaitingTimerWorkflow.run, "after restart", id=workflow_id, task_queue=task_queue)

        async def timer_started():
            events = [e.event_type for e in (await handle.fetch_history()).events]
            assert EventType.EVENT_TYPE_TIMER_STARTED in events, events
            return events

        await assert_eventually(timer_started, timeout=30)
    events = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_TIMER_FIRED not in events, "the timer fired before the restart; the test proves nothing"

    children = dev.children()
    assert await dev.stop(signal.SIGINT) == 0, dev.stderr.read_text()
    stopped_at = datetime.now(UTC)
    await assert_all_gone(children)

    await dev.start()
    client = await connect(dev)
    handle = client.get_workflow_handle(workflow_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    async with Worker(client, task_queue=task_queue, workflows=[WaitingTimerWorkflow]):
        assert await asyncio.wait_for(handle.result(), timeout=30) == "woke up: after restart"

    fired = [e for e in (await handle.fetch_history()).events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
    assert len(fired) == 1
    assert fired[0].event_time.ToDatetime(tzinfo=UTC) > stopped_at, "the timer fired after the restart"


HUMAN = {
    "renewal_acme_fy26.json": ("renewal", "fin_rev_ana", "finance"),
    "procurement_northwind_reserved.json": ("procurement", "vp_ops_raj", "ops"),
    "access_eng_lee_prod_db_admin.json": ("access", "sec_rev_eli", "security"),
}
AUTO = {
    "renewal_globex_fy26_within_policy.json": "renewal",
    "procurement_woodgrove_within_policy.json": "procurement",
    "access_eng_lee_github_within_policy.json": "access",
}


async def test_every_example_runs_end_to_end_on_hitl_dev_and_a_waiting_case_survives_a_restart(dev):
    """The README's walk-through: start each example, decide the ones that need a human, read the traces."""
    await dev.ensure_running()

    async def cli(*args: str) -> subprocess.CompletedProcess:
        result = await asyncio.to_thread(hitl_from_project_dir, dev, *args)
        assert result.returncode == 0, f"hitl {' '.join(args)}: {result.stderr}"
        return result

    async def traced(case_id: str) -> dict:
        async def recorded():
            result = await asyncio.to_thread(hitl_from_project_dir, dev, "trace", case_id, "--format", "json")
            assert result.returncode == 0, result.stderr
            return json.loads(result.stdout)

        return await assert_eventually(recorded, timeout=30, interval=0.5)

    async def waiting(case_id: str) -> dict:
        async def is_waiting():
            view = json.loads((await cli("show", case_id, "--json")).stdout)
            assert view["state"] == "waiting", view["state"]
            return view

        return await assert_eventually(is_waiting, timeout=30, interval=0.5)

    started = {}
    for name, kind in {**{k: v[0] for k, v in HUMAN.items()}, **AUTO}.items():
        started[name] = json.loads((await cli("start", kind, "--file", str(EXAMPLES / name), "--json")).stdout)["case_id"]

    for name in AUTO:
        trace = await traced(started[name])
        assert trace["decided_via"] == "policy" and trace["human_gate"] is None

    renewal = started["renewal_acme_fy26.json"]
    before = (await waiting(renewal))["gate"]
    children = dev.children()
    assert await dev.stop(signal.SIGINT) == 0
    await assert_all_gone(children)
    await dev.start()
    after = (await waiting(renewal))["gate"]
    assert (after["level"], after["next_deadline"]) == (before["level"], before["next_deadline"]), "timers kept"

    for name, (_, reviewer, gate) in HUMAN.items():
        await waiting(started[name])
        decided = await cli("approve", started[name], "--as", reviewer, "--reason", "end to end on hitl dev")
        assert decided.stdout.startswith("accepted: approve by " + reviewer)
        assert "decided on the case's evidence as it stood just now: digest sha256:" in decided.stderr
        trace = await traced(started[name])
        assert (trace["human_gate"], trace["decided_by"], trace["outcome"]) == (gate, reviewer, "approve")
        # hitl dev runs verified: the CLI signed a proof with the state directory's local issuer
        assert (trace["identity"], trace["decided_identity"]["issuer"]) == ("verified", "hitl-local")
        assert trace["inputs"], "the trace lists the evidence consulted"


async def test_hitl_dev_stops_all_children_on_sigterm(dev):
    await dev.ensure_running()
    children = dev.children()
    started = time.monotonic()

    assert await dev.stop(signal.SIGTERM) == 0, dev.stderr.read_text()

    await assert_all_gone(children)
    assert not (dev.state_dir / "stack.json").exists(), "a stopped stack must not advertise itself"
    assert time.monotonic() - started < 30
