"""`hitl policy agreement`: how often reviewers agreed with the brief's proposals (definitions: gates/agreement.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.table import Table

from activities.store.trace_reads import decided_traces
from gates.agreement import Agreement, AgreementReport, measure_agreement
from gates.cases import KIND_ALIASES
from gates.text import quoted, terminal_text
from hitl_temporal.cli.application import Application, pass_app, state_dir_option
from hitl_temporal.cli.policy.options import PAST, SINCE
from hitl_temporal.cli.render import plain


@click.command()
@state_dir_option
@click.option("--kind", type=click.Choice(sorted(KIND_ALIASES)), default=None, help="Only this kind of case.")
@click.option("--since", type=SINCE, default=None, help="Decided within this window (30d) or since this date [default: all].")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write a chart to this PNG file.")
@pass_app
def agreement(app: Application, kind: str | None, since: datetime | None, as_json: bool, png: Path | None) -> None:
    """How often reviewers decided as the brief proposed, per kind, policy version and rule.

    With a 95% Wilson interval, the disagreements with the reviewers' reasons, and the weekly
    movement. Only reviewers' decisions on a proposed approve or reject count."""
    app.settings  # noqa: B018 -- a configuration error comes first

    async def body() -> int:
        recorded = await decided_traces(await app.database(), since=since, kind=KIND_ALIASES[kind] if kind else None)
        await app.close_database()
        report = measure_agreement(recorded.traces, since=since)
        if png is not None:
            write_png(report, png)
        if as_json:
            document = report.model_dump(mode="json")
            document["unreadable_traces"] = recorded.unreadable
            click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        else:
            click.echo(render_text(report, unreadable=recorded.unreadable))
            if png is not None:
                click.echo(f"chart written to {png}")
        return 0

    app.run(body)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _interval(group: Agreement) -> str:
    return "-" if group.low is None or group.high is None else f"{group.low:.0%}-{group.high:.0%}"


def _weekly(group: Agreement) -> str:
    points = []
    for point in group.weekly:
        change = "" if point.change is None else f", {point.change * 100:+.0f} pts"
        points.append(f"{point.week} {point.agreed}/{point.decisions} ({_pct(point.rate)}{change})")
    return "; ".join(points)


def render_text(report: AgreementReport, *, unreadable: list[str] | None = None) -> str:
    """The report as `hitl policy agreement` prints it: totals, a table per rule, then disagreements."""
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    lines = [
        f"{report.agreed} of {report.decisions} reviewer decisions agreed with the proposed outcome, {window}"
        f" ({_pct(report.agreed / report.decisions if report.decisions else None)})"
    ]
    skipped = report.not_counted
    lines.append(
        f"not counted: {skipped.by_policy} decided by policy, {skipped.by_timeout} by timeout, "
        f"{skipped.by_operator_or_other} by an operator, {skipped.no_outcome_proposed} on a brief that proposed no outcome; "
        f"{skipped.request_info_rounds} request_info rounds before counted decisions"
    )
    if unreadable:
        lines.append(f"unreadable traces (not counted): {', '.join(unreadable)}")
    for total in report.totals:
        lines += [
            "",
            f"{total.kind} under {total.policy}: {total.agreed}/{total.decisions} agreed "
            f"({_pct(total.rate)}, 95% interval {_interval(total)})",
        ]
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("RULE", "LEVEL", "DECISIONS", "AGREED", "RATE", "95% INTERVAL"):
            table.add_column(column, justify="left" if column in ("RULE", "LEVEL") else "right")
        rules = [r for r in report.rules if (r.kind, r.policy) == (total.kind, total.policy)]
        for rule in rules:
            table.add_row(
                rule.rule or "", rule.level or "-", str(rule.decisions), str(rule.agreed), _pct(rule.rate), _interval(rule)
            )
        lines.append(plain(table))
        lines.append(f"weekly: {_weekly(total)}")
        for d in total.disagreements:
            lines.append(
                f"  {d.case_id}  {d.decided_at:%Y-%m-%d}: proposed {d.proposed}, {PAST.get(d.outcome, d.outcome)} by "
                f"{terminal_text(d.decided_by, one_line=True)}: {quoted(d.reason)}"
            )
    return "\n".join(lines)


def write_png(report: AgreementReport, path: Path) -> None:
    """The weekly share agreed per kind and policy version, with its Wilson interval (Agg backend, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # slow to import: only for --png
    from matplotlib.figure import Figure

    from gates.agreement import wilson_interval

    figure = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for total in report.totals:
        weeks = [p.week for p in total.weekly]
        rates = [p.rate * 100 for p in total.weekly]
        bounds = [wilson_interval(p.agreed, p.decisions) or (0.0, 0.0) for p in total.weekly]
        line = axes.plot(weeks, rates, marker="o", label=f"{total.kind.split('_')[0]} {total.policy}")[0]
        axes.fill_between(weeks, [b[0] * 100 for b in bounds], [b[1] * 100 for b in bounds], alpha=0.15, color=line.get_color())
    axes.set(title="Reviewers agreeing with the proposed outcome (95% Wilson interval)", ylabel="% of decisions", ylim=(0, 100))
    if report.totals:
        axes.legend(loc="lower right", fontsize="small")
    else:
        axes.text(0.5, 0.5, "no counted decisions", ha="center", va="center", transform=axes.transAxes)
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    figure.suptitle(f"hitl: {report.decisions} reviewer decisions, {window}")
    figure.savefig(path, format="png", dpi=100)
