"""What `hitl show` prints of a case waiting for an answer, and which files `hitl answer --file`
attaches: pure, no server (the commands against a real case: tests/e2e/test_answer_cli.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gates.bounds import MAX_ATTACHMENT_CHARS
from gates.info_request import InfoRequest
from gates.trace import CaseState, CaseView
from hitl_temporal.cli.answer import AttachmentError, read_attachment
from hitl_temporal.cli.render import render_case

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CASE = "renewal_discount_exception:acme_enterprise/fy26"


def question(round_no: int = 1, **changes) -> InfoRequest:
    asked_at = NOW - timedelta(hours=3)
    values = {
        "round": round_no,
        "asked_by": "fin_rev_ana",
        "asked": "sales_rep_sam",
        "question": "Which contract promised the discount?\x1b[2J",
        "asked_at": asked_at,
        "remind_at": asked_at + timedelta(days=1),
        "due_at": asked_at + timedelta(days=2),
    }
    return InfoRequest(**{**values, **changes})


def view(info_request: InfoRequest | None, rounds: list[InfoRequest]) -> CaseView:
    return CaseView(
        case_id=CASE,
        kind="renewal_discount_exception",
        state=CaseState.AWAITING_INFO if info_request else CaseState.WAITING,
        ask="28% renewal discount for acme_enterprise (fy26)",
        requester="ae_maria",
        policy="discount_policy_v3_2",
        brief=None,
        findings=[],
        reason_codes=[],
        proposal=None,
        precedent_headline=None,
        precedents=[],
        gate=None,
        decision=None,
        rounds=[],
        rejected_attempts=[],
        questions=[],
        info_request=info_request,
        info_rounds=rounds,
    )


def rows(text: str, label: str) -> list[str]:
    return [line.split(f"{label}:", 1)[1].strip() for line in text.splitlines() if line.strip().startswith(f"{label}:")]


def test_show_prints_the_open_question_who_is_asked_when_it_is_due_and_how_to_answer():
    open_round = question()
    text = render_case(view(open_round, [open_round]), NOW)

    assert rows(text, "state") == ["awaiting_info"]
    [asked] = rows(text, "question")
    assert asked.startswith("by fin_rev_ana at 2026-12-02 09:00:00Z: “Which contract promised the discount?")
    assert "\x1b" not in text, "an escape sequence in the question is marked, not sent to the terminal"
    assert rows(text, "asked") == ["sales_rep_sam"]
    assert rows(text, "answer due") == ["2026-12-04 09:00Z (in 1d 21h); reminder 2026-12-03 09:00Z (in 21h)"]
    assert rows(text, "answer with") == [f"hitl answer {CASE} --as sales_rep_sam --text ..."]


def test_show_prints_every_round_answered_or_not():
    answered = question(
        1, outcome="answered", answer="The 2025 MSA", answered_by="sales_rep_sam", answered_at=NOW - timedelta(days=2),
        attachment_name="msa.txt", attachment_text="x" * 1200, asked_at=NOW - timedelta(days=3),
    )
    unanswered = question(2, outcome="no_answer", asked_at=NOW - timedelta(days=1))
    text = render_case(view(None, [answered, unanswered]), NOW)

    first, second = [line.strip() for line in text.splitlines() if "round " in line and " asked " in line]
    answered_line = "-> answered by sales_rep_sam at 2026-11-30 12:00:00Z: “The 2025 MSA” (attached “msa.txt”, 1,200 characters)"
    assert first.endswith(answered_line)
    assert second.endswith(f"-> no answer by {unanswered.due_at:%Y-%m-%d %H:%M:%S}Z")
    assert rows(text, "question") == [], "no open question"


# -- hitl answer --file ---------------------------------------------------------------------------------


def test_a_text_file_is_attached_by_its_base_name_without_its_byte_order_mark(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffClause 4.2: 28% for fy26.\nSigned 2025-03-01.\n".encode())
    assert read_attachment(path) == ("notes.txt", "Clause 4.2: 28% for fy26.\nSigned 2025-03-01.\n")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a binary file; attach a text file (UTF-8)"),
        ("caf\u00e9".encode("latin-1"), "is not UTF-8 text (byte 3)"),
        (b"x" * (4 * MAX_ATTACHMENT_CHARS + 1), f"is longer than {MAX_ATTACHMENT_CHARS:,} characters"),
        (("é" * (MAX_ATTACHMENT_CHARS + 1)).encode(), f"is longer than {MAX_ATTACHMENT_CHARS:,} characters"),
        (b"   \n", "is empty"),
        (b"ok\x1b[31m red", "control character"),
    ],
    ids=["binary", "latin-1", "huge", "too-many-characters", "blank", "escape-sequence"],
)
def test_a_file_that_is_not_short_utf8_text_is_refused_in_one_line_naming_it(tmp_path: Path, content: bytes, says: str):
    path = tmp_path / "answer.bin"
    path.write_bytes(content)
    with pytest.raises(AttachmentError) as refused:
        read_attachment(path)
    message = str(refused.value)
    assert message.startswith(str(path)) and says in message and "\n" not in message


def test_a_missing_file_or_a_directory_is_refused_naming_it(tmp_path: Path):
    with pytest.raises(AttachmentError, match="no such file"):
        read_attachment(tmp_path / "missing.txt")
    with pytest.raises(AttachmentError, match="is a directory"):
        read_attachment(tmp_path)
