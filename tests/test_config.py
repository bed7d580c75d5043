"""Where a command finds Temporal and PostgreSQL: env and Temporal profiles, then a running `hitl dev`, then defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities.db import redact_dsn
from workers.config import DevStack, Settings, StateDirLock, resolve_database_url, resolve_temporal, write_dev_stack


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No TEMPORAL_*/HITL_* from the developer's shell, and no ~/.config/temporalio profile."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "HITL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-such-temporal.toml"))


def _stack(pid: int) -> DevStack:
    return DevStack(
        temporal_address="127.0.0.1:17233",
        namespace="dev-ns",
        ui_url="http://localhost:18233",
        database_url="postgresql://postgres@127.0.0.1:15432/hitl",
        pid=pid,
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def state_dir(tmp_path) -> Path:
    path = tmp_path / ".hitl"
    path.mkdir()
    return path


@pytest.fixture
def live_stack(state_dir):
    """Write a stack.json of this (live) process and hold the state directory's lock, as `hitl dev` does."""
    lock = StateDirLock(state_dir)
    assert lock.acquire()
    write_dev_stack(state_dir, _stack(os.getpid()))
    yield state_dir
    lock.release()


def test_temporal_address_env_wins_over_running_dev_stack(monkeypatch, state_dir, live_stack):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example:7233")

    resolved = resolve_temporal(Settings(state_dir=state_dir))

    assert resolved.value["target_host"] == "temporal.example:7233"
    assert resolved.source == "TEMPORAL_ADDRESS"


def test_temporal_profile_file_wins_over_running_dev_stack(monkeypatch, state_dir, live_stack, tmp_path):
    profile = tmp_path / "temporal.toml"
    profile.write_text('[profile.default]\naddress = "profile-host:7233"\nnamespace = "team"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))

    resolved = resolve_temporal(Settings(state_dir=state_dir))

    assert (resolved.value["target_host"], resolved.value["namespace"]) == ("profile-host:7233", "team")
    assert "temporal.toml" in resolved.source


def test_running_dev_stack_is_used_without_temporal_env(state_dir, live_stack):

    resolved = resolve_temporal(Settings(state_dir=state_dir))

    assert (resolved.value["target_host"], resolved.value["namespace"]) == ("127.0.0.1:17233", "dev-ns")
    assert str(state_dir) in resolved.source


def test_stack_file_of_dead_process_is_ignored_for_default_address(state_dir):
    write_dev_stack(state_dir, _stack(_dead_pid()))

    resolved = resolve_temporal(Settings(state_dir=state_dir))

    assert resolved.value["target_host"] == "localhost:7233"
    assert "default" in resolved.source


def test_unreadable_stack_file_falls_back_to_default(state_dir):
    (state_dir / "stack.json").write_text("{not json")

    assert resolve_temporal(Settings(state_dir=state_dir)).value["target_host"] == "localhost:7233"


def test_database_url_env_wins_over_running_dev_stack(monkeypatch, state_dir, live_stack):
    monkeypatch.setenv("HITL_DATABASE_URL", "postgresql://app@db.example/hitl")

    resolved = resolve_database_url(Settings(state_dir=state_dir))

    assert resolved.value == "postgresql://app@db.example/hitl"
    assert resolved.source == "HITL_DATABASE_URL"


def test_database_url_comes_from_running_dev_stack_without_env(state_dir, live_stack):

    resolved = resolve_database_url(Settings(state_dir=state_dir))

    assert resolved.value == "postgresql://postgres@127.0.0.1:15432/hitl"
    assert str(state_dir) in resolved.source


def test_database_url_unset_without_env_or_live_stack_says_how_to_fix(state_dir):
    write_dev_stack(state_dir, _stack(_dead_pid()))

    resolved = resolve_database_url(Settings(state_dir=state_dir))

    assert resolved.value is None
    assert "HITL_DATABASE_URL" in resolved.source and "hitl dev" in resolved.source


def test_state_dir_env_selects_which_dev_stack_is_found(monkeypatch, state_dir, live_stack):
    monkeypatch.setenv("HITL_STATE_DIR", str(state_dir))

    assert resolve_temporal(Settings()).value["target_host"] == "127.0.0.1:17233"


@pytest.mark.parametrize(
    ("dsn", "secret", "shown"),
    [
        ("postgresql://app:s3cret@db.example:5432/hitl", "s3cret", "postgresql://app:***@db.example:5432/hitl"),
        ("postgresql://app:p%40ss@db.example/hitl", "p%40ss", "postgresql://app:***@db.example/hitl"),
        ("postgresql://app:app@db.example/hitl", None, "postgresql://app:***@db.example/hitl"),
        (
            "postgresql://app@db.example/hitl?sslmode=require&password=s3cret",
            "s3cret",
            "postgresql://app@db.example/hitl?sslmode=require&password=***",
        ),
    ],
)
def test_redact_dsn_hides_the_password(dsn, secret, shown):
    redacted = redact_dsn(dsn)
    assert redacted == shown
    if secret:
        assert secret not in redacted


def test_redact_dsn_leaves_passwordless_dsn_alone():
    assert redact_dsn("postgresql://postgres@127.0.0.1:5432/hitl") == "postgresql://postgres@127.0.0.1:5432/hitl"


def test_stack_file_of_a_live_pid_without_the_lock_is_stale(state_dir):
    """A crashed `hitl dev` whose pid was reused by another process must not look alive."""
    write_dev_stack(state_dir, _stack(os.getpid()))

    assert resolve_temporal(Settings(state_dir=state_dir)).value["target_host"] == "localhost:7233"
