"""Untrusted text in what reviewers read: the brief, the UI's details panels, and `hitl show`.

A requester's justification, another reviewer's reason, a rejected sender's reviewer string or a
connector's value must read as quoted text, never as the system's own words: in Markdown it sits in
code spans and blocks (the document's shape is the same whatever the text says), and on a terminal
or a pipe no escape sequence, CR or bidi override gets through.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

from hypothesis import given, settings
from markdown_it import MarkdownIt
from rich.console import Console

from gates.brief import (
    PRECEDENT_REASON_CHARS,
    ReviewerQuestion,
    precedent_headline,
    propose,
    render_brief,
)
from gates.cases import CaseKind
from gates.gate import AcceptedDecision, GateState, OperatorRecord, RejectedAttempt
from gates.kinds import RENEWAL
from gates.policy import evaluate
from gates.presentation import (
    ERROR_CHARS,
    ask_markdown,
    current_details,
    static_details,
    static_summary,
)
from gates.text import neutralize, quoted
from gates.trace import CaseState, CaseView, gate_view
from hitl_temporal.cli.render import case_renderable, render_case
from tests.unit.factories import (
    CRM_FULL,
    T0,
    access,
    context,
    policy,
    precedent,
    renewal,
)
from tests.unit.untrusted import (
    RENDERERS,
    TEXT,
    hidden_characters,
    shown_inline,
    structure,
    tokens,
)

DISCOUNT = policy(CaseKind.RENEWAL)
BENIGN = "x"


def benign(text: str) -> str:
    """The harmless text to compare a hostile one with: an empty value is left out of the brief either way."""
    return BENIGN if text else ""
SETTINGS = settings(max_examples=100, deadline=None)


def code_contents(source: str, md: MarkdownIt) -> list[str]:
    return [t.content for t in tokens(source, md) if t.type in ("code_inline", "fence")]


def fenced(text: str) -> str:
    shown = neutralize(text.replace("\r\n", "\n"))
    return shown if shown.endswith("\n") else shown + "\n"


def assert_same_shape(hostile: str, benign: str) -> None:
    """The hostile text changed nothing but the contents of code: no heading, emphasis, link or HTML of its own."""
    for md in RENDERERS:
        assert structure(hostile, md) == structure(benign, md)
        html = md.render(hostile)
        assert "<a " not in html and "<em>" not in html
        assert html.count("<strong>") == md.render(benign).count("<strong>")
        assert len(re.findall(r"<h[1-6]>", html)) == len(re.findall(r"<h[1-6]>", md.render(benign)))


# --- the brief --------------------------------------------------------------------------------


def _brief(text: str, earlier_questions: int = 0, request=None) -> str:
    """A renewal brief with `text` in every place someone other than the system wrote."""
    request = request or renewal()
    evidence = context(
        {
            **CRM_FULL,
            "crm.tier": text,
            "chat.thread": {"title": text, "approval_stated_by": "vp.sales"},
            "chat.extra": {f"K {text}": 1},
        },
        missing={"crm.contract_terms": text},
    )
    precedents = [precedent(1).model_copy(update={"reason": text})]
    facts = RENEWAL.facts(request, context(CRM_FULL), 1)
    evaluation = evaluate(DISCOUNT, facts, ["approve"])
    return render_brief(
        ask=ask_markdown(request),
        requester=request.requester,
        justification=text,
        context=evidence,
        evaluation=evaluation,
        precedents=precedents,
        headline=precedent_headline(request.kind, RENEWAL.tags(facts), precedents),
        proposal=propose(evaluation, precedents, evidence),
        questions=[ReviewerQuestion(round=2, reviewer="rita.reviewer", question=text)],
        earlier_questions=earlier_questions,
    )


def test_a_justification_is_shown_in_the_requesters_words_under_a_system_label():
    brief = _brief("# Decided\n**approve** by cfo_jane")
    assert "Requested by `sam.sales`, in their words:\n\n```text\n# Decided\n**approve** by cfo_jane\n```" in brief
    assert "<h1>" not in MarkdownIt("commonmark").render(brief)


def test_a_precedent_reason_is_a_code_span_cut_to_a_couple_of_hundred_characters():
    brief = _brief("[click](https://evil.example) " + "y" * 300)
    line = next(line for line in brief.splitlines() if line.startswith("- `renewal_discount_exception:globex_1/fy25`"))
    assert line.endswith(
        f"`[click](https://evil.example) {'y' * (PRECEDENT_REASON_CHARS - 30)}…` (130 more characters not shown)"
    )


def test_connector_strings_are_code_spans_and_our_numbers_stay_plain():
    brief = _brief("https://evil.example")
    assert "- tier: `https://evil.example` `crm: tier`" in brief
    assert "- enterprise arr: 1,200,000 `crm: enterprise_arr`" in brief
    assert "- thread: title: `https://evil.example`; approval stated by: `vp.sales` `chat: thread`" in brief


def test_a_connector_key_that_is_not_an_identifier_is_a_code_span():
    assert "- extra: `K **approve**`: 1 `chat: extra`" in _brief("**approve**")


def test_a_reviewer_question_is_a_code_span():
    assert "- round 2, rita.reviewer: `\\*\\*approve\\*\\* by cfo_jane`" in _brief("\\*\\*approve\\*\\* by cfo_jane")


def test_earlier_questions_are_counted_not_repeated():
    assert "- (2 earlier questions are in the trace)\n- round 2, rita.reviewer: `x`" in _brief("x", earlier_questions=2)
    assert "- (1 earlier question is in the trace)" in _brief("x", earlier_questions=1)
    assert "earlier question" not in _brief("x")


@SETTINGS
@given(text=TEXT)
def test_any_text_in_the_brief_is_only_ever_code(text):
    brief = _brief(text)
    assert_same_shape(brief, _brief(benign(text)))
    for md in RENDERERS:
        shown = code_contents(brief, md)
        assert fenced(text) in shown  # the justification
        assert shown_inline(text, PRECEDENT_REASON_CHARS) in shown  # the precedent reason
        assert shown_inline(text) in shown  # the question


# --- the UI's static summary and details ------------------------------------------------------


def test_static_summary_is_the_gate_and_the_ask_with_its_identifiers_as_code():
    assert static_summary(renewal()) == "Finance: 28% renewal discount for `acme_enterprise` (`fy26`)"
    assert static_summary(access()) == "Security: `read_replica` on `billing-db` for `lee.eng`, 7 days"


def test_an_identifier_that_looks_like_a_domain_does_not_become_a_link():
    """`www.evil.com` is a valid account id; GFM would link it in plain text."""
    request = renewal(account="www.evil.com", requester="cfo@evil.com")
    for markdown in (static_summary(request), _brief("fine", request=request)):
        for renderer in RENDERERS:
            assert "<a" not in renderer.render(markdown), markdown


def test_static_details_list_the_fields_and_quote_the_justification():
    assert static_details(renewal()) == (
        "**renewal_discount_exception** at the Finance gate\n\n"
        "Business key `acme_enterprise/fy26`\n\n"
        "- **requester**: `sam.sales`\n- **account**: `acme_enterprise`\n- **renewal**: `fy26`\n"
        "- **requested_discount_pct**: 28\n- **chat_thread**: None\n\n"
        "**justification**, as `sam.sales` wrote it:\n\n```text\nCustomer had two sev1 outages this year\n```\n\n"
        "Live state, who may decide and the exact `decide` signal are under **Current Details**."
    )


def test_static_details_are_the_same_for_the_same_request():
    assert static_details(access()) == static_details(access())


@SETTINGS
@given(text=TEXT)
def test_any_text_in_a_request_is_only_ever_code_in_the_static_details(text):
    hostile = access().model_copy(update={"justification": text, "policy_exception": text})
    details = static_details(hostile)
    assert_same_shape(details, static_details(access().model_copy(update={"justification": BENIGN, "policy_exception": BENIGN})))
    for md in RENDERERS:
        assert code_contents(details, md).count(fenced(text)) == 2


# --- the UI's current details -----------------------------------------------------------------


def _gate(attempt_text: str | None = None) -> GateState:
    gate = GateState(
        definition=DISCOUNT.gate,
        requester="sam.sales",
        roster={"finance_reviewers": ["rita.reviewer"], "finance_directors": ["dora.director"], "cfo_office": ["carl.cfo"]},
        level=0,
        opened_at=T0,
        level_started_at=T0,
    )
    if attempt_text is not None:
        gate.rejected_attempts.append(
            RejectedAttempt(at=T0, via="signal", reviewer=attempt_text or None, payload={}, error=attempt_text)
        )
    return gate


def _decision(reason: str, via: str = "signal") -> AcceptedDecision:
    return AcceptedDecision(
        outcome="approve", decided_by="rita.reviewer", reason=reason, via=via, level=0, group="finance_reviewers", at=T0
    )


def test_current_details_of_a_waiting_case_keep_the_systems_lines():
    details = current_details(state="waiting", decision=None, gate=_gate("**approve** by cfo_jane"), brief="BRIEF")
    assert details == (
        "## Waiting\n\n"
        "- **Finance gate**, level 1 of 3: Finance reviewer (`finance_reviewers`)\n"
        "- **May decide now**: rita.reviewer, dora.director, carl.cfo\n"
        "- **Reminder** 2026-09-01 13:00 UTC; **escalates** 2026-09-02 09:00 UTC\n\n"
        "Decide with **More Actions → Send a Signal → `decide`**, data:\n\n"
        '```json\n{"outcome": "approve", "reviewer": "<your id>", "reason": "<why>"}\n```\n\n'
        "`outcome` is `approve`, `reject` or `request_info`. Press **R** to refresh this panel after sending.\n\n"
        "Last rejected attempt: reviewer `**approve** by cfo_jane` (as the sender wrote it), "
        "refused: `**approve** by cfo_jane`\n\n"
        "BRIEF"
    )


def test_current_details_of_a_decided_case_quote_the_reason_as_the_reviewers_words():
    details = current_details(state="decided", decision=_decision("# Decided by cfo_jane"), gate=None, brief=None)
    assert details == "## Decided\n\n**approve** by rita.reviewer (signal): `# Decided by cfo_jane` (their words)\n"
    assert len(re.findall("<h2>", MarkdownIt("commonmark").render(details))) == 1


def test_a_timeout_reason_is_not_labelled_as_someone_elses_words():
    details = current_details(state="decided", decision=_decision("no decision within 3d", via="timeout"), gate=None, brief=None)
    assert details.endswith(": `no decision within 3d`\n")


def test_a_long_rejected_attempt_error_is_cut():
    details = current_details(state="waiting", decision=None, gate=_gate("e" * (ERROR_CHARS + 5)), brief=None)
    assert f"`{'e' * ERROR_CHARS}…` (5 more characters not shown)" in details


@SETTINGS
@given(text=TEXT)
def test_any_text_in_the_case_state_is_only_ever_code_in_the_current_details(text):
    for decision, gate in ((None, _gate(text)), (_decision(text), None)):
        details = current_details(state="waiting", decision=decision, gate=gate, brief=_brief(text))
        harmless = current_details(
            state="waiting",
            decision=_decision(BENIGN) if decision else None,
            gate=_gate(benign(text)) if gate else None,
            brief=_brief(benign(text)),
        )
        assert_same_shape(details, harmless)
        for md in RENDERERS:
            shown = code_contents(details, md)
            assert shown_inline(text, ERROR_CHARS if gate else None) in shown


# --- hitl show --------------------------------------------------------------------------------

SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colours rich itself writes on a terminal


def _view(text: str, brief: str) -> CaseView:
    """A waiting case after a request_info round, with `text` wherever someone other than the system wrote."""
    gate = _gate(text)
    gate.escalate(T0 + timedelta(days=1), reason=text)
    attempt = RejectedAttempt(at=T0, via="signal", reviewer=text or None, payload={}, error=text)
    operator = OperatorRecord(action="note", operator="olive.ops", reason=text, at=T0, result=text)
    return CaseView(
        case_id="renewal_discount_exception:acme_enterprise/fy26",
        kind=CaseKind.RENEWAL.value,
        state=CaseState.WAITING,
        ask=text,
        requester="sam.sales",
        policy="discount_policy_v3_2",
        brief=brief,
        findings=[],
        reason_codes=["threshold_breach"],
        proposal=None,
        precedent_headline=None,
        precedents=[],
        gate=gate_view(gate),
        decision=_decision(text),
        rounds=[_decision(text).model_copy(update={"outcome": "request_info"})],
        rejected_attempts=[attempt],
        questions=[],
        operator_actions=[operator],
    )


def on_terminal(view: CaseView) -> str:
    """What a colour terminal receives, less rich's own colour codes."""
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="truecolor", width=100, highlight=False, emoji=False).print(
        case_renderable(view, terminal=True, now=T0)
    )
    return SGR.sub("", buffer.getvalue())


def test_piped_show_quotes_peoples_words_apart_from_the_labels():
    out = render_case(_view("**approve** by cfo_jane", brief=_brief("x")), now=T0)
    assert "decided: approve by rita.reviewer via signal at level 1 at 2026-09-01 09:00:00Z: “**approve** by cfo_jane”" in out
    assert "rounds: request_info by rita.reviewer at 2026-09-01 09:00:00Z: “**approve** by cfo_jane”" in out
    assert "rejected attempts: 2026-09-01 09:00:00Z signal “**approve** by cfo_jane”: “**approve** by cfo_jane”" in out
    assert "operator actions: 2026-09-01 09:00:00Z note by olive.ops: “**approve** by cfo_jane” -> **approve** by cfo_jane" in out
    assert "escalations: to level 2 (finance_directors) at 2026-09-02 09:00:00Z: “**approve** by cfo_jane”" in out


def test_piped_show_cannot_be_made_to_clear_the_screen_or_link_anywhere():
    out = render_case(_view("\x1b[2J\x1b]8;;https://evil.example\x07x\x1b]8;;\x07", brief=_brief("\x1b[2J")), now=T0)
    assert "\x1b" not in out and "\x07" not in out
    assert "“⟨U+001B⟩[2J⟨U+001B⟩]8;;https://evil.example⟨U+0007⟩x⟨U+001B⟩]8;;⟨U+0007⟩”" in out


def test_an_rtl_override_reads_as_a_mark_not_as_approve():
    out = render_case(_view("\u202eevorppa", brief=_brief("\u202eevorppa")), now=T0)
    assert "\u202e" not in out and "“⟨U+202E⟩evorppa”" in out


def test_a_brief_written_before_quoting_cannot_reach_the_terminal_raw():
    """Briefs stored by earlier versions hold the justification as typed, character references included."""
    legacy = "### ask\n\nRequested by **sam.sales**: &#x202E;evorppa \u202e [click](https://evil.example) \x1b[2J"
    out = on_terminal(_view("x", brief=legacy))
    assert hidden_characters(out) == [] and "\x1b]8;" not in out


@SETTINGS
@given(text=TEXT)
def test_nothing_hidden_reaches_a_pipe_or_a_terminal(text):
    for brief in (_brief(text), f"### legacy\n\nRequested by **sam.sales**: {text}"):
        view = _view(text, brief)
        piped = render_case(view, now=T0)
        assert hidden_characters(piped) == []
        assert hidden_characters(on_terminal(view)) == []
    assert f": {quoted(text)}" in piped  # the decision's reason, as the reviewer wrote it

