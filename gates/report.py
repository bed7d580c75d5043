"""How the gates are doing, from the recorded decision traces: the numbers behind `hitl report`.

    rows = await fetch_report_rows(conn, since=now - timedelta(days=30))  # activities/store/traces.py
    report = compute_report(rows, since=..., until=now)     # pure: unit-test it with hand-made rows
    ended = await count_ended(client, since=...)             # hitl_temporal/ops.py
    print(render_text(report)); write_png(report, "gates.png")   # hitl_temporal/cli/report.py

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

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
