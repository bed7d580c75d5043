"""`hitl report`: how the gates are doing, from the recorded decision traces (definitions: gates/report.py)."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

from activities.policy_files import bundled_gates, load_policies
from activities.store.traces import report_rows
from gates.cases import CaseKind
from gates.durations import format_duration
from gates.policy import gates_by_kind
from gates.report import Report, compute_report
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.options import DURATION
from hitl_temporal.ops import count_ended, namespace_retention, retention_note
from workers.client import TemporalUnavailable


@click.command()
@state_dir_option
@click.option("--since", type=DURATION, default="30d", show_default=True, help="Decisions recorded within this window.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a chart to this PNG file.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def report(app: Application, since: timedelta, png: Path | None, as_json: bool) -> None:
    """Time to decision, escalation, timeout and override rates per gate, and the share decided by
    policy per kind, from the recorded decision traces (seeded history excluded); and per kind, the
    cases that ended without a recorded outcome (from Temporal: they have no trace)."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        until = datetime.now(UTC)
        start = until - since
        rows = await report_rows(await app.database(), since=start)
        await app.close_database()
        result = compute_report(rows, since=start, until=until)
        try:  # Temporal down: the traces still make a report
            client = await app.temporal()
            ended, retention = await asyncio.gather(
                count_ended(client, since=start, gate_of=_gates_in_use(app)), namespace_retention(client)
            )
            note = retention_note(since, retention).strip(" ()") or None
            result = result.model_copy(update={"ended": ended, "ended_note": note})
        except (TemporalUnavailable, RPCError) as err:
            result = result.model_copy(update={"ended_note": f"Temporal not reachable: {getattr(err, 'message', None) or err}"})
        if png is not None:
            write_png(result, png)
        if as_json:
            click.echo(result.model_dump_json(indent=2))
        else:
            click.echo(render_text(result))
            if png is not None:
                click.echo(f"chart written to {png}")
        return 0

    app.run(body)


# -- output ---------------------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """`1h 30m`, `2d 5m`: the two largest non-zero units; `-` without a value."""
    return "-" if seconds is None else format_duration(round(seconds), separator=" ", adjacent=False)


def _pct(value: float | None) -> str:
    """`25%`, or `-` without a value."""
    return "-" if value is None else f"{value:.0%}"


def render_text(report: Report, *, width: int = 120) -> str:
    """The report as plain text tables, as `hitl report` prints it."""
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    buffer = io.StringIO()
    console = Console(width=width, file=buffer, color_system=None)
    console.print(f"{report.cases} decisions recorded, {window} (seeded history excluded)")
    if report.gates:
        gates = Table(title="Per gate", title_justify="left")
        for name in ("gate", "cases", "decided by reviewer", "p50", "p90", "escalated", "timed out", "overridden"):
            gates.add_column(name, justify="left" if name == "gate" else "right")
        for g in report.gates:
            gates.add_row(
                g.gate,
                str(g.cases),
                str(g.reviewer_decisions),
                human_duration(g.p50_seconds),
                human_duration(g.p90_seconds),
                f"{_pct(g.escalation_rate)} ({g.escalated})",
                f"{_pct(g.timeout_rate)} ({g.timed_out})",
                f"{_pct(g.override_rate)} ({g.overrides}/{g.override_base})",
            )
        console.print(gates)
    if report.kinds:
        kinds = Table(title="Per kind", title_justify="left")
        for name in ("kind", "cases", "decided by policy"):
            kinds.add_column(name, justify="left" if name == "kind" else "right")
        for k in report.kinds:
            kinds.add_row(k.kind, str(k.cases), f"{_pct(k.auto_decided_share)} ({k.auto_decided})")
        console.print(kinds)
    if report.ended is not None:
        title = f"Ended without a recorded outcome, {window} (from Temporal)"
        if report.ended_note:
            title += f"; {report.ended_note}"
        console.print(title, soft_wrap=True)  # one line, however long: the note must stay readable when piped
        ended = Table()
        for name in ("kind", "gate", "terminated", "timed out", "failed", "of which refused starts"):
            ended.add_column(name, justify="left" if name in ("kind", "gate") else "right")
        for e in report.ended:
            ended.add_row(e.kind, e.gate, str(e.terminated), str(e.timed_out), str(e.failed), str(e.refused_starts))
        console.print(ended)
    elif report.ended_note:
        console.print(f"Ended without a recorded outcome: not counted: {report.ended_note}", soft_wrap=True)
    return buffer.getvalue().rstrip("\n")


def write_png(report: Report, path: Path) -> None:
    """Three panels: time to decision, rates per gate, auto-decided share per kind (Agg backend, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # slow to import: only for --png
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    times, rates, auto = figure.subplots(1, 3)
    gates = [g.gate for g in report.gates]
    positions = list(range(len(gates)))

    def hours(value: float | None) -> float:
        return (value or 0.0) / 3600

    times.bar([p - 0.2 for p in positions], [hours(g.p50_seconds) for g in report.gates], width=0.4, label="p50")
    times.bar([p + 0.2 for p in positions], [hours(g.p90_seconds) for g in report.gates], width=0.4, label="p90")
    times.set(title="Time to decision (reviewers)", ylabel="hours", xticks=positions, xticklabels=gates)
    rate_series = (
        ("escalated", [g.escalation_rate for g in report.gates]),
        ("timed out", [g.timeout_rate for g in report.gates]),
        ("overridden", [g.override_rate or 0.0 for g in report.gates]),
    )
    for offset, (label, values) in zip((-0.27, 0.0, 0.27), rate_series):
        rates.bar([p + offset for p in positions], [v * 100 for v in values], width=0.27, label=label)
    rates.set(title="Per gate", ylabel="% of cases", ylim=(0, 100), xticks=positions, xticklabels=gates)
    kinds = [k.kind.split("_")[0] for k in report.kinds]  # renewal, procurement, access
    auto.bar(range(len(kinds)), [k.auto_decided_share * 100 for k in report.kinds], color="tab:green")
    auto.set(
        title="Decided by policy alone", ylabel="% of cases", ylim=(0, 100), xticks=list(range(len(kinds))), xticklabels=kinds
    )
    for axes in (times, rates):
        if gates:
            axes.legend(loc="upper right", fontsize="small")
    if not report.cases:
        for axes in (times, rates, auto):
            axes.text(0.5, 0.5, "no decisions", ha="center", va="center", transform=axes.transAxes)
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    figure.suptitle(f"hitl: {report.cases} decisions, {window}")
    figure.savefig(path, format="png", dpi=100)


def _gates_in_use(app: Application) -> dict[CaseKind, str]:
    """Each kind's gate under the policies the worker is configured with (HITL_POLICY_DIR), else the bundled ones."""
    policy_dir = app.settings.policy_dir
    return gates_by_kind(load_policies(policy_dir)) if policy_dir is not None else bundled_gates()
