"""What every `hitl` command shares, kept in `ctx.obj`: settings, the connections, the exit codes.

A command asks `app.settings` where it needs them (a configuration error is then its first
message), awaits `app.cases()`, `app.temporal()` or `app.database()` (each opened once, on first
use, and closed when the command ends), and hands its async body to `app.run`. Errors a user can
act on become one line on stderr and an exit code, here and nowhere else (`EXIT_CODES`).

Every command ends with os._exit: short-lived processes that used the Temporal SDK can abort at
interpreter exit (sdk-python #300, exit code 134).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import click
from pydantic import ValidationError
from temporalio.client import Client

from activities.db import DatabaseUnavailable, connect
from activities.migrations import MigrationError
from activities.store.directory import UnknownReviewer
from hitl_temporal.cli.case_files import CaseFileError, one_line
from hitl_temporal.client import CaseClient
from hitl_temporal.codec import PayloadDecryptError
from hitl_temporal.errors import ActionRefused, AnswerRejected, CaseError, DecisionRejected
from hitl_temporal.inbox import InvalidQueryValue
from workers.client import TemporalUnavailable, connect_client
from workers.config import Settings, resolve_database_url
from workers.devstack import ChildFailed, PortInUse

# What a command's error prints before its message, and the exit code: the first match wins.
# 1: the case (or person) is unknown, ambiguous, refused the request or nobody answered;
# 2: bad input or configuration, or a server that cannot be reached.
EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], str, int], ...] = (
    ((ActionRefused, AnswerRejected), "refused: ", 1),
    ((DecisionRejected,), "rejected: ", 1),
    ((CaseError, UnknownReviewer), "", 1),
    (
        (
            DatabaseUnavailable,
            TemporalUnavailable,
            MigrationError,
            PortInUse,
            ChildFailed,
            CaseFileError,
            InvalidQueryValue,
            PayloadDecryptError,
        ),
        "",
        2,
    ),
)
USER_ERRORS: tuple[type[BaseException], ...] = tuple(error for errors, _, _ in EXIT_CODES for error in errors)


class Application:
    """The state of one `hitl` run (click's `ctx.obj`)."""

    def __init__(self) -> None:
        self.state_dir: Path | None = None
        self._settings: Settings | None = None
        self._client: Client | None = None
        self._database: asyncpg.Connection | None = None

    @property
    def settings(self) -> Settings:
        """HITL_* settings, read once; an invalid one ends the command with exit code 2."""
        if self._settings is None:
            try:
                settings = Settings()
            except ValidationError as err:
                problems = "; ".join(f"HITL_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors())
                self.fail(f"invalid configuration: {problems}")
            if self.state_dir is not None:
                settings = settings.model_copy(update={"state_dir": self.state_dir})
            self._settings = settings
        return self._settings

    async def temporal(self) -> Client:
        """The Temporal client, connected on first use."""
        if self._client is None:
            self._client = await connect_client(self.settings)
        return self._client

    async def cases(self) -> CaseClient:
        """A CaseClient on the configured task queue."""
        return CaseClient(await self.temporal(), self.settings.task_queue)

    async def database(self) -> asyncpg.Connection:
        """A PostgreSQL connection, opened on first use and closed when the command ends."""
        if self._database is None:
            database = resolve_database_url(self.settings)
            self._database = await connect(database.value, source=database.source)
        return self._database

    async def close_database(self) -> None:
        """Close the connection now (a command that goes on without it); `database()` opens another."""
        if self._database is not None:
            database, self._database = self._database, None
            await database.close()

    def run(self, body: Callable[[], Coroutine[Any, Any, int | None]]) -> NoReturn:
        """Run an async command body and exit with its code (0 for None), errors mapped by EXIT_CODES."""

        async def main() -> int | None:
            try:
                return await body()
            finally:
                await self.close_database()

        self.call(lambda: asyncio.run(main()))

    def call(self, body: Callable[[], int | None], *, also: tuple[type[BaseException], ...] = ()) -> NoReturn:
        """Run a command body and exit with its code; `also`: more errors shown as one line, exit code 2."""
        try:
            code = body() or 0
        except KeyboardInterrupt:
            self.finish(130)
        except (*USER_ERRORS, *also) as err:
            prefix, code = next(((p, c) for errors, p, c in EXIT_CODES if isinstance(err, errors)), ("", 2))
            self.fail(prefix + one_line(str(err)), code)
        self.finish(code)

    def fail(self, message: str, code: int = 2) -> NoReturn:
        """`hitl: <message>` on stderr, then exit."""
        click.echo(f"hitl: {message}", err=True)
        self.finish(code)

    def finish(self, code: int) -> NoReturn:
        """Flush and leave with os._exit (see the module docstring)."""
        from workers.telemetry import shutdown_tracing

        shutdown_tracing()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


pass_app = click.make_pass_decorator(Application, ensure=True)


def _set_state_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    ctx.ensure_object(Application).state_dir = value


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="HITL_STATE_DIR",
    expose_value=False,
    callback=_set_state_dir,
    help="State directory of the dev stack [default: .hitl]",
)
