"""Versioned policy as data: which conditions need a human, and the gate that human sits behind.

A policy file (`gates/policies/<id>_v<major>_<minor>.yaml`) is validated on load. Every rule has
an ID and yields a `Finding` for every case, so a trace can say which rules allowed an automatic
decision and which sent the case to a human. Facts a rule needs but the evidence lacks make the
finding `ambiguous_or_missing_data`: missing data goes to a human, never to a guess.

The policy is resolved once at case start (by an activity, so it is recorded in history) and the
case keeps that version to the end, even if a newer file is deployed meanwhile. This module parses
bytes already read; reading the files is activities/policy_files.py's job (gates does no I/O).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import PurePath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from gates.cases import CaseKind, PersonId
from gates.durations import parse_duration
from gates.quorum import Quorum
from gates.text import neutralize, one_visible_line_problem
from gates.yaml_input import YamlFileKind, YamlInputError, parse_yaml


class ReasonCode(StrEnum):
    """Why a case needs a human."""

    THRESHOLD_BREACH = "threshold_breach"
    UNUSUAL_CASE = "unusual_case"
    AMBIGUOUS_OR_MISSING_DATA = "ambiguous_or_missing_data"
    CUSTOMER_COMMITMENT = "customer_commitment"


def _parse_duration(value: Any) -> Any:
    """Accept `30s`, `15m`, `4h`, `2d` (gates.durations) besides what pydantic accepts (ISO 8601, seconds)."""
    if isinstance(value, str):
        try:
            return parse_duration(value, fractions=True)
        except ValueError:
            pass  # pydantic reads ISO 8601 or a number of seconds, or says what is wrong
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]

Comparison = Literal["gt", "gte", "lt", "lte", "eq", "ne", "in", "not_in", "is_true", "is_false", "present", "absent"]


class Condition(BaseModel):
    """A test on one fact, e.g. `{fact: request.requested_discount_pct, op: gt, value: 15}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fact: str = Field(pattern=r"^[a-z_]+\.[a-z0-9_]+$")
    op: Comparison
    value: Any = None

    @model_validator(mode="after")
    def _value_matches_op(self) -> Condition:
        needs_value = self.op not in ("is_true", "is_false", "present", "absent")
        if needs_value and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} needs a list value")
        return self


class AllOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    all: list[Expression] = Field(min_length=1)


class AnyOf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    any: list[Expression] = Field(min_length=1)


Expression = Condition | AllOf | AnyOf
AllOf.model_rebuild()
AnyOf.model_rebuild()


class PrecedentRelief(BaseModel):
    """Consistent precedent may lower the level a rule requires, never below the first level."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_cases: int = Field(ge=1)
    outcome: Literal["approve", "reject"] = "approve"
    level: int = Field(ge=0)


# How far a rule is trusted to decide (README "Automation levels"):
# - shadow: a rule earning trust; every case of its policy goes to a human, its verdict and the
#   proposal are recorded but the reviewer is not shown the proposal;
# - assist: a met condition sends the case to a human, who sees the proposal (the level of every
#   rule written before levels existed);
# - auto: a met condition does not by itself send the case to a human.
# Missing or ambiguous data goes to a human at every level.
AutomationLevel = Literal["shadow", "assist", "auto"]
AUTOMATION_LEVELS: tuple[AutomationLevel, ...] = ("shadow", "assist", "auto")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*-[0-9A-Z-]+$")
    description: str = Field(min_length=1)
    reason_code: ReasonCode
    when: Expression | None = Field(default=None, description="Condition under which a human is needed")
    require: list[str] = Field(default_factory=list, description="Facts that must be known, else a human decides")
    min_level: int = Field(default=0, ge=0, description="Lowest escalation level allowed to decide when this rule fires")
    precedent_relief: PrecedentRelief | None = None
    quorum: Quorum | None = Field(default=None, description="Approvals by distinct people this case then needs")
    automation: AutomationLevel = Field(default="assist", description="shadow, assist or auto (see AutomationLevel)")

    @model_validator(mode="after")
    def _has_a_test(self) -> Rule:
        if self.when is None and not self.require:
            raise ValueError(f"rule {self.id} needs `when` or `require`")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_level(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A rule at `assist` serializes as before levels existed: a recorded policy keeps its shape."""
        data = handler(self)
        if data.get("automation") == "assist":
            del data["automation"]
        return data


class GateLevel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    group: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1, description="How the UI names this level, e.g. 'Finance director'")
    remind_after: Duration
    escalate_after: Duration = Field(description="From the start of this level; on the last level, the final timeout")

    @model_validator(mode="after")
    def _reminder_before_escalation(self) -> GateLevel:
        if not (timedelta(0) < self.remind_after < self.escalate_after):
            raise ValueError(f"level {self.group}: need 0 < remind_after < escalate_after")
        return self


class GateDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["finance", "ops", "security"]
    title: str
    levels: list[GateLevel] = Field(min_length=1)
    timeout_outcome: Literal["approve", "reject"] = Field(description="Recorded when the last level times out")
    # A reviewer's question (request_info) waits for its answer on timers of its own; absent from
    # policies recorded before, which then take these defaults.
    answer_remind_after: Duration = Field(
        default=timedelta(days=1), description="Remind the person asked when no answer came within this"
    )
    answer_within: Duration = Field(default=timedelta(days=2), description="How long a question waits for its answer")
    no_answer: Literal["back_to_gate", "timeout_outcome"] = Field(
        default="back_to_gate",
        description="When nobody answers in time: back to the gate marked 'no answer', or the gate's timeout outcome",
    )

    @model_validator(mode="after")
    def _answer_reminder_before_deadline(self) -> GateDefinition:
        if not (timedelta(0) < self.answer_remind_after < self.answer_within):
            raise ValueError("gate: need 0 < answer_remind_after < answer_within")
        return self


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policy_id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: str = Field(pattern=r"^\d+\.\d+$")
    kind: CaseKind
    description: str
    auto_outcome: Literal["approve"] = Field(default="approve", description="Outcome when no rule needs a human")
    rules: list[Rule] = Field(min_length=1)
    gate: GateDefinition
    owners: list[PersonId] = Field(default_factory=list, description="Who approves a change raising a rule to auto")
    owner_quorum: int | None = Field(default=None, ge=1, description="How many owners such a change needs; default a majority")

    @property
    def ref(self) -> str:
        """`discount_policy_v3_2`: the name traces and search attributes carry."""
        return f"{self.policy_id}_v{self.version.replace('.', '_')}"

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        ids = [r.id for r in self.rules]
        duplicates = {i for i in ids if ids.count(i) > 1}
        if duplicates:
            raise ValueError(f"duplicate rule ids: {sorted(duplicates)}")
        top = len(self.gate.levels) - 1
        for rule in self.rules:
            if rule.min_level > top:
                raise ValueError(f"rule {rule.id}: min_level {rule.min_level} but the gate has levels 0..{top}")
            if rule.precedent_relief and rule.precedent_relief.level > rule.min_level:
                raise ValueError(f"rule {rule.id}: precedent relief cannot raise the level")
            if rule.reason_code == ReasonCode.CUSTOMER_COMMITMENT and rule.automation == "auto":
                # on the model, so no path (a file, a proposal, an activation, a decoded history) gets one
                raise ValueError(
                    f"rule {rule.id}: a customer_commitment rule cannot be auto; promises made to customers "
                    "are decided by a human (use assist or shadow)"
                )
        if len(set(self.owners)) != len(self.owners):
            raise ValueError("owners: each owner is named once")
        if self.owner_quorum is not None and self.owner_quorum > len(self.owners):
            raise ValueError(f"owner_quorum {self.owner_quorum} but the policy names {len(self.owners)} owners")
        return self

    @property
    def owners_needed(self) -> int:
        """How many distinct owners must approve a change that raises a rule to auto (a majority by default)."""
        return self.owner_quorum if self.owner_quorum is not None else len(self.owners) // 2 + 1

    @model_serializer(mode="wrap")
    def _omit_no_owners(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A policy naming no owners serializes as before owners existed."""
        data = handler(self)
        for name in ("owners", "owner_quorum"):
            if data.get(name) in (None, []):
                data.pop(name, None)
        return data


class PolicyError(ValueError):
    """A policy file is missing, unreadable or invalid; the message names the file."""


# A policy file is a few KB; the cap keeps a wrong file (a log, a dump) from being read whole.
MAX_POLICY_FILE_BYTES = 256 * 1024
# The hardened YAML loader policy files share with the directory file (gates/yaml_input.py).
POLICY_FILE = YamlFileKind("policy", MAX_POLICY_FILE_BYTES, "a policy file is a few KB")
# Policy text is shown in every brief, the UI and notifications: one short line each.
POLICY_TEXT_LIMITS = {"policy description": 500, "rule description": 300, "gate title": 60, "level title": 60}
# Markup that would change how a brief (Markdown) or a Slack notification renders the text around it:
# emphasis, code, links, HTML and Slack's <!channel> mentions, tables, escapes.
_MARKUP = re.compile(r"[*`~\[\]<>|\\]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def _validation_problems(err: ValidationError) -> str:
    """`rules.1.when: message; gate.levels.0.title: message` on one line."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in err.errors(include_url=False))


def policy_text_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be policy text shown to reviewers, or None.

    Refused rather than cleaned up: a policy file is reviewed and deployed by its owners, and a
    refusal at load names the field to fix, where cleaning would silently show other words than
    the file says. Hidden characters (controls, bidirectional overrides, zero-width) could make
    the text read differently from what was reviewed; line breaks and markup could make a rule's
    description look like part of the brief around it ("**Proposed**: approve") or ping a Slack
    channel from a notification."""
    limit = POLICY_TEXT_LIMITS[what]
    if len(text) > limit:
        return f"is {len(text)} characters; a {what} is at most {limit}"
    problem = one_visible_line_problem(text)
    if problem:
        return f"{problem}; policy text is one visible line" if problem.startswith("contains") else problem
    found = _MARKUP.search(text)
    if found:
        return (
            f"contains the markup character {found.group()!r} at position {found.start() + 1}; "
            "policy text is shown inside briefs and notifications, so it may not carry Markdown, HTML or Slack markup"
        )
    return None


def _text_problems(policy: Policy) -> list[str]:
    texts = [("description", "policy description", policy.description), ("gate.title", "gate title", policy.gate.title)]
    texts += [(f"rules.{i}.description ({rule.id})", "rule description", rule.description) for i, rule in enumerate(policy.rules)]
    texts += [(f"gate.levels.{i}.title", "level title", level.title) for i, level in enumerate(policy.gate.levels)]
    return [f"{where} {problem}" for where, what, text in texts if (problem := policy_text_problem(text, what))]


def parse_policy_file(data: bytes, path: PurePath) -> Policy:
    """Parse and validate the bytes of the policy file at `path` (already read, by activities/policy_files.py:
    gates does no I/O); every problem is one PolicyError line naming the file. Read at most
    MAX_POLICY_FILE_BYTES + 1 bytes: more is refused as too large."""
    shown = policy_file_shown(path)
    policy = parse_policy_text(data, shown)
    if path.stem != policy.ref:
        raise PolicyError(f"{shown}: file name must be {policy.ref}.yaml to match policy_id and version")
    return policy


def parse_policy_text(data: bytes, shown: str) -> Policy:
    """Parse and validate a policy's bytes wherever they came from (a file, an activation row, a
    proposal); every problem is one PolicyError line starting with `shown`."""
    try:
        parsed = parse_yaml(data, POLICY_FILE).value
    except YamlInputError as err:
        raise PolicyError(f"{shown}: cannot read policy: {err}") from err
    try:
        policy = Policy.model_validate(parsed)
    except ValidationError as err:
        raise PolicyError(neutralize(f"{shown}: invalid policy: {_validation_problems(err)}", keep_newlines=False)) from err
    # Checked here, not on the model: a case keeps the policy it started with in its history, and a
    # stricter model would fail to decode that policy when the case replays.
    problems = _text_problems(policy)
    if problems:
        raise PolicyError(f"{shown}: invalid policy: {'; '.join(problems)}")
    return policy


def policy_file_shown(path: PurePath) -> str:
    """A policy file's path as error messages show it: one line, no control characters."""
    return neutralize(str(path), keep_newlines=False)


def newest_policies(policies: Iterable[Policy], origin: str) -> dict[CaseKind, Policy]:
    """The newest version of each kind's policy among `policies` (read from `origin`); every kind must have one."""
    newest: dict[CaseKind, Policy] = {}
    for policy in policies:
        current = newest.get(policy.kind)
        if current is None or _version_key(policy) > _version_key(current):
            newest[policy.kind] = policy
    missing = [k.value for k in CaseKind if k not in newest]
    if missing:
        raise PolicyError(f"{origin}: no policy for {', '.join(missing)}")
    return newest


def gates_by_kind(policies: Mapping[CaseKind, Policy]) -> dict[CaseKind, str]:
    """Which gate decides each kind of case, as the policies name it (`renewal` -> `finance`, ...):
    the one place the kind -> gate mapping comes from, so a policy that moves a kind to another
    gate moves it everywhere."""
    return {kind: policy.gate.name for kind, policy in policies.items()}


def _version_key(policy: Policy) -> tuple[int, int]:
    return version_key(policy.version)


def version_key(version: str) -> tuple[int, int]:
    """`3.10` sorts after `3.9`: versions compare as (major, minor)."""
    major, minor = version.split(".")
    return int(major), int(minor)


# --- Evaluation ---------------------------------------------------------------------------------

Facts = dict[str, Any]


class _OmitsDefaultLevelFields(BaseModel):
    """Leaves the automation fields out of the JSON while they hold their defaults: a finding of a
    policy with no levels dumps exactly as before, so `digest_of` and recorded traces are unchanged."""

    _level_defaults: ClassVar[dict[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _omit_default_levels(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name, default in self._level_defaults.items():
            if name in data and data[name] == default:
                del data[name]
        return data


class Finding(_OmitsDefaultLevelFields):
    """What one rule said about one case. A rule at `auto` whose condition is met keeps its reason
    code (it fired) with `requires_human` False: it let the case through."""

    _level_defaults: ClassVar[dict[str, Any]] = {"automation": "assist"}
    rule_id: str
    description: str
    requires_human: bool
    reason_code: ReasonCode | None = None
    required_level: int = 0
    detail: str
    facts_used: dict[str, Any] = Field(default_factory=dict)
    automation: AutomationLevel = Field(default="assist", description="The rule's level in force for this case")

    @property
    def fired(self) -> bool:
        """The rule's condition was met (or its data missing), whatever its level made of it."""
        return self.requires_human or self.reason_code is not None


class PolicyEvaluation(_OmitsDefaultLevelFields):
    _level_defaults: ClassVar[dict[str, Any]] = {"shadow_rules": [], "verdict_without_shadow": None}
    policy: str
    findings: list[Finding]
    requires_human: bool
    reason_codes: list[ReasonCode]
    start_level: int = Field(description="Escalation level the gate opens at")
    relief_applied: list[str] = Field(default_factory=list, description="Rules whose level precedent lowered")
    quorum: Quorum | None = Field(default=None, description="The quorum the firing rules ask for, merged")
    shadow_rules: list[str] = Field(default_factory=list, description="Rules in shadow: every case goes to a human")
    verdict_without_shadow: bool | None = Field(
        default=None, description="Whether a human was needed by the rules not in shadow (None: no rule in shadow)"
    )


class _Missing(Exception):
    def __init__(self, fact: str):
        self.fact = fact


def _as_number(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    return value


def _test(condition: Condition, facts: Facts, used: dict[str, Any]) -> bool:
    present = condition.fact in facts and facts[condition.fact] is not None
    if condition.op == "present":
        used[condition.fact] = facts.get(condition.fact)
        return present and facts[condition.fact] not in ("", [], {})
    if condition.op == "absent":
        used[condition.fact] = facts.get(condition.fact)
        return not present or facts[condition.fact] in ("", [], {})
    if not present:
        raise _Missing(condition.fact)
    actual = facts[condition.fact]
    used[condition.fact] = actual
    if condition.op == "is_true":
        return actual is True
    if condition.op == "is_false":
        return actual is False
    if condition.op == "in":
        return actual in condition.value
    if condition.op == "not_in":
        return actual not in condition.value
    left, right = _as_number(actual), _as_number(condition.value)
    if condition.op in ("gt", "gte", "lt", "lte") and (isinstance(left, bool) or isinstance(right, bool)):
        # a yes/no where a number was expected: bool is an int in Python, so it would compare silently
        raise _Missing(condition.fact)
    try:
        return {
            "gt": lambda: left > right,
            "gte": lambda: left >= right,
            "lt": lambda: left < right,
            "lte": lambda: left <= right,
            "eq": lambda: left == right,
            "ne": lambda: left != right,
        }[condition.op]()
    except (TypeError, InvalidOperation):
        # e.g. a string where a number was expected, or NaN: ambiguous, so a human decides
        raise _Missing(condition.fact) from None


def _holds(expression: Expression, facts: Facts, used: dict[str, Any]) -> bool:
    if isinstance(expression, AllOf):
        return all(_holds(e, facts, used) for e in expression.all)
    if isinstance(expression, AnyOf):
        return any(_holds(e, facts, used) for e in expression.any)
    return _test(expression, facts, used)


def _evaluate_rule(rule: Rule, facts: Facts) -> Finding:
    used: dict[str, Any] = {}
    unknown = [f for f in rule.require if facts.get(f) in (None, "", [], {})]
    if unknown:
        return Finding(
            rule_id=rule.id,
            description=rule.description,
            requires_human=True,
            reason_code=ReasonCode.AMBIGUOUS_OR_MISSING_DATA,
            required_level=rule.min_level,
            detail=f"missing: {', '.join(unknown)}",
            facts_used={f: facts.get(f) for f in rule.require},
            automation=rule.automation,
        )
    if rule.when is None:
        return Finding(
            rule_id=rule.id,
            description=rule.description,
            requires_human=False,
            detail="all required facts known",
            facts_used={f: facts.get(f) for f in rule.require},
            automation=rule.automation,
        )
    try:
        fired = _holds(rule.when, facts, used)
    except _Missing as missing:
        return Finding(
            rule_id=rule.id,
            description=rule.description,
            requires_human=True,
            reason_code=ReasonCode.AMBIGUOUS_OR_MISSING_DATA,
            required_level=rule.min_level,
            detail=f"cannot evaluate: {missing.fact} is missing or not comparable",
            facts_used=used,
            automation=rule.automation,
        )
    if fired and rule.automation == "auto":
        return Finding(
            rule_id=rule.id,
            description=rule.description,
            requires_human=False,
            reason_code=rule.reason_code,
            detail="condition met; the rule is at auto, so it lets the case through",
            facts_used=used,
            automation=rule.automation,
        )
    return Finding(
        rule_id=rule.id,
        description=rule.description,
        requires_human=fired,
        reason_code=rule.reason_code if fired else None,
        required_level=rule.min_level if fired else 0,
        detail="condition met" if fired else "condition not met",
        facts_used=used,
        automation=rule.automation,
    )


def evaluate(policy: Policy, facts: Facts, precedent_outcomes: list[str]) -> PolicyEvaluation:
    """Apply every rule. `precedent_outcomes` are the outcomes of the matching precedents.

    A rule at shadow sends every case to a human; what the other rules alone would have needed is
    kept as `verdict_without_shadow`. For a policy whose rules are all at assist (every policy
    recorded before levels existed) the evaluation is what it always was."""
    findings = [_evaluate_rule(rule, facts) for rule in policy.rules]
    relief_applied: list[str] = []
    levels: list[int] = []
    quorum: Quorum | None = None
    for rule, finding in zip(policy.rules, findings):
        if not finding.requires_human:
            continue
        if rule.quorum is not None:
            quorum = rule.quorum.merged(quorum)
        level = finding.required_level
        relief = rule.precedent_relief
        if (
            relief
            and finding.reason_code != ReasonCode.AMBIGUOUS_OR_MISSING_DATA
            and len(precedent_outcomes) >= relief.min_cases
            and all(outcome == relief.outcome for outcome in precedent_outcomes)
            and relief.level < level
        ):
            level = relief.level
            finding.required_level = level
            finding.detail += f"; level lowered to {level + 1} by {len(precedent_outcomes)} consistent precedents"
            relief_applied.append(rule.id)
        levels.append(level)
    reason_codes = sorted({f.reason_code for f in findings if f.requires_human and f.reason_code}, key=list(ReasonCode).index)
    shadow_rules = [rule.id for rule in policy.rules if rule.automation == "shadow"]
    verdict_without_shadow = (
        any(f.requires_human for rule, f in zip(policy.rules, findings) if rule.automation != "shadow") if shadow_rules else None
    )
    return PolicyEvaluation(
        policy=policy.ref,
        findings=findings,
        requires_human=bool(levels) or bool(shadow_rules),
        reason_codes=reason_codes,
        start_level=max(levels, default=0),
        relief_applied=relief_applied,
        quorum=quorum,
        shadow_rules=shadow_rules,
        verdict_without_shadow=verdict_without_shadow,
    )
