"""Suggestions from precedent: where verified reviewers always decided the same way, propose the
rule relaxed, as a policy file ready for `hitl policy propose`. Never activates anything.

    policy, text = active policy of the kind and its YAML            # activities/store/policy_activations.py
    traces = await decided_traces(conn, since=None, kind=kind)       # activities/store/trace_reads.py
    suggestion = suggest(policy, text, traces.traces, min_cases=20, version="3.3")   # pure

Evidence for a rule: the current decisions of cases of the same policy (any version) in which the
rule's condition was met (not missing data), decided by a reviewer whose identity the case verified
(the same test as a precedent). A rule is **consistent** when at least `min_cases` such decisions
exist and every one approved. Consistent rejections relax nothing (policy only ever approves alone),
so they are reported, not suggested.

What a consistent rule becomes, one step at a time:
- a rule in **shadow** moves to **assist** (it has earned a place in the brief);
- a rule that is one numeric comparison (`gt` or `lt` on a fact) has its threshold moved to cover
  the band the approved cases spanned ("DISC-3 fired on 25.5..30 and all 40 were approved: gt 30"),
  only when the values cover the band from the old threshold on without a wide gap (no step more
  than a quarter of the band): values nobody decided are not relaxed on the strength of others;
- any other rule moves **assist -> auto**, except a `customer_commitment` rule, which never does.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from typing import Any

import yaml
from pydantic import BaseModel, Field

from gates.policy import Condition, Policy, ReasonCode, Rule, parse_policy_file, version_key
from gates.trace import DecisionTrace

HUMAN_CHANNELS = frozenset({"update", "signal"})
DEFAULT_MIN_CASES = 20


# The widest step between decided values (from the old threshold) a relaxed band may have, as a share of the band.
MAX_GAP_SHARE = Decimal("0.25")


class RuleEvidence(BaseModel):
    rule_id: str
    cases: int = Field(description="Verified reviewers' decisions of cases where the rule's condition was met")
    outcomes: dict[str, int]
    band: tuple[str, str] | None = Field(default=None, description="Lowest and highest value of the rule's fact in them")
    values: list[str] = Field(default_factory=list, description="The fact's values in them, sorted")
    fact: str | None = None
    policies: list[str] = Field(description="The policy versions those cases were decided under")
    case_ids: list[str]


class RuleSuggestion(BaseModel):
    rule_id: str
    change: str = Field(description="e.g. 'threshold gt 25 -> gt 30' or 'automation assist -> auto'")
    why: str
    evidence: RuleEvidence


class Suggestion(BaseModel):
    kind: str
    based_on: str = Field(description="The policy version the suggestion changes")
    ref: str | None = Field(description="The proposed version's ref (its file name without .yaml); None: nothing suggested")
    min_cases: int
    suggestions: list[RuleSuggestion]
    not_suggested: list[str] = Field(description="Rules with evidence that is not (yet) enough, and why")
    text: str | None = Field(default=None, description="The proposed policy file, evidence in its top comments")


def _verified_human(trace: DecisionTrace) -> bool:
    identity = trace.decided_identity
    return trace.decided_via in HUMAN_CHANNELS and identity is not None and identity.mode == "verified"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _plain(number: Decimal) -> int | float:
    return int(number) if number == number.to_integral_value() else float(number)


def _threshold(rule: Rule) -> Condition | None:
    """The rule's single numeric comparison, when it is one (`{fact, op: gt|lt, value: number}`)."""
    when = rule.when
    if isinstance(when, Condition) and when.op in ("gt", "lt") and _number(when.value) is not None and not rule.require:
        return when
    return None


def evidence_for(policy: Policy, traces: Iterable[DecisionTrace]) -> dict[str, RuleEvidence]:
    """Per rule of `policy`, the verified decisions of the same policy's cases where its condition was met."""
    by_rule: dict[str, list[tuple[DecisionTrace, Any]]] = {rule.id: [] for rule in policy.rules}
    facts = {rule.id: (c.fact if (c := _threshold(rule)) else None) for rule in policy.rules}
    prefix = f"{policy.policy_id}_v"
    for trace in traces:
        if trace.features.kind != policy.kind or not trace.features.policy.startswith(prefix) or not _verified_human(trace):
            continue
        for finding in trace.findings:
            met = finding.fired and finding.reason_code not in (None, ReasonCode.AMBIGUOUS_OR_MISSING_DATA)
            if met and finding.rule_id in by_rule:
                fact = facts[finding.rule_id]
                by_rule[finding.rule_id].append((trace, finding.facts_used.get(fact) if fact else None))
    evidence = {}
    for rule_id, found in by_rule.items():
        if not found:
            continue
        outcomes: dict[str, int] = {}
        for trace, _ in found:
            outcomes[trace.outcome] = outcomes.get(trace.outcome, 0) + 1
        values = [n for _, v in found if (n := _number(v)) is not None]
        band = (str(min(values)), str(max(values))) if values and len(values) == len(found) else None
        evidence[rule_id] = RuleEvidence(
            rule_id=rule_id,
            cases=len(found),
            outcomes=outcomes,
            band=band,
            values=[str(v) for v in sorted(values)] if band else [],
            fact=facts[rule_id],
            policies=sorted({t.features.policy for t, _ in found}),
            case_ids=[t.case_id for t, _ in found],
        )
    return evidence


def _suggest_rule(rule: Rule, evidence: RuleEvidence) -> tuple[dict[str, Any], str, str] | str:
    """(what to set on the rule's YAML, the change, why), or why nothing is suggested."""
    approved = evidence.outcomes.get("approve", 0)
    why = f"{approved} of {evidence.cases} verified decisions where {rule.id} fired were approved"
    if rule.automation == "shadow":
        return {"automation": "assist"}, "automation shadow -> assist", why
    condition = _threshold(rule)
    if condition is not None and evidence.band is not None:
        low, high = Decimal(evidence.band[0]), Decimal(evidence.band[1])
        new = high if condition.op == "gt" else low
        old = _number(condition.value)
        assert old is not None
        points = sorted({old, *map(Decimal, evidence.values)}, reverse=condition.op == "lt")
        gap = max((abs(b - a) for a, b in zip(points, points[1:])), default=Decimal(0))
        span = abs(new - old)
        band = f"{evidence.fact} between {_plain(low)} and {_plain(high)}"
        if new != old and gap > span * MAX_GAP_SHARE:
            return (
                f"{rule.id}: {why}, {band}, but the values from its threshold {_plain(old)} on are not covered "
                f"(a step of {_plain(gap)} with no decision)"
            )
        if new != old:
            return (
                {"when": {"fact": condition.fact, "op": condition.op, "value": _plain(new)}},
                f"threshold {condition.op} {_plain(old)} -> {condition.op} {_plain(new)}",
                f"{why}, {band}",
            )
    if rule.reason_code == ReasonCode.CUSTOMER_COMMITMENT:
        return f"{rule.id}: {why}, but a customer_commitment rule is never raised to auto"
    if rule.automation == "auto":
        return f"{rule.id}: already at auto"
    return {"automation": "auto"}, "automation assist -> auto", why


def next_version(policy: Policy, taken: Iterable[str] = ()) -> str:
    """The next minor version after `policy`'s and every version in `taken` (files already proposed)."""
    current = version_key(policy.version)
    major, minor = max([current, *(key for key in map(version_key, taken) if key[0] == current[0])])
    return f"{major}.{minor + 1}"


def suggest(
    policy: Policy,
    policy_text: str,
    traces: Iterable[DecisionTrace],
    *,
    min_cases: int = DEFAULT_MIN_CASES,
    version: str | None = None,
) -> Suggestion:
    """What consistent precedent suggests for `policy` (whose file text is `policy_text`), and the
    proposed file when anything is; the file parses like any policy file, or this raises PolicyError."""
    traces = list(traces)
    evidence = evidence_for(policy, traces)
    suggestions: list[RuleSuggestion] = []
    not_suggested: list[str] = []
    changes: dict[str, dict[str, Any]] = {}
    for rule in policy.rules:
        found = evidence.get(rule.id)
        if found is None:
            continue
        approved = found.outcomes.get("approve", 0)
        if approved != found.cases:
            counts = ", ".join(f"{n} {o}" for o, n in sorted(found.outcomes.items()))
            not_suggested.append(f"{rule.id}: not consistent ({counts})")
            continue
        if found.cases < min_cases:
            not_suggested.append(f"{rule.id}: {found.cases} consistent cases, fewer than the {min_cases} needed")
            continue
        result = _suggest_rule(rule, found)
        if isinstance(result, str):
            not_suggested.append(result)
            continue
        change_set, change, why = result
        changes[rule.id] = change_set
        suggestions.append(RuleSuggestion(rule_id=rule.id, change=change, why=why, evidence=found))
    suggestion = Suggestion(
        kind=policy.kind.value,
        based_on=policy.ref,
        ref=None,
        min_cases=min_cases,
        suggestions=suggestions,
        not_suggested=not_suggested,
    )
    if not suggestions:
        return suggestion
    new_version = version or next_version(policy)
    data = yaml.safe_load(policy_text)
    data["version"] = new_version
    for rule_data in data["rules"]:
        rule_data.update(changes.get(rule_data["id"], {}))
    ref = f"{policy.policy_id}_v{new_version.replace('.', '_')}"
    header = [
        f"# Suggested by `hitl policy suggest` from consistent precedent; changes {policy.ref}.",
        "# Not in force: review it, run `hitl policy whatif` on it, then `hitl policy propose` it.",
    ]
    for s in suggestions:
        header.append(f"# {s.rule_id}: {s.change}: {s.why} (decided under {', '.join(s.evidence.policies)})")
        shown = s.evidence.case_ids[:10]
        more = f" and {len(s.evidence.case_ids) - len(shown)} more" if len(s.evidence.case_ids) > len(shown) else ""
        header.append(f"#   cases: {', '.join(shown)}{more}")
    text = "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=200)
    parse_policy_file(text.encode(), PurePath(f"{ref}.yaml"))  # valid, or PolicyError: never a broken proposal
    return suggestion.model_copy(update={"ref": ref, "text": text})
