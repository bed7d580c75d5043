"""The audit chain finds and names what an insider changes: edits, deletions, insertions,
reordering, a rewritten or truncated history (with a checkpoint), and traces edited after they
were recorded. Pure: rows are built with `chain_row` and tampered with in memory, as the rows of
`audit_events` would be with the trigger disabled."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gates.audit import (
    GENESIS,
    TRACE_DIGEST_KINDS,
    AuditEvent,
    AuditInputError,
    AuditKind,
    AuditRow,
    AuditScope,
    CheckpointInvalid,
    TraceRecord,
    chain_row,
    chain_rows,
    hash_entry,
    key_id,
    parse_checkpoint,
    sign_checkpoint,
    trace_event_body,
    verify_chain,
    verify_checkpoint,
)

T0 = datetime(2026, 9, 1, 9, 0, 0, 123456, tzinfo=UTC)
CASES = ("renewal-acme", "procurement-globex", "access-initech")
STEPS = (AuditKind.CASE_OPENED, AuditKind.GATE_OPENED, AuditKind.REMINDED, AuditKind.DECISION_ACCEPTED)


def event(case_id: str, kind: AuditKind, n: int, body: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(
        event_key=f"{case_id}#run-1/{kind}/{n}",
        case_id=case_id,
        kind=kind,
        at=T0 + timedelta(minutes=n),
        body={"n": n, "by": "fin_rev_ana"} if body is None else body,
    )


def append(rows: list[AuditRow], events: Sequence[AuditEvent]) -> list[AuditRow]:
    """`rows` followed by `events` chained after them, as the store would append them."""
    heads = {row.case_id: row for row in rows}
    return rows + chain_rows(events, case_heads=heads, global_head=rows[-1] if rows else None)


def interleaved_cases() -> list[AuditRow]:
    """Three cases whose events interleave in the global chain: 12 rows."""
    events = [event(case_id, kind, n) for n, kind in enumerate(STEPS) for case_id in CASES]
    return append([], events)


def trace(case_id: str = CASES[0], *, trace_id: int = 1, outcome: str = "approve", **changes: Any) -> TraceRecord:
    fields: dict[str, Any] = {
        "trace_id": trace_id,
        "decision_key": f"{case_id}#run-1",
        "case_id": case_id,
        "outcome": outcome,
        "decided_by": "fin_rev_ana",
        "decided_via": "update",
        "reason": "within the discount policy",
        "trace": {"decision_trace": "renewal_discount_exception", "entities": {"account": "acme"}, "amount": 1200.5},
    }
    return TraceRecord(**(fields | changes))


def with_trace(rows: list[AuditRow], record: TraceRecord, kind: AuditKind = AuditKind.TRACE_RECORDED) -> list[AuditRow]:
    return append(rows, [event(record.case_id, kind, 100 + len(rows), body=trace_event_body(record))])


def edited(row: AuditRow, **changes: Any) -> AuditRow:
    """The row as an insider's UPDATE leaves it: the columns changed, the stored hashes not."""
    return row.model_copy(update=changes)


def first_problem(rows: Sequence[AuditRow], **kwargs: Any) -> str:
    report = verify_chain(rows, **kwargs)
    assert not report.ok, "the change went unnoticed"
    return report.problems[0]


def names(row: AuditRow) -> str:
    return f"global_seq {row.global_seq} (case {row.case_id!r}, event_key {row.event_key!r})"


# ---------------------------------------------------------------------------------------------- a sound chain


def test_chain_built_row_by_row_verifies_and_reports_its_head():
    rows = interleaved_cases()
    record = trace()
    rows = with_trace(rows, record)

    report = verify_chain(rows, traces=[record])

    assert report.ok, report.problems
    assert (report.rows_checked, report.cases_checked, report.traces_checked) == (13, 3, 1)
    assert report.head == (13, rows[-1].row_hash)
    assert rows[0].case_prev == rows[0].global_prev == GENESIS
    assert [row.case_seq for row in rows if row.case_id == CASES[1]] == [1, 2, 3, 4]


def test_one_cases_rows_verify_on_their_own():
    rows = interleaved_cases()
    case_rows = [row for row in rows if row.case_id == CASES[2]]

    report = verify_chain(case_rows, scope=AuditScope.case(CASES[2]))

    assert report.ok, report.problems
    assert report.rows_checked == 4
    assert any("whole log" in note for note in report.notes)


def test_a_retried_append_after_the_head_is_the_same_row():
    rows = interleaved_cases()
    again = chain_row(event(CASES[0], AuditKind.ESCALATED, 50), case_head=rows[9], global_head=rows[-1])
    assert again == chain_row(event(CASES[0], AuditKind.ESCALATED, 50), case_head=rows[9], global_head=rows[-1])


def test_a_case_head_of_another_case_is_refused():
    rows = interleaved_cases()
    with pytest.raises(ValueError, match="case head is of case"):
        chain_row(event(CASES[0], AuditKind.ESCALATED, 50), case_head=rows[1], global_head=rows[-1])


# ---------------------------------------------------------------------------------------------- insider edits


def test_an_edited_body_value_is_named():
    rows = interleaved_cases()
    rows[6] = edited(rows[6], body={"n": 2, "by": "cfo_jane"})

    problem = first_problem(rows)

    assert problem.startswith(names(rows[6]))
    assert "edited" in problem


def test_an_edited_kind_is_named():
    rows = interleaved_cases()
    rows[9] = edited(rows[9], kind=AuditKind.DECISION_REFUSED)

    assert first_problem(rows).startswith(names(rows[9]))


def test_a_row_whose_kind_is_no_longer_a_kind_is_named_not_raised():
    """What the store reads from a row whose kind an insider set to anything at all."""
    rows: list[Any] = [row.model_dump() for row in interleaved_cases()]
    rows[4] = rows[4] | {"kind": "approved_by_cfo"}

    report = verify_chain(rows)

    assert not report.ok
    assert report.problems[0].startswith(
        f"global_seq 5 (case {CASES[1]!r}, event_key {rows[4]['event_key']!r}): not a valid row: kind"
    )
    assert len(report.problems) == 1, "the rows after it still hold"


def test_stored_rows_read_back_from_canonical_body_text_verify():
    rows = interleaved_cases()
    stored = [
        {k: v for k, v in row.model_dump().items() if k != "body"} | {"body_canonical": row.body_canonical, "recorded_at": T0}
        for row in rows
    ]
    assert verify_chain(stored).ok


def test_a_row_deleted_in_the_middle_is_named_by_the_row_after_the_gap():
    rows = interleaved_cases()
    deleted = rows.pop(5)

    problem = first_problem(rows)

    assert problem.startswith(names(rows[5]))
    assert f"row {deleted.global_seq} was deleted" in problem


def test_a_whole_case_deleted_is_found_in_the_global_chain():
    rows = interleaved_cases()
    survivors = [row for row in rows if row.case_id != CASES[1]]

    problem = first_problem(survivors)

    assert problem.startswith(names(rows[2]))  # the row after the deleted case's first row
    assert "row 2 was deleted" in problem


def test_the_first_row_of_a_case_deleted_is_named_in_the_case_chain_too():
    rows = interleaved_cases()
    case_rows = [row for row in rows if row.case_id == CASES[0]][1:]

    problem = first_problem(case_rows, scope=AuditScope.case(CASES[0]))

    assert problem.startswith(names(case_rows[0]))
    assert "has case_seq 2" in problem


@pytest.mark.parametrize("renumbered", [False, True], ids=["successors-kept", "successors-renumbered"])
def test_an_inserted_forged_row_is_named(renumbered: bool):
    """A row with its own hashes correctly computed, slipped in after row 6; the rows after it are
    not re-chained (kept as they are, or moved one place on to make room)."""
    rows = interleaved_cases()
    forged = chain_row(
        event(CASES[0], AuditKind.DECISION_ACCEPTED, 7, body={"by": "cfo_jane", "outcome": "approve"}),
        case_head=rows[3],
        global_head=rows[5],
    )
    after = [edited(row, global_seq=row.global_seq + 1) for row in rows[6:]] if renumbered else rows[6:]

    problem = first_problem(rows[:6] + [forged] + after)

    assert problem.startswith(names(after[0]))
    assert ("inserted" in problem) and (renumbered or forged.event_key in problem)


def test_two_adjacent_rows_stored_in_swapped_order_are_named_together():
    rows = interleaved_cases()
    swapped = rows[:4] + [rows[5], rows[4]] + rows[6:]

    report = verify_chain(swapped)

    assert report.problems == [f"{names(rows[5])}: stored before global_seq 5: the two rows were swapped"]


def test_two_rows_contents_exchanged_between_their_places_are_named():
    """The SQL way to reorder: each place (global_seq) gets the other row's columns."""
    rows = interleaved_cases()
    at_five, at_six = edited(rows[5], global_seq=5), edited(rows[4], global_seq=6)

    problem = first_problem(rows[:4] + [at_five, at_six] + rows[6:])

    assert problem.startswith(names(at_five))
    assert "holds the row made for global_seq 6" in problem


# ---------------------------------------------------------------------------------------------- checkpoints


def test_a_truncated_tail_is_caught_by_a_checkpoint_beyond_it():
    key = Ed25519PrivateKey.generate()
    rows = interleaved_cases()
    checkpoint = sign_checkpoint(key, rows[-1], T0 + timedelta(hours=1))
    assert verify_chain(rows[:9]).ok, "without a checkpoint, a shorter log is indistinguishable"

    problem = first_problem(rows[:9], checkpoint=checkpoint, public_key=key.public_key())

    assert "ends at global_seq 9" in problem
    assert "rows 10..12 were removed (truncated)" in problem


def test_history_rewritten_and_rechained_after_a_row_is_caught_only_by_the_checkpoint():
    key = Ed25519PrivateKey.generate()
    rows = interleaved_cases()
    checkpoint = sign_checkpoint(key, rows[-1], T0 + timedelta(hours=1))
    # the insider re-chains everything after row 7, with the refusal turned into an approval
    rewritten = append(
        rows[:7],
        [event(row.case_id, row.kind, n, body={"n": n, "by": "cfo_jane"}) for n, row in enumerate(rows[7:], start=20)],
    )

    assert verify_chain(rewritten).ok
    problem = first_problem(rewritten, checkpoint=checkpoint, public_key=key.public_key())
    assert problem.startswith(names(rewritten[-1]))
    assert "differs from the one the checkpoint signed" in problem and "rewritten" in problem


def test_a_checkpoint_verifies_with_its_key_only():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    rows = interleaved_cases()
    checkpoint = sign_checkpoint(key, rows[-1], T0)

    verify_checkpoint(checkpoint, key.public_key())
    assert checkpoint.key_id == key_id(key.public_key())
    with pytest.raises(CheckpointInvalid, match="not by the given key"):
        verify_checkpoint(checkpoint, other.public_key())
    moved = checkpoint.model_copy(update={"global_seq": 11})
    with pytest.raises(CheckpointInvalid, match="changed after signing"):
        verify_checkpoint(moved, key.public_key())
    report = verify_chain(rows, checkpoint=checkpoint, public_key=other.public_key())
    assert not report.ok and "not by the given key" in report.problems[0]


def test_a_checkpoint_file_reads_back_as_written():
    key = Ed25519PrivateKey.generate()
    checkpoint = sign_checkpoint(key, (12, "ab" * 32), datetime(2026, 9, 1, 11, 0, tzinfo=timezone(timedelta(hours=2))))

    parsed = parse_checkpoint(checkpoint.to_json_bytes())

    assert parsed == checkpoint
    assert parsed.signed_at == datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
    verify_checkpoint(parsed, key.public_key())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "checkpoint is not JSON"),
        (b"[1, 2]", "is a JSON list, not an object"),
        (b'{"format": "hitl-audit-bundle/1"}', "has format \"hitl-audit-bundle/1\"; expected format 'hitl-audit-checkpoint/1'"),
        (b'{"global_seq": 1}', "has no format field"),
        (b'{"format": "hitl-audit-checkpoint/1", "global_seq": 1}', "checkpoint: row_hash: missing"),
        (b'{"format": "hitl-audit-checkpoint/1", "global_seq": 1, "global_seq": 2}', 'duplicate key "global_seq"'),
        (b"\xff\xfe{}", "not UTF-8"),
        (b" " * 70_000, "a checkpoint is a few hundred"),
    ],
)
def test_a_bad_checkpoint_file_gets_one_line(data: bytes, message: str):
    with pytest.raises(AuditInputError) as refused:
        parse_checkpoint(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_checkpoint_with_a_wrong_type_or_an_extra_field_is_refused():
    good = sign_checkpoint(Ed25519PrivateKey.generate(), (3, "cd" * 32), T0).model_dump(mode="json")
    for changed, message in (
        (good | {"global_seq": "3"}, "global_seq: Input should be a valid integer"),
        (good | {"global_seq": True}, "global_seq: Input should be a valid integer"),
        (good | {"signed_at": "2026-09-01T09:00:00Z"}, "signed_at: Value error, timestamp must be written"),
        (good | {"by": "me"}, "by: is not a field of this format"),
        (good | {"signature": good["signature"][:-1] + "B"}, "signature: Value error, signature is not the canonical"),
    ):
        with pytest.raises(AuditInputError, match=message):
            parse_checkpoint(json.dumps(changed).encode())


# ---------------------------------------------------------------------------------------------- traces


def test_a_trace_whose_outcome_changed_is_named_with_its_trace_event():
    """`UPDATE decision_traces SET outcome='reject', decided_by='cfo_jane'`."""
    rows = with_trace(interleaved_cases(), trace())
    now = trace(outcome="reject", decided_by="cfo_jane")

    problem = first_problem(rows, traces=[now])

    assert problem.startswith(f"trace 1 (case {CASES[0]!r}, decision_key '{CASES[0]}#run-1')")
    assert f"recorded at global_seq 13 (event_key {rows[-1].event_key!r})" in problem


def test_a_trace_document_edited_is_found():
    rows = with_trace(interleaved_cases(), trace())
    now = trace(trace={"decision_trace": "renewal_discount_exception", "entities": {"account": "acme"}, "amount": 1.5})

    assert "the trace was edited" in first_problem(rows, traces=[now])


def test_a_trace_without_a_trace_event_is_found():
    rows = with_trace(interleaved_cases(), trace())
    smuggled = trace(CASES[1], trace_id=2)

    problem = first_problem(rows, traces=[trace(), smuggled])

    assert problem.startswith(f"trace 2 (case {CASES[1]!r}")
    assert "has no trace_recorded event" in problem


def test_a_deleted_trace_row_is_found_by_its_trace_event():
    rows = with_trace(interleaved_cases(), trace())

    problem = first_problem(rows, traces=[])

    assert problem.startswith("trace 1, recorded at global_seq 13")
    assert "the trace row was deleted" in problem


def test_an_amended_trace_matches_its_newest_trace_event_only():
    original = trace()
    amended = trace(trace=original.trace | {"late_addition": "the CFO's note"})
    rows = with_trace(with_trace(interleaved_cases(), original), amended, AuditKind.TRACE_AMENDED)

    assert verify_chain(rows, traces=[amended]).ok
    problem = first_problem(rows, traces=[original])
    assert f"recorded at global_seq 14 (event_key {rows[-1].event_key!r})" in problem


def test_a_trace_event_in_another_case_does_not_vouch_for_a_trace():
    record = trace()
    rows = append(interleaved_cases(), [event(CASES[1], AuditKind.TRACE_RECORDED, 99, body=trace_event_body(record))])

    assert "moved to another case" in first_problem(rows, traces=[record])


# ---------------------------------------------------------------------------------------------- canonical form


def _entry(body: dict[str, Any], at: datetime = T0) -> str:
    return hash_entry(case_id="c", case_seq=1, event_key="c/1", kind="reminded", at=at, body=body, case_prev=GENESIS)


def test_key_order_and_number_spelling_do_not_change_a_hash_and_a_changed_string_does():
    assert _entry({"a": 1, "b": {"x": 2.0, "y": [1.0, "z"]}}) == _entry({"b": {"y": [1, "z"], "x": 2}, "a": 1.0})
    assert _entry({"reviewer": "fin_rev_ana"}) != _entry({"reviewer": "fin_rev_anb"})
    assert _entry({"n": 1}) != _entry({"n": "1"})


def test_the_same_instant_in_any_time_zone_hashes_alike_and_a_microsecond_does_not():
    elsewhere = T0.astimezone(timezone(timedelta(hours=-5)))
    assert _entry({}, elsewhere) == _entry({})
    assert _entry({}, T0 + timedelta(microseconds=1)) != _entry({})


def test_an_event_is_stored_in_utc_with_its_body_in_canonical_form():
    submitted = AuditEvent(
        event_key="k", case_id="c", kind=AuditKind.REMINDED, at=T0.astimezone(timezone(timedelta(hours=9))), body={"x": 1.0}
    )
    assert submitted.at.tzinfo is UTC and submitted.at == T0
    assert submitted.body == {"x": 1} and isinstance(submitted.body["x"], int)
    assert submitted.model_dump(mode="json")["at"] == "2026-09-01T09:00:00.123456Z"


def test_an_integer_too_large_for_a_double_is_hashed_as_the_double_and_reads_back_alike():
    """RFC 8785 knows numbers as doubles; jsonb and body_canonical give such a number back as an integer."""
    row = chain_row(event("c", AuditKind.REMINDED, 1, body={"account": 2**60 + 1}), case_head=None, global_head=None)
    assert row.body == {"account": float(2**60)}
    stored = {k: v for k, v in row.model_dump().items() if k != "body"} | {"body_canonical": '{"account":1152921504606846977}'}
    assert verify_chain([stored]).ok


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "approved"}, "kind"),
        ({"at": datetime(2026, 9, 1, 9, 0)}, "time zone"),
        ({"body": {"x": float("nan")}}, "no canonical JSON form"),
        ({"body": {"x": "\ud800"}}, "no canonical JSON form"),
        ({"event_key": ""}, "event_key"),
        ({"case_id": "c" * 301}, "case_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_an_event_that_cannot_be_hashed_the_one_way_is_refused(changes: dict[str, Any], message: str):
    fields: dict[str, Any] = {"event_key": "k", "case_id": "c", "kind": "reminded", "at": T0, "body": {}}
    with pytest.raises(ValidationError, match=message):
        AuditEvent(**(fields | changes))


# ---------------------------------------------------------------------------------------------- any single change


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text())
JSON_BODY = st.dictionaries(
    st.text(max_size=8), st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3), max_leaves=6), max_size=4
)
CHAINS = st.lists(
    st.tuples(st.sampled_from(CASES), st.sampled_from([kind for kind in AuditKind if kind not in TRACE_DIGEST_KINDS]), JSON_BODY),
    min_size=1,
    max_size=8,
)


def _mutated(row: AuditRow, field: str, data: st.DataObject) -> AuditRow:
    """`row` with one field changed to a different value (one character of a text, one step of a number)."""
    value = getattr(row, field)
    if field == "kind":
        new: Any = data.draw(st.sampled_from([kind for kind in AuditKind if kind != value]))
    elif field == "at":
        new = value + timedelta(microseconds=data.draw(st.sampled_from([-1, 1, 10**6])))
    elif field == "body":
        new = value | {"injected": data.draw(JSON_LEAF)} if "injected" not in value else {}
    elif isinstance(value, int):
        new = max(1, value + data.draw(st.sampled_from([-1, 1]))) if value > 1 else value + 1
    else:
        position = data.draw(st.integers(0, len(value) - 1))
        replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != value[position]))
        new = value[:position] + replacement + value[position + 1 :]
    return row.model_copy(update={field: new})


@settings(max_examples=150, deadline=None)
@given(steps=CHAINS, data=st.data())
def test_any_single_change_to_any_row_of_a_chain_is_found(
    steps: list[tuple[str, AuditKind, dict[str, Any]]], data: st.DataObject
):
    rows = append([], [event(case_id, kind, n, body) for n, (case_id, kind, body) in enumerate(steps)])
    assert verify_chain(rows).ok
    index = data.draw(st.integers(0, len(rows) - 1))
    field = data.draw(st.sampled_from(list(AuditRow.model_fields)))
    tampered = list(rows)
    tampered[index] = _mutated(rows[index], field, data)

    report = verify_chain(tampered)

    assert not report.ok, f"{field} of row {index + 1} changed unnoticed"
