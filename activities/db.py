"""PostgreSQL connections for activities and commands: fail fast with a message naming the DSN."""

from __future__ import annotations

import asyncpg

CONNECT_TIMEOUT_SECONDS = 5.0


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced, safe to print in errors (also `?password=`, which asyncpg accepts)."""
    import re
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if parts.password is None and query == parts.query:
        return dsn
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL could not be reached or is not configured."""


async def connect(dsn: str | None, *, source: str = "HITL_DATABASE_URL") -> asyncpg.Connection:
    if not dsn:
        raise DatabaseUnavailable(f"no PostgreSQL configured: {source}")
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS)
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as err:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {redact_dsn(dsn)} (from {source}): {type(err).__name__}: {err}"
        ) from err


async def _no_session_state_to_reset(_conn: asyncpg.Connection) -> None:
    """The project's code leaves no session state on a connection: its advisory locks are
    transaction-level, its cursors live inside transactions, it never LISTENs or SETs. So a released
    connection skips asyncpg's reset query (a round trip to PostgreSQL on every release); asyncpg still
    rolls back a transaction left open and drops listeners before calling this."""


async def create_pool(dsn: str | None, *, source: str = "HITL_DATABASE_URL", max_size: int = 10) -> asyncpg.Pool:
    if not dsn:
        raise DatabaseUnavailable(f"no PostgreSQL configured: {source}")
    try:
        return await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, timeout=CONNECT_TIMEOUT_SECONDS, reset=_no_session_state_to_reset
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as err:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {redact_dsn(dsn)} (from {source}): {type(err).__name__}: {err}"
        ) from err
