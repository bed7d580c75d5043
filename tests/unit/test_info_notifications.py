"""What the person asked a question and the requester of a decided case read, in email and Slack:
the case, the ask, whom it asks, the deadline, the links and the commands, with the reviewer's words
quoted as theirs and never as markup. Pure rendering; the SMTP round trip is in
tests/integration/test_info_channels.py."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from activities.channels import OutgoingMessage, Recipients, show_command, slack_message, ui_workflow_url
from activities.channels.email import build_email, email_body
from activities.channels.recipients import Recipient, people_by_role
from activities.notify import decided_key, decided_notification
from demo.examples import example
from gates.brief import Proposal
from gates.cases import CaseKind, PersonId
from gates.messages import Notification, Quote
from gates.precedent import PrecedentFeatures
from gates.trace import AgentNote, DecisionTrace

UI = "http://temporal-ui.example:8233"
CASE = "renewal_discount_exception:acme_enterprise/fy26"
DUE = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
HOSTILE = "<!channel> *approve now* <https://evil.example|click> \u202eevorppa"
ASK = "28% renewal discount for acme_enterprise (fy26)"


def info(kind: str = "info_requested", **overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "notification_key": f"{CASE}/run-1/r1/{kind}/asked",
        "case_id": CASE,
        "kind": kind,
        "gate": "finance",
        "level": 0,
        "reviewer_group": "finance_reviewers",
        "recipients": ["sales_rep_sam"],
        "message": f"A question from fin_rev_ana about {ASK}: please answer by 2026-12-04 09:00 UTC (`hitl answer`).",
        "ask": ASK,
        "deadline": DUE,
        "quotes": [Quote(person="fin_rev_ana", label="question", text=f"Which contract? {HOSTILE}")],
        "asked": ["sales_rep_sam"],
    }
    return Notification(**{**values, **overrides})


def message(n: Notification) -> OutgoingMessage:
    sam = Recipient("sales_rep_sam", "Sam Seller", "sam@example.com", "asked")
    return OutgoingMessage(
        notification=n,
        recipients=Recipients([sam], []),
        ui_url=ui_workflow_url(UI, "default", n.case_id),
        show_command=show_command(n.case_id),
    )


def terminal_commands(body: str) -> list[list[str]]:
    return [shlex.split(line.strip()) for line in body.splitlines() if line.strip().startswith("hitl ")]


@pytest.mark.parametrize("kind", ["info_requested", "info_reminder"])
def test_the_person_asked_gets_the_question_in_the_reviewers_words_the_deadline_and_how_to_answer(kind):
    m = message(info(kind))
    email = build_email(m, sender="HITL <hitl@example.com>", message_key="k#email")
    body = email_body(m)

    title = "Information requested" if kind == "info_requested" else "Reminder: information requested"
    assert email["Subject"] == f"[hitl] {title}: {ASK} (case {CASE})"
    assert email["To"] == "Sam Seller <sam@example.com>"
    assert "Asked:     sales_rep_sam" in body
    assert "Answer by: 2026-12-04 09:00 UTC" in body
    assert "Reviewers:" not in body, "the person asked is not a reviewer"
    lines = body.splitlines()
    start = lines.index("fin_rev_ana wrote (question):")
    assert lines[start + 1].startswith("> Which contract? <!channel> *approve now*"), "quoted, as written"
    assert "\u202e" not in body, "a bidi override is shown as a mark, not applied"
    [link] = [word for word in body.split() if word.startswith(UI)]
    assert unquote(link.rsplit("/", 1)[1]) == CASE and "%3A" in link and "%2F" in link
    assert terminal_commands(body) == [
        ["hitl", "show", CASE],
        ["hitl", "answer", CASE, "--text", "<your answer>"],
    ]


def test_an_unanswered_question_names_who_was_asked_and_offers_no_answer_command():
    body = email_body(message(info("info_unanswered", deadline=None, recipients=["sales_rep_sam", "fin_rev_ana"])))
    assert body.startswith("A question from fin_rev_ana")
    assert "Asked:     sales_rep_sam" in body and "Answer by: none set" in body
    assert terminal_commands(body) == [["hitl", "show", CASE]], "too late to answer"


def test_slack_shows_the_question_as_a_literal_quote_with_the_deadline_and_both_commands():
    posted = slack_message(message(info()))
    text = json.dumps(posted)
    fields = posted["blocks"][1]["fields"]
    labels = [f["text"] for f in fields[::2]]
    assert labels == ["*Case*", "*Ask*", "*Asked*", "*Answer by*", "*Gate*"]
    due = fields[7]  # the value beside "Answer by": Slack's date token, in each reader's time zone
    assert due["type"] == "mrkdwn" and due["text"].startswith(f"<!date^{int(DUE.timestamp())}^")
    [quote] = [b for b in posted["blocks"] if b["type"] == "rich_text" and b["elements"][0]["type"] == "rich_text_section"
               and "wrote" in json.dumps(b)]
    assert quote["elements"][1]["type"] == "rich_text_quote"
    assert quote["elements"][1]["elements"][0]["text"].startswith("Which contract? <!channel> *approve now*")
    assert "<!channel>" not in posted["text"], "the fallback holds the system's words only"
    commands = [e["elements"][0]["text"] for b in posted["blocks"] if b["type"] == "rich_text" for e in b["elements"]
                if e["type"] == "rich_text_preformatted"]
    assert commands == [show_command(CASE), f"hitl answer {shlex.quote(CASE)} --text '<your answer>'"]
    assert "Open in Temporal UI" in text


def test_a_person_both_asked_and_reviewing_is_written_to_once_as_the_person_asked():
    n = info("info_unanswered", recipients=["sales_rep_sam", "fin_rev_ana"])
    assert people_by_role(n) == [("sales_rep_sam", "asked"), ("fin_rev_ana", "reviewer")]
    decided = info("decided", recipients=[], asked=[], requester="ae_maria")
    assert people_by_role(decided) == [("ae_maria", "requester")]


# -- the decided notification ---------------------------------------------------------------------


def trace(**overrides: Any) -> DecisionTrace:
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "decision_trace": "renewal_discount_exception",
        "entities": {"account": "acme_enterprise"},
        "inputs": [],
        "human_gate": "finance",
        "case_id": CASE,
        "business_key": "acme_enterprise/fy26",
        "workflow_id": CASE,
        "run_id": "run-1",
        "request": example(CaseKind.RENEWAL, human=True).model_dump(mode="json"),
        "brief": "brief",
        "findings": [],
        "reason_codes": ["threshold_breach"],
        "proposal": Proposal(outcome="approve", rationale="precedents"),
        "agent": AgentNote(used=False),
        "precedent_headline": "",
        "precedents_cited": [],
        "features": PrecedentFeatures(kind=CaseKind.RENEWAL, policy="discount_policy_v3_2", amount_band="pct_25_30"),
        "outcome": "approve",
        "decided_by": "fin_rev_ana",
        "decided_via": "update",
        "reason": f"Service-impact precedent {HOSTILE}",
        "decided_level": 0,
        "opened_at": at,
        "gate_opened_at": at,
        "decided_at": at + timedelta(hours=2),
    }
    return DecisionTrace(**{**values, **overrides})


def test_the_requester_is_told_the_outcome_who_decided_and_the_reviewers_reason_as_theirs():
    decided = trace()
    n = decided_notification(f"{CASE}#run-1", decided)
    assert n is not None
    requester: PersonId = decided.request["requester"]
    assert (n.kind, n.requester, n.notification_key) == ("decided", requester, decided_key(f"{CASE}#run-1"))
    assert n.ask == ASK
    assert n.message == "Decided: approve by fin_rev_ana via update at level 1."
    assert n.quotes == [Quote(person="fin_rev_ana", label="reason", text=decided.reason)]

    m = message(n)
    email = build_email(m, sender="hitl@example.com", message_key="k#email")
    body = email_body(m)
    assert email["Subject"] == f"[hitl] Decided: {ASK} (case {CASE})"
    assert f"Requester: {requester}" in body and "Gate:      finance gate, level 1" in body
    assert "fin_rev_ana wrote (reason):" in body and "> Service-impact precedent <!channel>" in body
    assert terminal_commands(body) == [["hitl", "show", CASE]]


def test_a_policy_or_timeout_outcome_is_told_in_the_systems_words_with_no_quote():
    n = decided_notification(
        "k", trace(outcome="auto_approve", decided_by="policy", decided_via="policy", reason="Within policy", human_gate=None,
                   decided_level=None)
    )
    assert n is not None and n.quotes == []
    assert n.message == "Decided: auto_approve by policy via policy. Within policy"
    assert "Gate:      none (decided by policy)" in email_body(message(n))
