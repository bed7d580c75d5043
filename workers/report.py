"""`hitl report`: how the gates are doing, from the recorded decision traces.

    rows = await fetch_report_rows(conn, since=now - timedelta(days=30))
    report = compute_report(rows, since=..., until=now)     # pure: unit-test it with hand-made rows
    print(render_text(report)); write_png(report, "gates.png")

Definitions (seeded rows, `decided_via = 'seed'`, are never counted):

- **time to decision** (p50/p90 per gate): `decided_at - gate_opened_at`, over the cases a reviewer
  decided (`decided_via` update or signal); timeouts and cancellations are counted by their rates.
- **escalation rate** per gate: cases that escalated at least once / cases at that gate.
- **timeout rate** per gate: cases decided by the gate's timeout / cases at that gate.
- **override rate** per gate: reviewer decisions whose brief proposed approve or reject and that
  went the other way / reviewer decisions with such a proposal.
- **auto-decided share** per kind: cases policy decided alone / cases of that kind.
- **ended without a recorded outcome** per kind (and its gate), from Temporal visibility, not the
  traces: case workflows terminated, timed out or failed (refused starts among them) that closed
  within the window. They have no trace, so the rates above cannot see them; visibility keeps
  them only as long as the namespace retains closed workflows (the dev server: 1 day).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel

REVIEWER_CHANNELS = frozenset({"update", "signal"})
PROPOSABLE = frozenset({"approve", "reject"})


@dataclass(frozen=True)
class TraceRow:
    """The part of one decision trace the report needs."""

    kind: str
    gate: str | None
    outcome: str
    decided_via: str
    opened_at: datetime
    gate_opened_at: datetime | None
    decided_at: datetime
    escalations: int
    proposal_outcome: str | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TraceRow:
        """From a `decision_traces` row (its columns plus the `trace` jsonb document)."""
        trace = record["trace"]
        if isinstance(trace, str):
            trace = json.loads(trace)
        gate_opened = trace.get("gate_opened_at")
        proposal = trace.get("proposal") or {}
        return cls(
            kind=record["kind"],
            gate=record["gate"],
            outcome=record["outcome"],
            decided_via=record["decided_via"],
            opened_at=record["opened_at"],
            gate_opened_at=datetime.fromisoformat(gate_opened) if gate_opened else None,
            decided_at=record["decided_at"],
            escalations=len(trace.get("escalations") or []),
            proposal_outcome=proposal.get("outcome"),
        )

    @property
    def by_reviewer(self) -> bool:
        return self.decided_via in REVIEWER_CHANNELS

    @property
    def seconds_to_decision(self) -> float:
        return (self.decided_at - (self.gate_opened_at or self.opened_at)).total_seconds()

    @property
    def overridable(self) -> bool:
        """A reviewer's approve/reject where the brief had proposed approve or reject."""
        return self.by_reviewer and self.proposal_outcome in PROPOSABLE and self.outcome in PROPOSABLE


class GateStats(BaseModel):
    gate: str
    cases: int
    reviewer_decisions: int
    p50_seconds: float | None
    p90_seconds: float | None
    escalated: int
    escalation_rate: float
    timed_out: int
    timeout_rate: float
    overrides: int
    override_base: int
    override_rate: float | None


class KindStats(BaseModel):
    kind: str
    cases: int
    auto_decided: int
    auto_decided_share: float


class EndedStats(BaseModel):
    """Cases of one kind that ended without a recorded outcome, by how they ended."""

    kind: str
    gate: str
    terminated: int = 0
    timed_out: int = 0
    failed: int = 0
    refused_starts: int = 0  # among `failed`: starts the case refused (HitlCaseState 'refused')

    @property
    def total(self) -> int:
        return self.terminated + self.timed_out + self.failed


class Report(BaseModel):
    since: datetime | None
    until: datetime
    cases: int
    gates: list[GateStats]
    kinds: list[KindStats]
    # From Temporal (see `count_ended`); None when it was not asked, with `ended_note` saying why.
    ended: list[EndedStats] | None = None
    ended_note: str | None = None


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compute_report(rows: Iterable[TraceRow], *, until: datetime, since: datetime | None = None) -> Report:
    rows = list(rows)
    by_gate: dict[str, list[TraceRow]] = defaultdict(list)
    by_kind: dict[str, list[TraceRow]] = defaultdict(list)
    for row in rows:
        by_kind[row.kind].append(row)
        if row.gate is not None:
            by_gate[row.gate].append(row)
    gates = []
    for gate, at_gate in sorted(by_gate.items()):
        reviewed = [r.seconds_to_decision for r in at_gate if r.by_reviewer]
        escalated = sum(1 for r in at_gate if r.escalations > 0)
        timed_out = sum(1 for r in at_gate if r.decided_via == "timeout")
        base = [r for r in at_gate if r.overridable]
        overrides = sum(1 for r in base if r.outcome != r.proposal_outcome)
        gates.append(
            GateStats(
                gate=gate,
                cases=len(at_gate),
                reviewer_decisions=len(reviewed),
                p50_seconds=percentile(reviewed, 0.5),
                p90_seconds=percentile(reviewed, 0.9),
                escalated=escalated,
                escalation_rate=escalated / len(at_gate),
                timed_out=timed_out,
                timeout_rate=timed_out / len(at_gate),
                overrides=overrides,
                override_base=len(base),
                override_rate=overrides / len(base) if base else None,
            )
        )
    kinds = []
    for kind, of_kind in sorted(by_kind.items()):
        auto = sum(1 for r in of_kind if r.decided_via == "policy")
        kinds.append(KindStats(kind=kind, cases=len(of_kind), auto_decided=auto, auto_decided_share=auto / len(of_kind)))
    return Report(since=since, until=until, cases=len(rows), gates=gates, kinds=kinds)


async def fetch_report_rows(conn: asyncpg.Connection, *, since: datetime | None) -> list[TraceRow]:
    """Recorded decisions (seeded history excluded), decided at or after `since`."""
    records = await conn.fetch(
        """SELECT kind, gate, outcome, decided_via, opened_at, decided_at, trace
           FROM decision_traces
           WHERE decided_via <> 'seed' AND ($1::timestamptz IS NULL OR decided_at >= $1)
           ORDER BY decided_at""",
        since,
    )
    return [TraceRow.from_record(r) for r in records]


# Visibility's names of the statuses that close a case without an outcome, and EndedStats' fields.
_ENDED_FIELDS = {"Terminated": "terminated", "TimedOut": "timed_out", "Failed": "failed"}


async def count_ended(client, *, since: datetime | None) -> list[EndedStats]:
    """Per kind, case workflows that closed without an outcome after `since`: one visibility count per
    workflow type grouped by status, and one of its refused starts (a refused start has no HitlCaseKind,
    hence the type)."""
    from gates.cases import WORKFLOW_TYPES
    from gates.kinds import SPECS
    from workflows import search_attributes as sa

    statuses = ", ".join(f"'{s}'" for s in _ENDED_FIELDS)
    window = f" AND CloseTime > '{since.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z'" if since else ""

    async def of_kind(kind) -> EndedStats:
        query = f"WorkflowType = '{WORKFLOW_TYPES[kind]}' AND ExecutionStatus IN ({statuses}){window}"
        by_status, refused = await asyncio.gather(
            client.count_workflows(f"{query} GROUP BY ExecutionStatus"),
            client.count_workflows(f"{query} AND ExecutionStatus = 'Failed' AND {sa.CASE_STATE.name} = 'refused'"),
        )
        counts = {_ENDED_FIELDS[str(group.group_values[0])]: group.count for group in by_status.groups}
        return EndedStats(kind=kind.value, gate=SPECS[kind].gate_title.lower(), refused_starts=refused.count, **counts)

    return list(await asyncio.gather(*(of_kind(kind) for kind in WORKFLOW_TYPES)))


# -- output ---------------------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts[:2])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_text(report: Report, *, width: int = 120) -> str:
    from rich.console import Console
    from rich.table import Table

    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    console = Console(width=width, file=io.StringIO(), color_system=None)
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
    return console.file.getvalue().rstrip("\n")


def write_png(report: Report, path: Path) -> None:
    """Three panels: time to decision, rates per gate, auto-decided share per kind (Agg backend, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
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
    auto.set(title="Decided by policy alone", ylabel="% of cases", ylim=(0, 100), xticks=list(range(len(kinds))), xticklabels=kinds)
    for axes in (times, rates):
        if gates:
            axes.legend(loc="upper right", fontsize="small")
    if not report.cases:
        for axes in (times, rates, auto):
            axes.text(0.5, 0.5, "no decisions", ha="center", va="center", transform=axes.transAxes)
    window = f"since {report.since:%Y-%m-%d %H:%M}Z" if report.since else "all time"
    figure.suptitle(f"hitl: {report.cases} decisions, {window}")
    figure.savefig(path, format="png", dpi=100)
