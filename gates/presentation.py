"""What the Temporal Web UI shows of a case: the static summary and details given at start, and the
Current Details panel the workflow keeps up to date.

Pure functions (no Temporal imports), so the workflow can compare a start's metadata with what
the request should produce, and the tests can throw any text at them. The UI renders all three as
Markdown: the system's own lines (gate, who may decide, deadlines, how to decide) stay plain; what
requesters, reviewers and senders wrote goes through `gates.text` as code spans and blocks, labelled
with whose words they are.
"""

from __future__ import annotations

import json
import typing
from decimal import Decimal

from gates.cases import CaseRequest, Text
from gates.gate import AcceptedDecision, GateState
from gates.kinds import SPECS
from gates.text import md_block, md_inline

# The pydantic metadata that marks a request field as a person's words (see gates.cases.Text).
_PERSON_TEXT = typing.get_args(Text)[1:]
# Of a rejected attempt's error and an accepted reason, what the panel shows (the rest is in the case state).
ERROR_CHARS = 300
# Channels through which a person (not the policy or a timer) wrote the decision's reason.
_PEOPLES_CHANNELS = frozenset({"update", "signal", "operator"})

_DECIDE_EXAMPLE = json.dumps({"outcome": "approve", "reviewer": "<your id>", "reason": "<why>"})
# How a reviewer gets a proof from the local issuer (`hitl dev`); a refused decision names its issuer's own way.
PROOF_COMMAND = "hitl token --as <your id>"


def ask_markdown(request: CaseRequest) -> str:
    """The case's ask with the payload's identifiers as code spans:
    ``28% renewal discount for `acme_enterprise` (`fy26`)``.

    An identifier is the sender's choice too, and `www.evil.com` is a valid account id that GFM
    would turn into a link; inside a code span it stays text. The sentence itself comes from the
    kind's `ask` (gates/kinds.py), fed stand-ins for the string fields."""
    spec = SPECS[request.kind]
    texts = {name: value for name, value in request.__dict__.items() if isinstance(value, str)}
    stand_ins = {name: f"\x00{index}\x00" for index, name in enumerate(texts)}
    sentence = spec.ask(request.model_construct(**{**request.__dict__, **stand_ins}))
    for name, stand_in in stand_ins.items():
        sentence = sentence.replace(stand_in, md_inline(texts[name]))
    return sentence


def static_summary(request: CaseRequest) -> str:
    """The case's one line in the UI: ``Finance: 28% renewal discount for `acme_enterprise` (`fy26`)``."""
    return f"{SPECS[request.kind].gate_title}: {ask_markdown(request)}"


def _is_person_text(request: CaseRequest, name: str) -> bool:
    metadata = type(request).model_fields[name].metadata
    return all(item in metadata for item in _PERSON_TEXT)


def _field_value(value: object) -> str:
    """Numbers as we print them; identifiers and anything else from the payload as a code span."""
    if isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return "None"
    return md_inline(str(value))


def static_details(request: CaseRequest) -> str:
    """The request as the UI's static details: its fields, then each person-written field as a block
    labelled with who wrote it. Deterministic in the request."""
    spec = SPECS[request.kind]
    names = list(type(request).model_fields)
    fields = [f"- **{n}**: {_field_value(getattr(request, n))}" for n in names if not _is_person_text(request, n)]
    words = [
        f"**{n}**, as {md_inline(request.requester)} wrote it:\n\n{md_block(getattr(request, n))}"
        for n in names
        if _is_person_text(request, n)
    ]
    return "\n\n".join(
        [
            f"**{request.kind.value}** at the {spec.gate_title} gate",
            f"Business key {md_inline(request.business_key())}",
            "\n".join(fields),
            *words,
            "Live state, who may decide and the exact `decide` signal are under **Current Details**.",
        ]
    )


def _decision_line(d: AcceptedDecision) -> str:
    """`**approve** by fin_rev_ana (signal): `their reason` (their words)`."""
    label = " (their words)" if d.via in _PEOPLES_CHANNELS else ""
    return f"**{d.outcome}** by {d.decided_by} ({d.via}): {md_inline(d.reason)}{label}"


def _how_to_decide(gate: GateState) -> list[str]:
    """The exact data to send. Since the trust patch, through the `submit_decision` update (the UI
    shows its refusal in the dialog), bound to this round's evidence digest and, in verified mode,
    with a proof; gates of cases started before it keep the `decide` signal and the plain JSON."""
    if not gate.trusted or gate.digest is None:
        return [
            "Decide with **More Actions → Send a Signal → `decide`**, data:",
            "",
            "```json",
            _DECIDE_EXAMPLE,
            "```",
            "",
            "`outcome` is `approve`, `reject` or `request_info`. Press **R** to refresh this panel after sending.",
        ]
    verified = gate.identity_mode != "asserted"
    example = {"outcome": "approve", "reviewer": "<your id>", "reason": "<why>", "digest": gate.digest}
    if verified:
        example["proof"] = f"<{PROOF_COMMAND}>"
    proof = f"`proof` is what `{PROOF_COMMAND}` prints" if verified else "identity is asserted here, so no `proof`"
    # one field a line, so the digest shows in a narrow panel; json.dumps writes ASCII, and no line
    # it writes starts with a backtick, so nothing in it can close the fence
    return [
        "Decide with **More Actions → Send an Update → `submit_decision`**, data:",
        "",
        "```json",
        json.dumps(example, indent=2),
        "```",
        "",
        f"`outcome` is `approve`, `reject` or `request_info`; `digest` binds it to the evidence of this round; {proof}. "
        "A refusal shows in the dialog, and nothing is recorded. "
        "Tools that can only signal send the same data with **Send a Signal → `decide`**. "
        "Press **R** to refresh this panel after sending.",
    ]


def _gate_lines(gate: GateState) -> list[str]:
    level = gate.definition.levels[gate.level]
    where = f"level {gate.level + 1} of {len(gate.definition.levels)}: {level.title} ({md_inline(gate.current_group)})"
    deadline = "**times out**" if gate.is_last_level() else "**escalates**"
    lines = [
        f"- **{gate.definition.title} gate**, {where}",
        f"- **May decide now**: {', '.join(gate.may_decide()) or 'nobody on the roster'}",
        f"- **Reminder** {gate.remind_at():%Y-%m-%d %H:%M} UTC; {deadline} {gate.escalate_at():%Y-%m-%d %H:%M} UTC",
        "",
        *_how_to_decide(gate),
        "",
    ]
    if gate.rejected_attempts:
        last = gate.rejected_attempts[-1]
        who = md_inline(last.reviewer) if last.reviewer else "not given"
        error = md_inline(last.error, max_chars=ERROR_CHARS)
        lines += [f"Last rejected attempt: reviewer {who} (as the sender wrote it), refused: {error}", ""]
    return lines


def current_details(*, state: str, decision: AcceptedDecision | None, gate: GateState | None, brief: str | None) -> str:
    """Markdown for the UI's Current Details panel: what a reviewer needs to decide from the case page.

    `brief` is the summarizer's brief, already safe (gates.brief renders its untrusted parts as code)."""
    lines = [f"## {state.capitalize()}", ""]
    if decision is not None:
        lines += [_decision_line(decision), ""]
    if gate is not None and gate.open:
        lines += _gate_lines(gate)
    if brief is not None:
        lines.append(brief)
    return "\n".join(lines)
