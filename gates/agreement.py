"""How often reviewers agree with the proposals the brief makes: the evidence for trusting a rule more.

    traces = await decided_traces(conn, since=..., kind=...)   # activities/store/trace_reads.py
    report = measure_agreement(traces.traces, since=...)       # pure: unit-test it with hand-made traces
    # hitl_temporal/cli/policy/agreement.py prints it, as text, JSON or a PNG

Definitions:

- **counted**: a decision a reviewer made (`decided_via` update or signal) on a brief that proposed
  `approve` or `reject`. A brief that proposed `request_info` or `none` said "no outcome is proposed"
  (gates/brief.py), so there is nothing to agree with: such decisions are counted apart, as are the
  decisions made by policy, by a timeout or by an operator.
- **agreed**: the reviewer's outcome is the proposal's outcome.
- **request_info rounds** are not decisions of their own: the trace keeps only the last brief's
  proposal, so the final decision is compared with it, once; the rounds before are counted apart.
- **per rule**: a decision counts under every rule whose finding required a human (so one decision can
  count under several rules); one the last evaluation sent to no rule (a gate reopened after a
  request_info round) counts under NO_RULE. The per-kind-and-policy totals count each decision once.
- **per level**: each rule's figures are kept apart by the automation level it had in the case
  (gates/policy.py: shadow, assist, auto), the evidence for moving it up a level. A rule in shadow
  counts under every decision of its policy, fired or not: its verdict is on trial in every case,
  and its proposal was not shown, so the reviewer did not copy it.
- **interval**: the Wilson score interval at 95% (z = 1.95996, the 97.5% point of the standard
  normal), for the share agreed among the counted decisions; it stays inside [0, 1] and is wide
  when there are few decisions, which is the point: 3 of 3 is not yet evidence.
- **weekly**: ISO weeks (`2026-W49`, Monday to Sunday, UTC) of `decided_at`, with the change in
  the share agreed from the week before that had decisions.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from statistics import NormalDist

from pydantic import BaseModel, Field

from gates.policy import AutomationLevel
from gates.report import PROPOSABLE, REVIEWER_CHANNELS
from gates.trace import DecisionTrace

CONFIDENCE = 0.95
Z = NormalDist().inv_cdf(1 - (1 - CONFIDENCE) / 2)  # 1.959963984540054
NO_RULE = "(no rule fired)"


def wilson_interval(agreed: int, decisions: int, z: float = Z) -> tuple[float, float] | None:
    """The Wilson score interval for `agreed` of `decisions`; None without decisions.

    centre = (p + z²/2n) / (1 + z²/n), half width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)."""
    if decisions <= 0:
        return None
    n, p = decisions, agreed / decisions
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def iso_week(at: datetime) -> str:
    """`2026-W49`: the ISO year and week of `at` in UTC."""
    year, week, _ = at.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


class Disagreement(BaseModel):
    """A decision that went another way than proposed; `reason` is the reviewer's own words."""

    case_id: str
    decided_at: datetime
    proposed: str
    outcome: str
    decided_by: str
    reason: str


class WeekPoint(BaseModel):
    week: str
    decisions: int
    agreed: int
    rate: float
    change: float | None = Field(description="rate minus the rate of the previous week with decisions")


class Agreement(BaseModel):
    """Agreement within one kind and policy version, for one rule or (`rule` None) all decisions."""

    kind: str
    policy: str
    rule: str | None
    level: AutomationLevel | None = Field(default=None, description="The rule's automation level in these cases")
    decisions: int
    agreed: int
    rate: float | None
    low: float | None = Field(description="Wilson 95% lower bound")
    high: float | None = Field(description="Wilson 95% upper bound")
    disagreements: list[Disagreement]
    weekly: list[WeekPoint]


class NotCounted(BaseModel):
    """Traces read but not compared with a proposal, by why."""

    by_policy: int = 0
    by_timeout: int = 0
    by_operator_or_other: int = 0
    no_outcome_proposed: int = Field(default=0, description="Reviewer decisions on a brief proposing request_info or none")
    request_info_rounds: int = Field(default=0, description="request_info rounds before counted decisions (not counted)")


class AgreementReport(BaseModel):
    since: datetime | None
    confidence: float = CONFIDENCE
    decisions: int = Field(description="Decisions counted (a reviewer's, on a proposed approve or reject)")
    agreed: int
    totals: list[Agreement] = Field(description="Per kind and policy version")
    rules: list[Agreement] = Field(description="Per kind, policy version and rule")
    not_counted: NotCounted


def _counted(trace: DecisionTrace) -> bool:
    return trace.decided_via in REVIEWER_CHANNELS and trace.proposal.outcome in PROPOSABLE


def _fired_rules(trace: DecisionTrace) -> list[tuple[str, AutomationLevel | None]]:
    """The rules a decision counts under, with each one's level (a rule in shadow: always)."""
    rules: list[tuple[str, AutomationLevel | None]] = [
        (f.rule_id, f.automation) for f in trace.findings if f.requires_human or f.automation == "shadow"
    ]
    return rules or [(NO_RULE, None)]


def _weekly(traces: list[DecisionTrace]) -> list[WeekPoint]:
    by_week: dict[str, list[DecisionTrace]] = defaultdict(list)
    for trace in traces:
        by_week[iso_week(trace.decided_at)].append(trace)
    points: list[WeekPoint] = []
    for week in sorted(by_week):
        of_week = by_week[week]
        agreed = sum(_agrees(t) for t in of_week)
        rate = agreed / len(of_week)
        change = rate - points[-1].rate if points else None
        points.append(WeekPoint(week=week, decisions=len(of_week), agreed=agreed, rate=rate, change=change))
    return points


def _agrees(trace: DecisionTrace) -> bool:
    return trace.outcome == trace.proposal.outcome


def _agreement(
    kind: str, policy: str, rule: str | None, traces: list[DecisionTrace], level: AutomationLevel | None = None
) -> Agreement:
    traces = sorted(traces, key=lambda t: t.decided_at)
    agreed = sum(_agrees(t) for t in traces)
    interval = wilson_interval(agreed, len(traces))
    return Agreement(
        kind=kind,
        policy=policy,
        rule=rule,
        level=level,
        decisions=len(traces),
        agreed=agreed,
        rate=agreed / len(traces) if traces else None,
        low=interval[0] if interval else None,
        high=interval[1] if interval else None,
        disagreements=[
            Disagreement(
                case_id=t.case_id,
                decided_at=t.decided_at,
                proposed=t.proposal.outcome,
                outcome=t.outcome,
                decided_by=t.decided_by,
                reason=t.reason,
            )
            for t in traces
            if not _agrees(t)
        ],
        weekly=_weekly(traces),
    )


def _not_counted(traces: list[DecisionTrace]) -> NotCounted:
    why: Counter[str] = Counter()
    for trace in traces:
        if _counted(trace):
            why["request_info_rounds"] += len(trace.rounds)
        elif trace.decided_via in REVIEWER_CHANNELS:
            why["no_outcome_proposed"] += 1
        elif trace.decided_via == "policy":
            why["by_policy"] += 1
        elif trace.decided_via == "timeout":
            why["by_timeout"] += 1
        else:
            why["by_operator_or_other"] += 1
    return NotCounted(**why)


def measure_agreement(traces: Iterable[DecisionTrace], *, since: datetime | None = None) -> AgreementReport:
    """Agreement per kind and policy version, and per rule within them (definitions: module docstring)."""
    traces = list(traces)
    counted = [t for t in traces if _counted(t)]
    by_policy: dict[tuple[str, str], list[DecisionTrace]] = defaultdict(list)
    by_rule: dict[tuple[str, str, str, AutomationLevel | None], list[DecisionTrace]] = defaultdict(list)
    for trace in counted:
        key = (trace.features.kind.value, trace.features.policy)
        by_policy[key].append(trace)
        for rule, level in dict.fromkeys(_fired_rules(trace)):
            by_rule[(*key, rule, level)].append(trace)
    return AgreementReport(
        since=since,
        decisions=len(counted),
        agreed=sum(_agrees(t) for t in counted),
        totals=[_agreement(kind, policy, None, of) for (kind, policy), of in sorted(by_policy.items())],
        rules=[
            _agreement(kind, policy, rule, of, level)
            for (kind, policy, rule, level), of in sorted(by_rule.items(), key=lambda item: (*item[0][:3], item[0][3] or ""))
        ],
        not_counted=_not_counted(traces),
    )
