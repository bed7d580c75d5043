"""Process configuration: where Temporal, PostgreSQL and the state directory are.

Precedence, highest first:
1. Temporal's own client configuration (`temporalio.envconfig`: TOML profiles shared
   with the `temporal` CLI, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS),
   and HITL_DATABASE_URL for PostgreSQL;
2. the `hitl dev` stack running from the same state directory (its `stack.json`);
3. the local defaults (localhost:7233).

Configuration comes from the environment, never from workflow or activity inputs:
those are recorded in history and shown in the UI.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TASK_QUEUE = "hitl-cases"
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
STACK_FILE_NAME = "stack.json"


class Settings(BaseSettings):
    """HITL_* environment variables (see the configuration table in README.md)."""

    model_config = SettingsConfigDict(env_prefix="HITL_", extra="ignore")

    state_dir: Path = Field(default=Path(".hitl"), description="Where `hitl dev` keeps its servers' data.")
    database_url: str | None = Field(default=None, description="PostgreSQL DSN for decision traces and the demo world.")
    task_queue: str = Field(default=DEFAULT_TASK_QUEUE, min_length=1)
    max_cached_workflows: int = Field(
        default=1000,
        ge=0,
        description="Cases a worker keeps in memory; size above the cases active at once (waiting ones "
        "may be evicted: their next step replays their history, which costs CPU, not correctness).",
    )
    policy_dir: Path | None = Field(default=None, description="Policy files to use instead of the bundled ones.")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="Where OpenTelemetry spans go; OTLP uses OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    connector_urls: dict[str, str] = Field(
        default_factory=dict,
        description='Evidence sources served over HTTP, as JSON: {"crm": "http://crm.internal/api"}. '
        "Sources not named here are read from the demo world in PostgreSQL.",
    )
    connector_timeout_seconds: float = Field(default=5.0, gt=0, le=300, description="Per-request timeout of HTTP connectors.")
    agent_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API base (e.g. https://api.openai.com/v1); unset disables the advisory agent.",
    )
    agent_model: str = Field(default="gpt-4o-mini", min_length=1, description="Model name sent to the agent API.")
    agent_api_key: SecretStr | None = Field(default=None, description="Bearer token for the agent API; never printed.")
    agent_timeout_seconds: float = Field(default=20.0, gt=0, description="Whole-request timeout for one agent call.")
    notify_webhook_url: str | None = Field(
        default=None, description="Slack-compatible incoming webhook for reviewer reminders; unset keeps the outbox only."
    )
    notify_timeout_seconds: float = Field(default=5.0, gt=0, description="Whole-request timeout for one webhook post.")

    @field_validator("connector_urls")
    @classmethod
    def _known_sources(cls, urls: dict[str, str]) -> dict[str, str]:
        from gates.evidence import SOURCES

        unknown = sorted(set(urls) - set(SOURCES))
        if unknown:
            raise ValueError(f"HITL_CONNECTOR_URLS names unknown source(s) {', '.join(unknown)}; known: {', '.join(SOURCES)}")
        for source, url in urls.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"HITL_CONNECTOR_URLS[{source!r}] = {url!r} is not an http(s) URL")
        return urls


@dataclass(frozen=True)
class DevStack:
    """What a running `hitl dev` wrote to `<state_dir>/stack.json` for other commands to find."""

    temporal_address: str
    namespace: str
    ui_url: str
    database_url: str
    pid: int

    def is_running(self) -> bool:
        return psutil.pid_exists(self.pid)


def stack_file(state_dir: Path) -> Path:
    return state_dir / STACK_FILE_NAME


def write_dev_stack(state_dir: Path, stack: DevStack) -> None:
    stack_file(state_dir).write_text(json.dumps(stack.__dict__, indent=2) + "\n")


def read_running_dev_stack(state_dir: Path) -> DevStack | None:
    """The dev stack of this state directory, if its `hitl dev` process is still alive.

    Alive means its pid exists *and* the state directory's lock is held: a pid alone can be reused
    by an unrelated process after a crash, while the lock dies with its holder."""
    try:
        stack = DevStack(**json.loads(stack_file(state_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return stack if stack.is_running() and StateDirLock.is_held(state_dir) else None


class StateDirLock:
    """An exclusive lock on `<state_dir>/dev.lock`, held by `hitl dev` for its whole life.

    Taken before anything starts, so a second `hitl dev` on the same directory is refused even
    during the first one's start-up; released by the kernel if the holder dies."""

    FILE_NAME = "dev.lock"

    def __init__(self, state_dir: Path):
        self.path = state_dir / self.FILE_NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @classmethod
    def is_held(cls, state_dir: Path) -> bool:
        import fcntl

        try:
            fd = os.open(state_dir / cls.FILE_NAME, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


@dataclass(frozen=True)
class Resolved:
    """A resolved setting and a human description of where it came from, for error messages."""

    value: Any
    source: str


def resolve_temporal(settings: Settings) -> Resolved:
    """Keyword arguments for `Client.connect` (minus converter/interceptors) and their origin."""
    from temporalio.envconfig import ClientConfig

    connect = dict(ClientConfig.load_client_connect_config())
    if connect.get("target_host"):
        origin = "TEMPORAL_ADDRESS" if os.environ.get("TEMPORAL_ADDRESS") else "the temporal.toml client profile"
        return Resolved(connect, origin)
    stack = read_running_dev_stack(settings.state_dir)
    if stack is not None:
        connect["target_host"] = stack.temporal_address
        connect.setdefault("namespace", stack.namespace)
        return Resolved(connect, f"the hitl dev stack in {settings.state_dir}")
    connect["target_host"] = DEFAULT_TEMPORAL_ADDRESS
    return Resolved(connect, "the default (no TEMPORAL_ADDRESS, profile or running hitl dev)")


def resolve_database_url(settings: Settings) -> Resolved:
    if settings.database_url:
        return Resolved(settings.database_url, "HITL_DATABASE_URL")
    stack = read_running_dev_stack(settings.state_dir)
    if stack is not None:
        return Resolved(stack.database_url, f"the hitl dev stack in {settings.state_dir}")
    return Resolved(None, "nothing: set HITL_DATABASE_URL or run `hitl dev` in this directory")
