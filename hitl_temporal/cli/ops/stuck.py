"""`hitl ops stuck`: the running cases that need an operator, the cases that ended without an outcome,
and the notification channels that keep failing."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from activities.channels.deliveries import failing_channels
from activities.db import DatabaseUnavailable
from activities.store.traces import recorded_runs
from gates.text import terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.options import DURATION
from hitl_temporal.ops import (
    EndedReport,
    FailingChannel,
    FailingChannelsReport,
    StuckCriteria,
    StuckReport,
    find_ended,
    find_stuck,
    human_age,
    retention_note,
)


@click.command()
@state_dir_option
@click.option("--older-than", type=DURATION, default=None, help="Only cases started longer ago than this (e.g. 1h, 2d).")
@click.option(
    "--attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Flag activities that failed more than this many attempts.",
)
@click.option("--grace", type=DURATION, default="5m", show_default=True, help="How far past its deadline a waiting case may be.")
@click.option("--task-queue", default=None, help="Only cases on this task queue.")
@click.option(
    "--since",
    type=DURATION,
    default="7d",
    show_default=True,
    help="Also list cases that ended without a recorded outcome within this window "
    "(the dev server's namespace keeps closed workflows 1 day).",
)
@click.option("--concurrency", type=click.IntRange(min=1, max=64), default=8, show_default=True, help="Cases described at once.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def stuck(
    app: Application,
    older_than: timedelta | None,
    attempts: int,
    grace: timedelta,
    task_queue: str | None,
    since: timedelta,
    concurrency: int,
    as_json: bool,
) -> None:
    """Every running case that needs an operator, and why: a failing workflow task, an activity
    retrying past --attempts, a deadline long passed, or no worker polling its task queue. Then the
    cases that ended without a recorded outcome within --since (terminated, timed out, failed,
    refused starts), why, and whether PostgreSQL holds a decision trace for them. Last, the
    notification channels (email, slack) that failed within --since and delivered nothing after."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        client = await app.temporal()
        now = datetime.now(UTC)
        report, ended = await asyncio.gather(
            find_stuck(
                client,
                criteria=StuckCriteria(activity_attempts=attempts, deadline_grace=grace),
                older_than=older_than,
                task_queue=task_queue,
                concurrency=concurrency,
                now=now,
            ),
            find_ended(client, since=now - since, task_queue=task_queue, concurrency=concurrency),
        )
        await check_traces_at(app, ended)
        channels = await failing_channels_at(app, since=now - since)
        if as_json:
            document = {
                "query": report.query,
                "checked": report.checked,
                "stuck": [c.model_dump(mode="json") for c in report.stuck],
                "ended_query": ended.query,
                "ended_since": ended.since.isoformat(),
                "ended": [c.model_dump(mode="json") for c in ended.ended],
                "database_problem": ended.database_problem,
                "failing_channels": [c.model_dump(mode="json") for c in channels.failing],
                "channels_problem": channels.database_problem,
            }
            click.echo(json.dumps(document, indent=2))
        else:
            click.echo(render_stuck(report, now))
            click.echo("")
            click.echo(render_ended(ended, now))
            click.echo("")
            click.echo(render_failing_channels(channels, now))
        return 0

    app.run(body)


async def check_traces(report: EndedReport, conn: asyncpg.Connection) -> None:
    """Set `trace_recorded` on each case: does `decision_traces` hold a decision of this run (or of its
    chain: a case that continued as new records under its first run)?"""
    if not report.ended:
        return
    runs, keys = await recorded_runs(conn, sorted({c.case_id for c in report.ended}))
    for case in report.ended:
        case.trace_recorded = (case.case_id, case.run_id) in runs or f"{case.case_id}#{case.first_run_id}" in keys


async def check_traces_at(app: Application, report: EndedReport) -> None:
    """`check_traces` on the command's connection; a database that cannot be read is noted, not fatal."""
    if not report.ended:
        return
    try:
        await check_traces(report, await app.database())
    except DatabaseUnavailable as err:
        report.database_problem = str(err)
    except (OSError, asyncpg.PostgresError) as err:
        report.database_problem = f"cannot read decision_traces: {type(err).__name__}: {err}"


async def failing_channels_at(app: Application, *, since: datetime) -> FailingChannelsReport:
    """The failing notification channels on the command's connection; a database that cannot be read is noted."""
    report = FailingChannelsReport(since=since)
    try:
        rows = await failing_channels(await app.database(), since=since)
    except DatabaseUnavailable as err:
        report.database_problem = str(err)
    except (OSError, asyncpg.PostgresError) as err:
        report.database_problem = f"cannot read notification_deliveries: {type(err).__name__}: {err}"
    else:
        report.failing = [FailingChannel(**dict(row)) for row in rows]
    return report


def render_failing_channels(report: FailingChannelsReport, now: datetime, *, width: int = 140) -> str:
    """The channels under the heading "notification channels failing", or one line when none is."""
    window = f"in the last {human_age(now - report.since)}"
    if report.database_problem:
        return f"notification channels not checked: {report.database_problem}"
    if not report.failing:
        return f"no notification channel failing {window}"
    table = Table(title=f"notification channels failing ({len(report.failing)}) {window}", title_justify="left")
    for name, wraps in (("channel", False), ("notifications", False), ("since", False), ("last error", True)):
        table.add_column(name, overflow="fold" if wraps else "ellipsis", no_wrap=not wraps)
    for channel in report.failing:
        since = f"{channel.since.astimezone(UTC):%Y-%m-%d %H:%M}Z ({human_age(now - channel.since)} ago)"
        cells = (channel.channel, str(channel.notifications), since, channel.last_error)
        table.add_row(*(Text(terminal_text(cell, one_line=True)) for cell in cells))  # Text: no rich markup in errors
    buffer = io.StringIO()
    Console(width=width, file=buffer, color_system=None).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def render_stuck(report: StuckReport, now: datetime, *, width: int = 140) -> str:
    """The stuck cases as a table, or one line when there are none."""
    if not report.stuck:
        return f"no stuck cases among {report.checked} running"
    table = Table(title=f"{len(report.stuck)} of {report.checked} running cases need an operator", title_justify="left")
    for name in ("case", "state", "age", "why"):
        table.add_column(name, overflow="fold")
    for case in report.stuck:
        age = human_age(now - case.started_at) if case.started_at else "?"
        table.add_row(case.case_id, case.state or "-", age, "\n".join(r.detail for r in case.reasons))
    buffer = io.StringIO()
    console = Console(width=width, file=buffer, color_system=None)
    console.print(table)
    return buffer.getvalue().rstrip("\n")


def render_ended(report: EndedReport, now: datetime, *, width: int = 140) -> str:
    """The cases that ended without a recorded outcome as a table under a one-line heading."""
    window = f"in the last {human_age(now - report.since)}{retention_note(now - report.since, report.retention)}"
    lines = []
    if report.database_problem:
        lines.append(f"decision traces not checked: {report.database_problem}")
    if not report.ended:
        return "\n".join([f"no case ended without a recorded outcome {window}", *lines])
    table = Table()
    # case IDs whole (an operator copies them), the reason wraps
    table.add_column("case", no_wrap=True, min_width=max(len(c.case_id) for c in report.ended))
    for name in ("status", "closed"):
        table.add_column(name, no_wrap=True)
    table.add_column("why", overflow="fold")
    table.add_column("trace", no_wrap=True)
    for case in report.ended:
        closed = f"{human_age(now - case.closed_at)} ago" if case.closed_at else "?"
        trace = {True: "recorded", False: "none", None: "?"}[case.trace_recorded]
        table.add_row(case.case_id, case.status_text, closed, case.why, trace)
    buffer = io.StringIO()
    console = Console(width=width, file=buffer, color_system=None)
    # the heading on one line, however narrow the table: the retention note must stay readable
    console.print(f"{len(report.ended)} cases ended without a recorded outcome {window}", soft_wrap=True)
    console.print(table)
    return "\n".join([buffer.getvalue().rstrip("\n"), *lines])
