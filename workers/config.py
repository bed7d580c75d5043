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
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import psutil
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gates.cases import DEFAULT_TASK_QUEUE
from gates.json_input import JsonInputError, loads_strict
from gates.text import neutralize, one_visible_line_problem

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
STACK_FILE_NAME = "stack.json"

# Bounds on what the environment can hand a process: a base URL is a short string, and the whole
# map names six sources. Longer values are a mistake (a pasted file), not configuration.
MAX_URL_CHARS = 2048
MAX_CONNECTOR_URLS_CHARS = 16 * 1024
# Any other setting: a name, a path, a DSN, a key.
MAX_SETTING_CHARS = 4096


def _setting_problem(text: str) -> str | None:
    """Why `text` cannot be a setting, or None: it would be echoed in errors and logs, sent as a
    header or used as a name, so it must be one visible line (the value itself is never quoted:
    it may be a password or a key)."""
    if len(text) > MAX_SETTING_CHARS:
        return f"is {len(text)} characters; at most {MAX_SETTING_CHARS}"
    return one_visible_line_problem(text)


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot be a base URL we call, or None: plain http(s) with a host, no credentials
    (they would be shown in every error naming the URL), no query or fragment (paths are appended)."""
    if len(url) > MAX_URL_CHARS:
        return f"is {len(url)} characters; a URL is at most {MAX_URL_CHARS}"
    problem = _setting_problem(url)
    if problem:
        return problem
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError as err:
        return f"is not a valid URL ({err})"
    shown = neutralize(url, keep_newlines=False)[:100]
    if parts.scheme not in ("http", "https"):
        return f"{shown!r} is not an http(s) URL"
    if not parts.hostname:
        return f"{shown!r} has no host"
    if " " in url:
        return f"{shown!r} contains a space"
    if parts.username is not None or parts.password is not None:
        return "has credentials in it (user:password@); they would be shown wherever the URL is"
    if parts.query or parts.fragment:
        return f"{shown!r} has a query or fragment; give the base URL only"
    return None


def _email_address_problem(text: str) -> str | None:
    """Why `text` is not one email address (with or without a display name), or None."""
    from email.utils import parseaddr

    _, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    if not local or "." not in domain or " " in address:
        return f"{neutralize(text, keep_newlines=False)[:100]!r} is not an email address like hitl@example.com"
    return None


def is_loopback_host(host: str | None) -> bool:
    """Is `host` this machine (where plain http cannot be read or altered on the way)?"""
    return host is not None and (host == "localhost" or host.endswith(".localhost") or host in ("127.0.0.1", "::1"))


class Settings(BaseSettings):
    """HITL_* environment variables (see the configuration table in README.md)."""

    model_config = SettingsConfigDict(env_prefix="HITL_", extra="ignore")

    state_dir: Path = Field(default=Path(".hitl"), description="Where `hitl dev` keeps its servers' data.")
    database_url: str | None = Field(default=None, description="PostgreSQL DSN for decision traces and the demo world.")
    task_queue: str = Field(default=DEFAULT_TASK_QUEUE, min_length=1)
    max_cached_workflows: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="Cases a worker keeps in memory; size above the cases active at once (waiting ones "
        "may be evicted: their next step replays their history, which costs CPU, not correctness).",
    )
    policy_dir: Path | None = Field(default=None, description="Policy files to use instead of the bundled ones.")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="Where OpenTelemetry spans go; OTLP uses OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    connector_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description='Evidence sources served over HTTP, as JSON: {"crm": "http://crm.internal/api"}. '
        "Sources not named here are read from the demo world in PostgreSQL.",
    )
    connector_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, allow_inf_nan=False, description="Per-request timeout of HTTP connectors."
    )
    agent_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible API base (e.g. https://api.openai.com/v1); unset disables the advisory agent.",
    )
    agent_model: str = Field(default="gpt-4o-mini", min_length=1, description="Model name sent to the agent API.")
    agent_api_key: SecretStr | None = Field(default=None, description="Bearer token for the agent API; never printed.")
    agent_timeout_seconds: float = Field(
        default=20.0, gt=0, le=600, allow_inf_nan=False, description="Whole-request timeout for one agent call."
    )
    notify_webhook_url: str | None = Field(
        default=None, description="Slack-compatible incoming webhook for reviewer reminders; unset keeps the outbox only."
    )
    notify_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Whole-request timeout for one delivery: a webhook post, an SMTP session.",
    )
    ui_base_url: str | None = Field(
        default=None,
        description="The Temporal Web UI's address, for the case links in notifications and `hitl show`; "
        "unset: the running `hitl dev` stack's UI, else no link.",
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for email notifications; unset: no email.")
    smtp_port: int | None = Field(
        default=None, ge=1, le=65535, description="SMTP port; unset: 587 with STARTTLS, 25 without."
    )
    smtp_user: str | None = Field(default=None, description="SMTP login; unset: no authentication.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password; never printed.")
    smtp_from: str | None = Field(
        default=None, validate_default=True, description="The From address of notification emails (needed with HITL_SMTP_HOST)."
    )
    smtp_starttls: bool = Field(
        default=True,
        validate_default=True,
        description="Upgrade the SMTP connection with STARTTLS (required); off only for a relay on this machine.",
    )
    identity: Literal["verified", "asserted"] = Field(
        default="verified",
        description="verified: a decision carries a proof (a signed token) that its reviewer is who they say; "
        "asserted: the reviewer named is taken at their word.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OpenID Connect issuer whose tokens prove who decided (https; http only on localhost); "
        "its keys come from {issuer}/.well-known/openid-configuration.",
    )
    oidc_client_id: str | None = Field(default=None, description="This application's client id at the OIDC issuer.")
    oidc_audience: str | None = Field(
        default=None, validate_default=True, description="The `aud` the issuer's tokens carry; default: HITL_OIDC_CLIENT_ID."
    )
    oidc_person_claim: str = Field(
        default="sub", min_length=1, description="Token claim holding the person id (the directory id)."
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM, PKCS8) that signs audit checkpoints; unset: the dev key in the state directory.",
    )
    audit_checkpoint_dir: Path | None = Field(
        default=None,
        description="Where scheduled audit checkpoints are written (outside the database); unset: <state dir>/audit/checkpoints.",
    )
    local_issuer: Literal["auto", "on", "off"] = Field(
        default="auto",
        validate_default=True,
        description="The state directory's own token issuer (`hitl token`), for a laptop; auto: on when no HITL_OIDC_ISSUER.",
    )
    codec_keys: SecretStr | None = Field(
        default=None,
        description="Payload encryption keys, `id:<base64 of 32 bytes>` separated by commas: the first encrypts, "
        "all decrypt (rotation); unset: payloads are stored in Temporal as plain JSON. Never printed.",
    )

    @field_validator(
        "task_queue", "agent_model", "database_url", "state_dir", "policy_dir", "agent_api_key", "audit_key_file",
        "audit_checkpoint_dir", mode="before"
    )
    @classmethod
    def _one_visible_line(cls, value: Any) -> Any:
        """A task queue of `\x1b[2J` or a zero-width space would be accepted by Temporal and shown to
        operators as nothing (or as a cleared screen)."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, (str, Path)):
            problem = _setting_problem(str(text))
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("oidc_client_id", "oidc_audience", "oidc_person_claim", mode="before")
    @classmethod
    def _identity_name(cls, value: Any, info: ValidationInfo) -> Any:
        """Compared with token claims and shown in refusals: one visible line; set but empty is unset."""
        if isinstance(value, str) and not value.strip():
            return "sub" if info.field_name == "oidc_person_claim" else None
        if isinstance(value, str):
            problem = _setting_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("oidc_issuer", mode="before")
    @classmethod
    def _oidc_issuer_url(cls, value: Any) -> Any:
        """The issuer's keys decide who may act as anyone: fetched over https, or plain http on this machine only."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            problem = http_url_problem(value)
            if problem:
                raise ValueError(problem)
            if urlsplit(value).scheme == "http" and not is_loopback_host(urlsplit(value).hostname):
                raise ValueError("must be https (plain http is allowed only for localhost)")
        return value

    @field_validator("oidc_audience")
    @classmethod
    def _oidc_audience(cls, audience: str | None, info: ValidationInfo) -> str | None:
        """The audience defaults to the client id; an OIDC issuer without either is refused at start-up."""
        audience = audience or info.data.get("oidc_client_id")
        if info.data.get("oidc_issuer") and not audience:
            raise ValueError("HITL_OIDC_ISSUER needs HITL_OIDC_AUDIENCE or HITL_OIDC_CLIENT_ID (the `aud` its tokens carry)")
        return audience

    @field_validator("local_issuer")
    @classmethod
    def _some_issuer(cls, local_issuer: str, info: ValidationInfo) -> str:
        """Verified identity with no issuer would refuse every decision: said at start-up, not at the first one."""
        if info.data.get("identity") == "verified" and local_issuer == "off" and not info.data.get("oidc_issuer"):
            raise ValueError(
                "HITL_IDENTITY=verified needs an issuer: set HITL_OIDC_ISSUER, or HITL_LOCAL_ISSUER=auto/on, "
                "or HITL_IDENTITY=asserted"
            )
        return local_issuer

    @field_validator("codec_keys", mode="before")
    @classmethod
    def _codec_key_ring(cls, value: Any) -> Any:
        """Checked at start-up: a bad key found at the first payload would fail every workflow task.
        Set but empty is an error, not "off": a missing secret must not quietly store plain payloads."""
        from hitl_temporal.codec import CodecKeyError, KeyRing

        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str):
            if len(text) > MAX_SETTING_CHARS:
                raise ValueError(f"is {len(text)} characters; at most {MAX_SETTING_CHARS}")
            try:
                KeyRing.parse(text)
            except CodecKeyError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("agent_base_url", "notify_webhook_url", "ui_base_url", mode="before")
    @classmethod
    def _http_url(cls, value: Any) -> Any:
        """Checked at start-up, not at the first reminder or agent call hours later."""
        if isinstance(value, str) and not value.strip():
            return None  # set but empty, as `${VAR:-}` in a compose file leaves it: off
        if isinstance(value, str):
            problem = http_url_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("ui_base_url")
    @classmethod
    def _ui_base_url(cls, url: str | None) -> str | None:
        """Case links append `/namespaces/...` to it: no trailing slash, or they would have two."""
        return url.rstrip("/") if url else url

    @field_validator("smtp_host", "smtp_user", mode="before")
    @classmethod
    def _smtp_name(cls, value: Any) -> Any:
        """A host name or a login: one visible line without spaces; set but empty is unset."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            problem = _setting_problem(value) or (f"{value[:100]!r} contains a space" if " " in value else None)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("smtp_password", mode="before")
    @classmethod
    def _smtp_password(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text:
            return None
        if isinstance(text, str):
            problem = _setting_problem(text)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("smtp_from", mode="before")
    @classmethod
    def _smtp_from(cls, value: Any, info: ValidationInfo) -> Any:
        """An address (`hitl@example.com` or `HITL <hitl@example.com>`), needed as soon as there is a server."""
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            if info.data.get("smtp_host"):
                raise ValueError("HITL_SMTP_HOST needs HITL_SMTP_FROM (the address notification emails come from)")
            return None
        if isinstance(value, str):
            problem = _setting_problem(value) or _email_address_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("smtp_starttls")
    @classmethod
    def _smtp_starttls(cls, starttls: bool, info: ValidationInfo) -> bool:
        """A login needs its password, and a password never crosses the network in clear."""
        user, password, host = info.data.get("smtp_user"), info.data.get("smtp_password"), info.data.get("smtp_host")
        if password is not None and not user:
            raise ValueError("HITL_SMTP_PASSWORD needs HITL_SMTP_USER")
        if user and password is None:
            raise ValueError("HITL_SMTP_USER needs HITL_SMTP_PASSWORD")
        if password is not None and not starttls and not is_loopback_host(host):
            raise ValueError(
                "HITL_SMTP_STARTTLS=false would send the SMTP password in clear; allowed only for a server on localhost"
            )
        return starttls

    @field_validator("connector_urls", mode="before")
    @classmethod
    def _decode_connector_urls(cls, value: Any) -> Any:
        """The variable is JSON, decoded strictly: with `{"crm": "http://a", "crm": "http://b"}` the
        plain decoder would keep the second URL without a word."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, str):
            if not value.strip():
                return {}  # set but empty: no HTTP connectors
            if len(value) > MAX_CONNECTOR_URLS_CHARS:
                raise ValueError(f"is {len(value)} characters; at most {MAX_CONNECTOR_URLS_CHARS}")
            try:
                value = loads_strict(value, what="the value")
            except JsonInputError as err:
                raise ValueError(str(err)) from None
        # ValueError, not TypeError: pydantic reports only ValueErrors as validation errors
        if not isinstance(value, dict):
            raise ValueError('must be a JSON object of source to base URL, e.g. {"crm": "https://crm.internal/api"}')  # noqa: TRY004
        for source, url in value.items():
            if not isinstance(url, str):
                raise ValueError(f"{neutralize(str(source), keep_newlines=False)[:40]!r}: the base URL must be a string")  # noqa: TRY004
        return value

    @field_validator("connector_urls")
    @classmethod
    def _known_sources(cls, urls: dict[str, str]) -> dict[str, str]:
        from gates.evidence import SOURCES

        unknown = sorted(set(urls) - set(SOURCES))
        if unknown:
            names = ", ".join(neutralize(name, keep_newlines=False)[:40] for name in unknown[:6])
            raise ValueError(f"HITL_CONNECTOR_URLS names unknown source(s) {names}; known: {', '.join(SOURCES)}")
        for source, url in urls.items():
            problem = http_url_problem(url)
            if problem:
                raise ValueError(f"HITL_CONNECTOR_URLS[{source!r}] {problem}")
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
