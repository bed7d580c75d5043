"""Where a command finds Temporal and PostgreSQL: env and Temporal profiles, then a running `hitl dev`, then defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities.db import redact_dsn
from workers.config import (
    DevStack,
    Settings,
    StateDirLock,
    resolve_database_url,
    resolve_temporal,
    write_dev_stack,
)


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


# --- hostile settings: one line naming the variable, never a traceback, never the secret ---------


def _problem(monkeypatch, variable: str, value: str) -> str:
    """The configuration error for one HITL_* variable, as `hitl` prints it (hitl_temporal/cli/application.py)."""
    from pydantic import ValidationError

    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as raised:
        Settings()
    [error] = raised.value.errors()
    assert error["loc"] == (variable.removeprefix("HITL_").lower(),), "the error must name the variable"
    assert "\n" not in error["msg"] and "\x1b" not in error["msg"]
    return error["msg"].removeprefix("Value error, ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"crm": "http://a.example", "crm": "http://b.example"}', 'the value: duplicate key "crm": each key may appear once'),
        ('{"crm": "http://a.example"', "the value is not valid JSON: Expecting ',' delimiter at line 1 column 27"),
        ('{"crm": NaN}', "the value: NaN is not a JSON number"),
        (
            '{"crm": "http://crm.example/\udcff"}',
            "HITL_CONNECTOR_URLS['crm'] contains the hidden or control character ⟨U+DCFF⟩ at position 20",
        ),
        ('["http://crm.example"]', 'must be a JSON object of source to base URL, e.g. {"crm": "https://crm.internal/api"}'),
        ('{"crm": 5}', "'crm': the base URL must be a string"),
        (
            '{"crmm": "http://a.example", "\\u001b[2J": "http://b.example"}',
            "HITL_CONNECTOR_URLS names unknown source(s) ⟨U+001B⟩[2J, crmm; known: crm, chat",
        ),
        ('{"crm": "ftp://crm.example"}', "HITL_CONNECTOR_URLS['crm'] 'ftp://crm.example' is not an http(s) URL"),
        ('{"crm": "file:///etc/passwd"}', "HITL_CONNECTOR_URLS['crm'] 'file:///etc/passwd' is not an http(s) URL"),
        ('{"crm": "http://"}', "HITL_CONNECTOR_URLS['crm'] 'http://' has no host"),
        ('{"crm": "http://crm example/api"}', "HITL_CONNECTOR_URLS['crm'] 'http://crm example/api' contains a space"),
        ('{"crm": "http://crm.example:99999"}', "HITL_CONNECTOR_URLS['crm'] is not a valid URL (Port out of range 0-65535)"),
        (
            '{"crm": "http://crm.example/api?token=1"}',
            "HITL_CONNECTOR_URLS['crm'] 'http://crm.example/api?token=1' has a query or fragment",
        ),
        ('{"crm": "https://svc:s3cret@crm.example/api"}', "HITL_CONNECTOR_URLS['crm'] has credentials in it (user:password@)"),
        (
            '{"crm": "http://crm.example/\\u202eipa"}',
            "HITL_CONNECTOR_URLS['crm'] contains the hidden or control character ⟨U+202E⟩ at position 20",
        ),
        ('{"crm": "http://' + "a" * 3000 + '"}', "HITL_CONNECTOR_URLS['crm'] is 3007 characters; a URL is at most 2048"),
        ('{"crm": "http://' + "a" * 20000 + '"}', "is 20018 characters; at most 16384"),
        ("[" * 40 + "]" * 40, "the value is nested deeper than 32 levels"),
    ],
    ids=[
        "duplicate-key", "malformed-json", "nan", "not-utf8", "not-an-object", "not-a-string", "unknown-sources",
        "ftp", "file", "no-host", "space", "bad-port", "query", "credentials", "bidi", "huge-url", "huge-value", "deep",
    ],
)
def test_bad_connector_urls_are_one_line_naming_the_variable(monkeypatch, value, expected):
    message = _problem(monkeypatch, "HITL_CONNECTOR_URLS", value)
    assert message.startswith(expected), message
    assert "s3cret" not in message


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_connector_urls_mean_none(monkeypatch, value):
    """Set but empty, as `${HITL_CONNECTOR_URLS:-}` in a compose file leaves it."""
    monkeypatch.setenv("HITL_CONNECTOR_URLS", value)
    assert Settings().connector_urls == {}


def test_connector_urls_with_a_byte_order_mark_and_a_path_are_accepted(monkeypatch):
    monkeypatch.setenv("HITL_CONNECTOR_URLS", '\ufeff{"crm": "https://crm.internal:8443/api/v2", "iam": "http://10.0.0.5"}')
    assert Settings().connector_urls == {"crm": "https://crm.internal:8443/api/v2", "iam": "http://10.0.0.5"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HITL_TASK_QUEUE", "hitl\x1b[2Jcases", "contains the hidden or control character ⟨U+001B⟩ at position 5"),
        ("HITL_TASK_QUEUE", "\u200b", "contains the hidden or control character ⟨U+200B⟩ at position 1"),
        # a "letter" that draws nothing
        ("HITL_TASK_QUEUE", "\u3164", "contains the hidden or control character ⟨U+3164⟩ at position 1"),
        ("HITL_TASK_QUEUE", "\u0301", "has no visible characters"),  # a combining accent alone
        ("HITL_TASK_QUEUE", "q" * 5000, "is 5000 characters; at most 4096"),
        ("HITL_AGENT_MODEL", "gpt\x07", "contains the hidden or control character ⟨U+0007⟩ at position 4"),
        ("HITL_AGENT_API_KEY", "sk-abc\r\nX-Injected: 1", "contains the hidden or control character ⟨U+000D⟩ at position 7"),
        (
            "HITL_DATABASE_URL",
            "postgresql://app:s3cret@db/hitl\n",
            "contains the hidden or control character ⟨U+000A⟩ at position 32",
        ),
        ("HITL_STATE_DIR", "/srv/hitl\u202e", "contains the hidden or control character ⟨U+202E⟩ at position 10"),
        ("HITL_POLICY_DIR", " \t", "contains the hidden or control character ⟨U+0009⟩ at position 2"),
        ("HITL_AGENT_BASE_URL", "file:///etc/passwd", "'file:///etc/passwd' is not an http(s) URL"),
        ("HITL_AGENT_BASE_URL", "https://key:s3cret@llm.example/v1", "has credentials in it (user:password@)"),
        ("HITL_NOTIFY_WEBHOOK_URL", "javascript:alert(1)", "'javascript:alert(1)' is not an http(s) URL"),
        (
            "HITL_NOTIFY_WEBHOOK_URL",
            "https://hooks.example/T0\x1b",
            "contains the hidden or control character ⟨U+001B⟩ at position 25",
        ),
        ("HITL_CONNECTOR_TIMEOUT_SECONDS", "nan", "Input should be a finite number"),
        ("HITL_AGENT_TIMEOUT_SECONDS", "inf", "Input should be a finite number"),
        ("HITL_NOTIFY_TIMEOUT_SECONDS", "1e9", "Input should be less than or equal to 300"),
        ("HITL_MAX_CACHED_WORKFLOWS", "9" * 30, "Input should be less than or equal to 1000000"),
    ],
)
def test_other_bad_settings_are_one_line_naming_the_variable_without_the_secret(monkeypatch, variable, value, expected):
    message = _problem(monkeypatch, variable, value)
    assert message == expected or message.startswith(expected), message
    assert "s3cret" not in message and "sk-abc" not in message


@pytest.mark.parametrize("variable", ["HITL_AGENT_BASE_URL", "HITL_NOTIFY_WEBHOOK_URL"])
def test_empty_optional_urls_mean_off(monkeypatch, variable):
    monkeypatch.setenv(variable, "")
    assert getattr(Settings(), variable.removeprefix("HITL_").lower()) is None
