"""What a proposed policy would have done with past cases, from what their traces recorded.

    policy = load_policy_file(path)                            # activities/policy_files.py
    traces = await decided_traces(conn, since=..., kind=policy.kind)   # activities/store/trace_reads.py
    cited = await cited_precedents(conn, ...)                  # the precedents those cases cited
    report = what_if(policy, traces.traces, cited)             # pure: no workflow, connector or write

A trace does not keep every fact its case's evaluation could see; it keeps the request, which
evidence was consulted (`inputs`), the facts each rule used (`findings[].facts_used`) and the
precedents cited. The facts are rebuilt the way the workflow builds them (gates/kinds.py
`CaseSpec.facts`) from what is recorded, and a fact is one of three things:

- **known**: a request field, `precedent.count` (the precedents cited), a fact a finding recorded,
  or a derived fact whose own inputs are all known;
- **known absent**: not among the request's fields nor the evidence consulted, and not derived:
  the workflow would not have had it either, so the proposed policy sees it missing, as it would live;
- **unknown**: consulted but no rule recorded its value (or it could not be read), or derived from
  such a fact. A proposed rule that needs an unknown fact makes the case "cannot tell": never guessed.

Automation levels (gates/policy.py) are compared too: a rule that fired in a case and has another
level in the proposed policy is a change of that case ("DISC-2 assist -> auto"), and a rule moved to
auto that lets a case through which a human rejected is flagged like any other such case.

Precedent relief and the proposal also need the cited precedents' outcomes; where those are not
found (or a case ID has two recorded outcomes from before the case), the same rule applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from gates.brief import propose
from gates.cases import REQUEST_MODELS
from gates.evidence import ContextBundle
from gates.kinds import SPECS
from gates.policy import AutomationLevel, Facts, Finding, Policy, PolicyEvaluation, ReasonCode, evaluate
from gates.precedent import Precedent
from gates.report import REVIEWER_CHANNELS
from gates.trace import DecisionTrace

# Trimmed parts of a trace (gates/fit.py notes start with the path) that may have cut a recorded fact.
_FACT_PATHS = ("findings", "request")


class CasePath(BaseModel):
    """The path a policy gives a case: whether a human is needed, at which level, behind which gate."""

    human: bool
    start_level: int | None = Field(description="The gate's opening level (0 = first), when a human is needed")
    gate: str | None
    rules: list[str] = Field(description="Rules whose finding required a human")
    proposal: str | None = Field(description="The brief's proposed outcome; None when it cannot be told")
    levels: dict[str, AutomationLevel] = Field(
        default_factory=dict, description="The automation level of each rule that fired or is in shadow"
    )


class CaseWhatIf(BaseModel):
    case_id: str
    decided_at: datetime
    policy: str = Field(description="The policy version the case was decided under")
    outcome: str
    decided_by: str
    decided_via: str
    status: Literal["changed", "unchanged", "cannot_tell"]
    changes: list[str] = Field(default_factory=list, description="e.g. 'human needed -> not needed'")
    before: CasePath | None
    after: CasePath | None
    unknown: list[str] = Field(default_factory=list, description="What the trace lacks for the proposed policy")
    rejected_would_pass: bool = Field(default=False, description="A human rejected it; the proposed policy needs no human")


class WhatIfTotals(BaseModel):
    cases: int = 0
    changed: int = 0
    unchanged: int = 0
    cannot_tell: int = 0
    path_changed: int = 0
    human_to_none: int = 0
    none_to_human: int = 0
    level_changed: int = 0
    gate_changed: int = 0
    proposal_changed: int = 0
    rejected_would_pass: int = 0


class WhatIfReport(BaseModel):
    policy: str
    kind: str
    since: datetime | None
    totals: WhatIfTotals
    rejected_would_pass: list[str] = Field(description="Cases a human rejected that would pass without one")
    cases: list[CaseWhatIf]


class _RecordedFacts(dict[str, Any]):
    """The facts a trace recorded, as `evaluate` and `derive` read them: a fact that is neither known
    nor known to be absent reads as missing and is noted in `unknown`, which makes the result "cannot
    tell". `may_be_present` names the facts that may have existed; `*` among them means any fact."""

    def __init__(self, known: Facts, may_be_present: set[str]) -> None:
        super().__init__(known)
        self.may_be_present = may_be_present
        self.unknown: list[str] = []

    def _note(self, key: object) -> None:
        if (
            isinstance(key, str)
            and not dict.__contains__(self, key)
            and not key.startswith("request.")  # the whole request is in the trace: a field it lacks is absent
            and ("*" in self.may_be_present or key in self.may_be_present)
            and key not in self.unknown
        ):
            self.unknown.append(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)


def _consulted(trace: DecisionTrace) -> set[str]:
    """`crm: tier` in `inputs` is the fact `crm.tier`."""
    return {label.replace(": ", ".", 1) for label in trace.inputs}


def recorded_facts(trace: DecisionTrace) -> tuple[Facts, set[str]]:
    """The facts known from the trace, and the names of those that may have existed but are not known
    (`*` among them when derivation read an unknown fact: then any fact not known may have existed).
    A trace that recorded its facts (since they are recorded) has them all; older ones are rebuilt."""
    if trace.facts and "facts" not in trace.trimmed:
        return dict(trace.facts), set()
    known: Facts = {f"request.{name}": value for name, value in trace.request.items()}
    known["precedent.count"] = len(trace.precedents_cited)
    for finding in trace.findings:
        known.update(finding.facts_used)
    unknown = _consulted(trace) - set(known)
    spec = SPECS[trace.features.kind]
    reads = _RecordedFacts(known, unknown)
    try:
        derived = spec.derive(REQUEST_MODELS[trace.features.kind].model_validate(trace.request), reads)
    except ValidationError:
        return known, {"*"}
    if reads.unknown:  # derived from a fact the trace does not hold: what derivation yields is unknown
        return known, unknown | {"*"}
    return {**derived, **known}, unknown


def _precedents_of(trace: DecisionTrace, cited: Mapping[str, list[Precedent]]) -> tuple[list[Precedent] | None, list[str]]:
    """The precedents the case cited, as recorded before it was decided; None and what is missing if any is not known."""
    found, missing = [], []
    for case_id in trace.precedents_cited:
        earlier = [p for p in cited.get(case_id, []) if p.decided_at <= trace.decided_at]
        if len({p.outcome for p in earlier}) != 1:
            missing.append(case_id)
        else:
            found.append(earlier[-1])
    return (None if missing else found), missing


def _levels(findings: list[Finding]) -> dict[str, AutomationLevel]:
    return {f.rule_id: f.automation for f in findings if f.fired or f.automation == "shadow"}


def _path(evaluation: PolicyEvaluation, gate: str | None, proposal: str | None) -> CasePath:
    return CasePath(
        human=evaluation.requires_human,
        start_level=evaluation.start_level if evaluation.requires_human else None,
        gate=gate if evaluation.requires_human else None,
        rules=[f.rule_id for f in evaluation.findings if f.requires_human],
        proposal=proposal,
        levels=_levels(evaluation.findings),
    )


def _before(trace: DecisionTrace) -> CasePath:
    fired = [f for f in trace.findings if f.requires_human]
    human = bool(fired) or any(f.automation == "shadow" for f in trace.findings)  # a rule in shadow sent it
    return CasePath(
        human=human,
        start_level=max((f.required_level for f in fired), default=0) if human else None,
        gate=trace.human_gate if human else None,
        rules=[f.rule_id for f in fired],
        proposal=trace.proposal.outcome,
        levels=_levels(trace.findings),
    )


def _level(level: int | None) -> str:
    return "-" if level is None else str(level + 1)


def _changes(before: CasePath, after: CasePath) -> list[str]:
    changes = []
    if before.human != after.human:
        changes.append("human needed -> not needed" if before.human else "human not needed -> needed")
    elif before.human and before.start_level != after.start_level:
        changes.append(f"minimum level {_level(before.start_level)} -> {_level(after.start_level)}")
    if before.gate is not None and after.human and before.gate != after.gate:
        changes.append(f"gate {before.gate} -> {after.gate}")
    if after.proposal is not None and before.proposal != after.proposal:
        changes.append(f"proposal {before.proposal} -> {after.proposal}")
    for rule in sorted(set(before.levels) | set(after.levels)):
        was, now = before.levels.get(rule), after.levels.get(rule)
        if was is not None and now is not None and was != now:  # the rule fired (or is in shadow) under both
            changes.append(f"{rule} {was} -> {now}")
    return changes


def _relief_may_apply(policy: Policy, evaluation: PolicyEvaluation) -> bool:
    relieved = {r.id for r in policy.rules if r.precedent_relief is not None}
    return any(
        f.requires_human and f.rule_id in relieved and f.reason_code != ReasonCode.AMBIGUOUS_OR_MISSING_DATA
        for f in evaluation.findings
    )


def _proposal_needs_precedents(evaluation: PolicyEvaluation) -> bool:
    return evaluation.requires_human and ReasonCode.AMBIGUOUS_OR_MISSING_DATA not in evaluation.reason_codes


def _result(
    trace: DecisionTrace,
    status: Literal["changed", "unchanged", "cannot_tell"],
    *,
    before: CasePath | None,
    after: CasePath | None = None,
    changes: list[str] | None = None,
    unknown: list[str] | None = None,
    rejected_would_pass: bool = False,
) -> CaseWhatIf:
    return CaseWhatIf(
        case_id=trace.case_id,
        decided_at=trace.decided_at,
        policy=trace.features.policy,
        outcome=trace.outcome,
        decided_by=trace.decided_by,
        decided_via=trace.decided_via,
        status=status,
        changes=changes or [],
        before=before,
        after=after,
        unknown=unknown or [],
        rejected_would_pass=rejected_would_pass,
    )


def what_if_case(policy: Policy, trace: DecisionTrace, cited: Mapping[str, list[Precedent]]) -> CaseWhatIf:
    """The proposed policy re-evaluated against what one trace recorded."""
    if not trace.findings:
        return _result(trace, "cannot_tell", before=None, unknown=["no policy evaluation recorded"])
    before = _before(trace)
    unknown = [f"trimmed: {note}" for note in trace.trimmed if note.startswith(_FACT_PATHS)]
    known, may_be_present = recorded_facts(trace)
    facts = _RecordedFacts(known, may_be_present)
    precedents, missing = _precedents_of(trace, cited)
    outcomes = [p.outcome for p in precedents] if precedents is not None else []
    evaluation = evaluate(policy, facts, outcomes)
    unknown += [f"fact {name}: its value is not in the trace" for name in facts.unknown]
    missing_note = [f"outcome of cited precedent {case_id}" for case_id in missing]
    if missing and _relief_may_apply(policy, evaluation):
        unknown += missing_note
    if unknown:
        return _result(trace, "cannot_tell", before=before, unknown=unknown)
    proposal: str | None = None
    if precedents is not None or not _proposal_needs_precedents(evaluation):
        proposal = propose(evaluation, precedents or [], ContextBundle()).outcome
    after = _path(evaluation, policy.gate.name, proposal)
    changes = _changes(before, after)
    return _result(
        trace,
        "changed" if changes else "unchanged",
        before=before,
        after=after,
        changes=changes,
        unknown=missing_note if proposal is None else [],
        rejected_would_pass=trace.decided_via in REVIEWER_CHANNELS and trace.outcome == "reject" and not after.human,
    )


def what_if(
    policy: Policy, traces: Iterable[DecisionTrace], cited: Mapping[str, list[Precedent]], *, since: datetime | None = None
) -> WhatIfReport:
    """Every past case of the policy's kind re-evaluated under `policy`, with totals."""
    cases = [what_if_case(policy, t, cited) for t in traces if t.features.kind == policy.kind]
    totals = WhatIfTotals(cases=len(cases))
    for case in cases:
        setattr(totals, case.status, getattr(totals, case.status) + 1)
        if case.before is None or case.after is None:
            continue
        before, after = case.before, case.after
        totals.human_to_none += before.human and not after.human
        totals.none_to_human += after.human and not before.human
        level = before.human and after.human and before.start_level != after.start_level
        gate = before.gate is not None and after.human and before.gate != after.gate
        totals.level_changed += level
        totals.gate_changed += gate
        totals.path_changed += before.human != after.human or level or gate
        totals.proposal_changed += after.proposal is not None and after.proposal != before.proposal
        totals.rejected_would_pass += case.rejected_would_pass
    return WhatIfReport(
        policy=policy.ref,
        kind=policy.kind.value,
        since=since,
        totals=totals,
        rejected_would_pass=[c.case_id for c in cases if c.rejected_would_pass],
        cases=cases,
    )
