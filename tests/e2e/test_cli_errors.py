"""What a user sees when `hitl` cannot start: one line on stderr naming the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from activities.migrations import available_migrations
from gates.messages import StackCheckInput
from tests.helpers import HITL, clean_env, wait_for_text
from workers.devstack import free_port
from workflows.stack_check import StackCheckWorkflow


def run_hitl(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([HITL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


async def run_hitl_async(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30):
    return await asyncio.to_thread(run_hitl, args, env, cwd, timeout)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserting there is exactly one and no traceback)."""
    assert result.returncode != 0, f"expected failure, got 0; stdout={result.stdout!r}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    return lines[0]


@pytest.fixture
def listening_socket():
    """A port held by a live listener, as another program would hold it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("flag", ["--temporal-port", "--ui-port", "--pg-port"])
def test_hitl_dev_with_busy_port_names_port_and_flag_and_starts_nothing(flag, listening_socket, tmp_path):
    ports = {"--temporal-port": free_port(), "--ui-port": free_port(), "--pg-port": free_port()}
    ports[flag] = listening_socket
    state_dir = tmp_path / "state"
    args = ["dev", "--state-dir", str(state_dir)] + [str(x) for item in ports.items() for x in item]

    result = run_hitl(args, clean_env(), tmp_path)

    assert result.returncode == 2
    line = one_line_error(result)
    assert str(listening_socket) in line and flag in line, line
    assert not state_dir.exists(), "nothing may be started (or initialised) when a port is taken"


def test_worker_with_unreachable_database_names_redacted_dsn(tmp_path):
    dsn = f"postgresql://hitl:Sup3r-Secret@127.0.0.1:{free_port()}/hitl"
    env = clean_env(HITL_DATABASE_URL=dsn, HITL_STATE_DIR=str(tmp_path / "state"))

    line = one_line_error(run_hitl(["worker"], env, tmp_path))

    assert "Sup3r-Secret" not in line
    assert dsn.replace("Sup3r-Secret", "***") in line
    assert "HITL_DATABASE_URL" in line


async def test_worker_with_unreachable_temporal_names_address_and_its_source(database_url, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = clean_env(HITL_DATABASE_URL=database_url, HITL_STATE_DIR=str(tmp_path / "state"), TEMPORAL_ADDRESS=address)

    line = one_line_error(await run_hitl_async(["worker"], env, tmp_path))

    assert address in line and "TEMPORAL_ADDRESS" in line, line


async def test_worker_on_unmigrated_database_says_to_run_hitl_migrate(empty_database_url, tmp_path):
    env = clean_env(HITL_DATABASE_URL=empty_database_url, HITL_STATE_DIR=str(tmp_path / "state"))

    line = one_line_error(await run_hitl_async(["worker"], env, tmp_path))

    assert "hitl migrate" in line, line
    first = available_migrations()[0]
    assert f"{first.version:04d}_{first.name}" in line, line


async def test_migrate_applies_initial_schema_then_reports_up_to_date(empty_database_url, tmp_path):
    env = clean_env(HITL_DATABASE_URL=empty_database_url, HITL_STATE_DIR=str(tmp_path / "state"))

    first = await run_hitl_async(["migrate"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert [f"applied {m.version:04d}_{m.name}" for m in available_migrations()] == first.stdout.splitlines()

    second = await run_hitl_async(["migrate"], env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "schema is up to date"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("HITL_OTEL_EXPORTER", "bogus"),
        ("HITL_MAX_CACHED_WORKFLOWS", "-1"),
        ("HITL_CONNECTOR_URLS", '{"crm": "http://a.example'),  # was a pydantic-settings traceback
        ("HITL_CONNECTOR_URLS", '{"crm": "http://a.example", "crm": "http://b.example"}'),
        ("HITL_TASK_QUEUE", "hitl\x1b[2Jcases"),
    ],
)
def test_invalid_hitl_setting_is_one_line_naming_the_variable(tmp_path, variable, value):
    env = clean_env(**{variable: value}, HITL_DATABASE_URL=f"postgresql://u@127.0.0.1:{free_port()}/x")

    line = one_line_error(run_hitl(["migrate"], env, tmp_path))

    assert "invalid configuration" in line and variable in line, line


async def test_worker_serves_probe_and_exits_cleanly_on_sigterm(temporal_env, database_url, tmp_path):
    task_queue = f"cli-worker-{uuid.uuid4()}"
    env = clean_env(
        HITL_DATABASE_URL=database_url,
        HITL_STATE_DIR=str(tmp_path / "state"),
        HITL_TASK_QUEUE=task_queue,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
    )
    stdout, stderr = tmp_path / "worker.out", tmp_path / "worker.err"
    # a worker process that outlives this block: opening its log files and spawning it do not wait on anything
    with open(stdout, "wb") as out, open(stderr, "wb") as err:  # noqa: ASYNC230
        proc = subprocess.Popen([HITL, "worker"], env=env, cwd=tmp_path, stdout=out, stderr=err)  # noqa: ASYNC220
    try:
        await wait_for_text(stdout, "worker polling task queue", timeout=30, process=proc)

        check_id = f"check-{uuid.uuid4()}"
        result = await asyncio.wait_for(
            temporal_env.client.execute_workflow(
                StackCheckWorkflow.run, StackCheckInput(check_id=check_id), id=check_id, task_queue=task_queue
            ),
            timeout=30,
        )
        assert result.worker_identity.startswith(f"{proc.pid}@"), "the probe ran in the `hitl worker` process"

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0, stderr.read_text()
        assert "Traceback" not in stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
