"""The deterministic summarizer: a short markdown brief and a proposed path, citing the evidence.

This is what a reviewer reads before deciding. It is built only from recorded inputs (payload,
evidence, findings, precedents), so the same case always gets the same brief. The optional agent
summarizer (activities/agent.py) may add advice beside it; it never replaces these facts.

Everything the system did not write itself (the justification, connector strings, other reviewers'
reasons, questions) goes through `gates.text` as a code span or block: it reads as quoted text,
and cannot pass for the system's own headings, outcomes or links.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from gates.cases import CaseKind
from gates.evidence import ContextBundle
from gates.policy import PolicyEvaluation, ReasonCode
from gates.precedent import Precedent
from gates.text import md_block, md_inline

_KIND_PHRASE = {
    CaseKind.RENEWAL: "discount exception",
    CaseKind.PROCUREMENT: "purchase over threshold",
    CaseKind.ACCESS: "access exception",
}
_PAST = {"approve": "approved", "reject": "rejected"}
# Cuts of what other people and systems wrote, so one long text cannot crowd out the brief;
# the whole text stays in the trace.
PRECEDENT_REASON_CHARS = 200
VALUE_CHARS = 200
ERROR_CHARS = 200
# Of a question's answer and its attached file, what the brief quotes; the whole text is in the trace.
ANSWER_CHARS = 1500
ATTACHMENT_CHARS = 1500


class Proposal(BaseModel):
    """The path the brief proposes; advice for the reviewer, never a decision."""

    outcome: Literal["approve", "reject", "request_info", "none"]
    rationale: str
    cites: list[str] = Field(default_factory=list, description="Evidence labels and precedent case ids relied on")


class ReviewerQuestion(BaseModel):
    """A reviewer's question, and (since request_info waits for the answer) whom it went to and what
    came back: those fields are left out of the JSON while unset, so older records keep their shape."""

    round: int
    reviewer: str
    question: str
    asked: str | None = None
    outcome: Literal["waiting", "answered", "no_answer"] | None = None
    answer: str | None = None
    answered_by: str | None = None
    due_at: datetime | None = None
    attachment_name: str | None = None
    attachment_text: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_answer(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in ("round", "reviewer", "question")}


def precedent_headline(kind: CaseKind, tags: list[str], precedents: list[Precedent]) -> str:
    """`discount exception approved after a service-impact precedent: 3 similar cases, all approved`."""
    if not precedents:
        return f"no similar {_KIND_PHRASE[kind]} in the record"
    counts = Counter(p.outcome for p in precedents)
    top, top_count = counts.most_common(1)[0]
    n = len(precedents)
    if top_count * 2 <= n:  # no majority: say so instead of naming whichever outcome came first
        spread = ", ".join(f"{c} {_PAST.get(o, o)}" for o, c in counts.most_common())
        return f"{_KIND_PHRASE[kind]}: {n} similar cases, split ({spread})"
    # in the case's own tag order (most telling first), not alphabetical: `enterprise` must not beat `service_impact`
    shared = [t for t in tags if all(t in p.tags for p in precedents)]
    after = f" after {_article(shared[0])} {shared[0].replace('_', '-')} precedent" if shared else ""
    spread = (
        f"all {_PAST.get(top, top)}" if top_count == n else ", ".join(f"{c} {_PAST.get(o, o)}" for o, c in counts.most_common())
    )
    return f"{_KIND_PHRASE[kind]} {_PAST.get(top, top)}{after}: {n} similar case{'s' if n != 1 else ''}, {spread}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def propose(evaluation: PolicyEvaluation, precedents: list[Precedent], context: ContextBundle) -> Proposal:
    if not evaluation.requires_human or (evaluation.verdict_without_shadow is False and not evaluation.reason_codes):
        # in shadow with no rule met: what the policy would have done without its shadow rules
        allowed = ", ".join(f.rule_id for f in evaluation.findings)
        return Proposal(outcome="approve", rationale=f"within policy {evaluation.policy}: rules {allowed} allow it")
    if ReasonCode.AMBIGUOUS_OR_MISSING_DATA in evaluation.reason_codes:
        missing = [f"{m.source}: {m.item}" for m in context.missing] or [
            f.detail for f in evaluation.findings if f.reason_code == ReasonCode.AMBIGUOUS_OR_MISSING_DATA
        ]
        return Proposal(
            outcome="request_info",
            rationale="the record is incomplete, so no outcome is proposed; ask for: " + "; ".join(missing),
            cites=[f"{m.source}: {m.item}" for m in context.missing],
        )
    if not precedents:
        return Proposal(outcome="none", rationale="no similar past case; this needs the reviewer's own judgement")
    counts = Counter(p.outcome for p in precedents)
    top, top_count = counts.most_common(1)[0]
    if top not in ("approve", "reject") or top_count * 2 <= len(precedents):
        return Proposal(
            outcome="none",
            rationale=f"similar cases went both ways ({dict(counts)}); no outcome is proposed",
            cites=[p.case_id for p in precedents],
        )
    return Proposal(
        outcome="approve" if top == "approve" else "reject",
        rationale=f"{top_count} of {len(precedents)} similar cases were {_PAST[top]}",
        cites=[p.case_id for p in precedents if p.outcome == top],
    )


# Of a structured item (a chat thread), what a reviewer needs to read; the rest stays in the trace.
_HEADLINE_KEYS = ("title", "approval_stated_by", "customer_commitment")
_PLAIN_KEY = re.compile(r"^[a-z0-9_]+$")


def _fmt(value: Any) -> str:
    """A connector's value for a key-facts line: what we format (numbers, yes/no) stays plain;
    the connector's strings, dict keys included, become code spans."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        keys = [k for k in _HEADLINE_KEYS if k in value] or list(value)
        shown = {k: value[k] for k in keys if value[k] not in (None, "", [], {})}
        return "; ".join(f"{_fmt_key(k)}: {_fmt(v)}" for k, v in shown.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) or "none"
    if isinstance(value, str):
        return md_inline(value, max_chars=VALUE_CHARS)
    return str(value)


def _fmt_key(key: Any) -> str:
    """`approval stated by` for a schema-like key; anything else is the connector's text."""
    if isinstance(key, str) and _PLAIN_KEY.match(key):
        return key.replace("_", " ")
    return md_inline(str(key), max_chars=VALUE_CHARS)


def _question_lines(q: ReviewerQuestion) -> list[str]:
    """One round: the question, and what came back, each quoted as the words of whoever wrote them."""
    if q.asked is None:  # before questions went to a person: the question alone
        return [f"- round {q.round}, {q.reviewer}: {md_inline(q.question)}"]
    lines = [f"- round {q.round}, {md_inline(q.reviewer)} asked {md_inline(q.asked)}: {md_inline(q.question)}"]
    if q.outcome == "answered" and q.answer is not None:
        lines.append(f"  - {md_inline(q.answered_by or q.asked)} answered: {md_inline(q.answer, max_chars=ANSWER_CHARS)}")
        if q.attachment_name is not None:
            size = len(q.attachment_text or "")
            lines.append(f"  - with the file {md_inline(q.attachment_name)} ({size:,} characters), in their words:")
            if q.attachment_text:
                shown = q.attachment_text[:ATTACHMENT_CHARS]
                cut = ""
                if size > ATTACHMENT_CHARS:
                    cut = f"\n\n  (first {ATTACHMENT_CHARS:,} characters; the whole file is in the trace)"
                lines += ["", "    " + md_block(shown).replace("\n", "\n    ") + cut]
    elif q.outcome == "no_answer":
        due = f" by {q.due_at:%Y-%m-%d %H:%M} UTC" if q.due_at is not None else ""
        lines.append(f"  - **no answer** from {md_inline(q.asked)}{due}")
    else:
        due = f" (due {q.due_at:%Y-%m-%d %H:%M} UTC)" if q.due_at is not None else ""
        lines.append(f"  - waiting for {md_inline(q.asked)}'s answer{due}")
    return lines


def _earlier(count: int) -> str:
    return f"({count} earlier question{' is' if count == 1 else 's are'} in the trace)"


def render_brief(
    *,
    ask: str,
    requester: str,
    justification: str,
    context: ContextBundle,
    evaluation: PolicyEvaluation,
    precedents: list[Precedent],
    headline: str,
    proposal: Proposal,
    questions: list[ReviewerQuestion],
    earlier_questions: int = 0,
) -> str:
    """Markdown for the CLI, the UI's current details and the trace; `ask` is Markdown already
    (`gates.presentation.ask_markdown`: identifiers as code spans). Lists follow a blank line so
    every markdown renderer shows them as lists; sources are in code spans (they contain `_`).

    `questions` are the ones to show (the caller passes the latest few, so the brief does not grow
    with every request_info round); `earlier_questions` counts those left to the trace."""
    lines = [f"### {ask}", "", f"Requested by {md_inline(requester)}, in their words:", "", md_block(justification), ""]
    lines += ["**Key facts**", ""]
    for item in context.items:
        lines.append(f"- {item.item.replace('_', ' ')}: {_fmt(item.value)} {md_inline(item.label)}")
    for missing in context.missing:
        lines.append(
            f"- **missing** {md_inline(f'{missing.source}: {missing.item}')}: {md_inline(missing.error, max_chars=ERROR_CHARS)}"
        )
    if not context.items and not context.missing:
        lines.append("- none gathered")
    lines += ["", f"**Policy** `{evaluation.policy}`", ""]
    passed = []
    for f in evaluation.findings:
        if f.requires_human and f.reason_code is not None:  # a rule that fired names its reason (gates.policy)
            lines.append(
                f"- **{f.rule_id}** needs a human ({f.reason_code.value}, level {f.required_level + 1}): "
                f"{f.description} ({f.detail})"
            )
        elif f.fired:  # met, but the rule is at `auto`: say so, or "ok" would read as "not met"
            lines.append(f"- **{f.rule_id}** condition met; at auto, it lets the case through: {f.description}")
        else:
            passed.append(f.rule_id)
    if passed:
        lines.append(f"- ok: {', '.join(passed)}")
    if evaluation.shadow_rules:
        lines.append(f"- in shadow (every case goes to a human while it earns trust): {', '.join(evaluation.shadow_rules)}")
    lines += ["", f"**Precedent**: {headline}", ""]
    for p in precedents[:5]:
        reason = md_inline(p.reason, max_chars=PRECEDENT_REASON_CHARS)
        lines.append(f"- {md_inline(p.case_id)}: {p.outcome} by {p.decided_by} ({p.decided_at:%Y-%m-%d}): {reason}")
    if questions or earlier_questions:
        lines += ["", "**Reviewer questions**", ""]
        if earlier_questions:
            lines.append(f"- {_earlier(earlier_questions)}")
        for q in questions:
            lines += _question_lines(q)
    if evaluation.shadow_rules:
        # recorded (the trace, agreement) but not shown: agreement then measures the rule, not a
        # reviewer copying its proposal
        lines += ["", f"**Proposed**: proposal withheld: rule {', '.join(evaluation.shadow_rules)} is in shadow"]
    else:
        lines += ["", f"**Proposed**: {proposal.outcome}: {proposal.rationale}"]
    return "\n".join(lines)
