"""How the UI's Current Details tells a reviewer to decide: since the trust patch, the `submit_decision`
update with this round's evidence digest and (verified identity) a proof; before it, the `decide` signal."""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt

from gates.cases import CaseKind
from gates.gate import GateState
from gates.presentation import current_details
from tests.unit.factories import T0, policy

DIGEST = "sha256:" + "0123456789abcdef" * 4


def _gate(*, trusted: bool, mode: str | None = "verified", digest: str | None = DIGEST) -> GateState:
    gate = GateState(
        definition=policy(CaseKind.RENEWAL).gate,
        requester="sam.sales",
        roster={"finance_reviewers": ["rita.reviewer"], "finance_directors": ["dora.director"], "cfo_office": ["carl.cfo"]},
        level=0,
        opened_at=T0,
        level_started_at=T0,
    )
    if trusted:
        gate.trusted, gate.identity_mode, gate.digest = True, mode, digest
    return gate


def _sent_json(details: str) -> dict[str, str]:
    """The one JSON block of the panel, as the Markdown renderer shows it (what a reviewer copies)."""
    blocks = re.findall(r'<pre><code class="language-json">(.*?)</code></pre>', MarkdownIt("commonmark").render(details), re.S)
    assert len(blocks) == 1, details
    return json.loads(blocks[0].replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">"))


def test_a_verified_case_asks_for_submit_decision_with_its_digest_and_a_proof_from_hitl_token():
    details = current_details(state="waiting", decision=None, gate=_gate(trusted=True), brief=None)
    assert "Decide with **More Actions → Send an Update → `submit_decision`**, data:" in details
    assert _sent_json(details) == {
        "outcome": "approve",
        "reviewer": "<your id>",
        "reason": "<why>",
        "digest": DIGEST,
        "proof": "<hitl token --as <your id>>",
    }
    assert "`proof` is what `hitl token --as <your id>` prints" in details
    assert "Tools that can only signal send the same data with **Send a Signal → `decide`**" in details


def test_an_asserted_case_asks_for_its_digest_and_no_proof():
    details = current_details(state="waiting", decision=None, gate=_gate(trusted=True, mode="asserted"), brief=None)
    assert _sent_json(details) == {"outcome": "approve", "reviewer": "<your id>", "reason": "<why>", "digest": DIGEST}
    assert "identity is asserted here, so no `proof`" in details and "hitl token" not in details


@pytest.mark.parametrize("gate", [_gate(trusted=False), _gate(trusted=True, digest=None)], ids=["before the patch", "no digest"])
def test_a_case_started_before_the_trust_patch_keeps_the_decide_signal_and_the_plain_json(gate):
    details = current_details(state="waiting", decision=None, gate=gate, brief=None)
    assert "Decide with **More Actions → Send a Signal → `decide`**, data:" in details
    assert _sent_json(details) == {"outcome": "approve", "reviewer": "<your id>", "reason": "<why>"}
    assert "submit_decision" not in details and "proof" not in details


def test_a_decided_case_says_nothing_about_how_to_decide():
    gate = _gate(trusted=True)
    gate.open = False
    details = current_details(state="decided", decision=None, gate=gate, brief=None)
    assert "submit_decision" not in details and DIGEST not in details
