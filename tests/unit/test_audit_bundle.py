"""The offline bundle: what `hitl audit export` writes verifies with no database, and fails
once any byte of it changes, once its signature is another key's, or when the key the auditor
trusts is not the bundle's. Bad files get one line, never a traceback."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.audit import (
    MAX_BUNDLE_BYTES,
    AuditBundle,
    AuditEvent,
    AuditInputError,
    AuditKind,
    AuditRow,
    bundle_bytes,
    bundle_document,
    chain_row,
    key_id,
    parse_bundle,
    public_key_pem,
    sign_checkpoint,
    verify_bundle,
)
from tests.unit.test_audit_chain import CASES, T0, append, event, interleaved_cases, trace, with_trace

KEY = Ed25519PrivateKey.generate()


def exported(rows: list[AuditRow], case_id: str = CASES[0], *, key: Ed25519PrivateKey = KEY, **changes: Any) -> dict[str, Any]:
    """The bundle of `case_id` over `rows`, with a checkpoint of the last row signed by `key`."""
    parts: dict[str, Any] = {
        "case_id": case_id,
        "traces": [trace(case_id)],
        "case_rows": [row for row in rows if row.case_id == case_id],
        "links": [row for row in rows if row.global_seq >= next(r.global_seq for r in rows if r.case_id == case_id)],
        "checkpoint": sign_checkpoint(key, rows[-1], T0 + timedelta(hours=1)),
        "public_key": key.public_key(),
    }
    return bundle_document(**(parts | changes))


def decided_log() -> list[AuditRow]:
    """Three interleaved cases, the first one's trace recorded, and one more row of another case after it."""
    rows = with_trace(interleaved_cases(), trace())
    return append(rows, [event(CASES[1], AuditKind.DECISION_ACCEPTED, 40)])


def small_log() -> list[AuditRow]:
    """The smallest realistic bundle: a case opened, decided and traced, with another case's row between."""
    rows = append([], [event(CASES[0], AuditKind.CASE_OPENED, 0), event(CASES[1], AuditKind.CASE_OPENED, 1)])
    return with_trace(rows, trace())


def test_an_exported_bundle_verifies_offline():
    report = verify_bundle(bundle_bytes(exported(decided_log())))

    assert report.ok, report.problems
    assert (report.rows_checked, report.cases_checked, report.traces_checked) == (14, 1, 1)
    assert report.head is not None and report.head[0] == 14
    assert any("bundle's own public key" in note for note in report.notes)


def test_a_bundle_verifies_against_the_key_the_auditor_trusts():
    report = verify_bundle(bundle_bytes(exported(decided_log())), trusted_public_key=KEY.public_key())

    assert report.ok, report.problems
    assert report.notes == [f"checkpoint checked against the trusted public key {key_id(KEY.public_key())}"]


def test_a_bundle_begins_at_the_cases_first_row():
    rows = decided_log()
    rows = append(rows, [event("late-case", AuditKind.CASE_OPENED, 50), event("late-case", AuditKind.CANCELLED, 51)])

    document = exported(rows, "late-case", traces=[])

    assert [link["global_seq"] for link in document["links"]] == [15, 16]
    assert verify_bundle(bundle_bytes(document)).ok


def test_every_single_byte_changed_makes_the_bundle_fail():
    """Each byte flipped in its lowest bit and in its letter case, and replaced by JSON whitespace
    (which changes no value: only the bundle's canonical spelling makes it count)."""
    data = bundle_bytes(exported(small_log()))
    passed = []
    for position in range(len(data)):
        for replacement in {data[position] ^ 0x01, data[position] ^ 0x20, *b" \t\r\n"} - {data[position]}:
            changed = bytearray(data)
            changed[position] = replacement
            try:
                if verify_bundle(bytes(changed)).ok:
                    passed.append((position, data[max(0, position - 20) : position + 20]))
            except AuditInputError as refused:
                assert "\n" not in str(refused)
    assert passed == []


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_a_larger_bundle_makes_it_fail(data: st.DataObject):
    original = LARGER_BUNDLE
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != original[position]))
    changed = bytearray(original)
    changed[position] = replacement
    try:
        report = verify_bundle(bytes(changed))
    except AuditInputError:
        return
    assert not report.ok, f"byte {position} changed to {replacement:#x} unnoticed"


LARGER_BUNDLE = bundle_bytes(exported(decided_log()))


def test_a_checkpoint_signed_by_another_key_fails():
    rows = decided_log()
    forged = sign_checkpoint(Ed25519PrivateKey.generate(), rows[-1], T0)

    report = verify_bundle(bundle_bytes(exported(rows, checkpoint=forged)))

    assert not report.ok
    assert report.problems[0].startswith(f"checkpoint was signed by key {forged.key_id}, not by the given key")


def test_a_bundle_rebuilt_and_signed_with_another_key_is_caught_by_the_trusted_key():
    """An insider re-signs a doctored bundle with a key of their own and ships its public key in it:
    it holds together, so only the key the auditor trusts shows it."""
    insider = Ed25519PrivateKey.generate()
    data = bundle_bytes(exported(decided_log(), key=insider))
    assert verify_bundle(data).ok

    report = verify_bundle(data, trusted_public_key=KEY.public_key())

    assert not report.ok
    assert report.problems[0] == (
        f"the bundle's public key ({key_id(insider.public_key())}) is not the trusted public key ({key_id(KEY.public_key())})"
    )


def test_a_checkpoint_older_than_the_cases_last_row_is_refused_at_export():
    rows = decided_log()
    early = sign_checkpoint(KEY, rows[5], T0)
    with pytest.raises(ValueError, match="before the case's last row 13: sign a newer one"):
        exported(rows, checkpoint=early)


def test_a_case_row_left_out_of_the_bundle_is_found():
    document = exported(decided_log())
    document["case_rows"].pop(1)

    report = verify_bundle(document)

    assert not report.ok
    assert "has case_seq 3 after the case's row 1" in report.problems[0]


def test_a_case_row_not_in_its_place_in_the_chain_proof_is_found():
    document = exported(decided_log())
    document["links"][3]["entry_hash"] = document["links"][4]["entry_hash"]  # global row 4 is a row of the case

    report = verify_bundle(document)

    assert not report.ok
    assert report.problems[0].endswith(
        "(case 'renewal-acme', event_key 'renewal-acme#run-1/gate_opened/1'): the chain proof's global row 4 is not this row"
    )


def test_another_cases_row_changed_in_the_chain_proof_is_found():
    document = exported(decided_log())
    document["links"][1]["entry_hash"] = document["links"][4]["entry_hash"]  # global row 2 is another case's

    report = verify_bundle(document)

    assert not report.ok
    assert report.problems == ["chain proof breaks at global row 2: its row_hash does not follow from the row before it"]


def test_a_reformatted_bundle_is_refused_as_edited():
    pretty = json.dumps(exported(small_log()), indent=2).encode()
    with pytest.raises(AuditInputError, match="not byte for byte as exported"):
        parse_bundle(pretty)


def _bundle_json(**changes: Any) -> bytes:
    document = exported(small_log()) | changes
    return json.dumps({k: v for k, v in document.items() if v is not None}, separators=(",", ":"), sort_keys=True).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "bundle is empty"),
        (b"\x89PNG\r\n\x1a\n", "bundle is not UTF-8 text (byte 0x89 at offset 0)"),
        (b"{'format': 1}", "bundle is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'"hitl-audit-bundle/1"', "bundle is a JSON str, not an object with format 'hitl-audit-bundle/1'"),
        (b'{"format":"hitl-audit-checkpoint/1"}', 'bundle has format "hitl-audit-checkpoint/1"; expected format'),
        (b'{"case_id":"x"}', "bundle has no format field"),
        (b'{"format":"hitl-audit-bundle/1","n":NaN}', "NaN is not a JSON number"),
        (b'{"format":"hitl-audit-bundle/1","format":"hitl-audit-bundle/1"}', 'duplicate key "format"'),
    ],
)
def test_a_file_that_is_not_a_bundle_gets_one_line(data: bytes, message: str):
    with pytest.raises(AuditInputError) as refused:
        verify_bundle(data)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"checkpoint": None}, "bundle: checkpoint: missing"),
        ({"signed_by": "cfo_jane"}, "bundle: signed_by: is not a field of this format"),
        ({"case_id": 7}, "bundle: case_id: Input should be a valid string"),
        ({"links": {"1": "x"}}, "bundle: links: Input should be a valid array"),
        ({"public_key_pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, "not a PEM public key"),
    ],
)
def test_a_bundle_with_missing_extra_or_mistyped_fields_gets_one_line(changes: dict[str, Any], message: str):
    with pytest.raises(AuditInputError) as refused:
        parse_bundle(_bundle_json(**changes))
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_bundle_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(AuditInputError, match="over the 64 MiB limit"):
        parse_bundle(b"[" * (MAX_BUNDLE_BYTES + 1))


def test_a_bundle_round_trips_to_the_same_document():
    document = exported(decided_log())
    assert parse_bundle(bundle_bytes(document)) == AuditBundle.model_validate(document)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_are_refused_with_our_error_only(data: bytes):
    with pytest.raises(AuditInputError):
        verify_bundle(data)


# ---------------------------------------------------------------------------------------------- the auditor's procedure

PROCEDURE = Path(__file__).parents[2] / "docs" / "audit-verification.md"


def _procedure_blocks() -> list[str]:
    """The fenced blocks of the auditor's procedure, in order."""
    fences = re.findall(r"^```\w*\n(.*?)^```", PROCEDURE.read_text(encoding="utf-8"), flags=re.DOTALL | re.MULTILINE)
    return [str(block) for block in fences]


def test_the_documented_example_hashes_are_what_the_code_computes():
    text = PROCEDURE.read_text(encoding="utf-8")
    entry_line = next(block.strip() for block in _procedure_blocks() if block.startswith('{"at":'))
    row_line = next(block.strip() for block in _procedure_blocks() if block.startswith('{"entry_hash":'))
    entry, row = json.loads(entry_line), json.loads(row_line)
    documented = re.findall(r"`(entry_hash|row_hash)` = `([0-9a-f]{64})`", text)

    computed = chain_row(
        AuditEvent(
            event_key=entry["event_key"], case_id=entry["case_id"], kind=entry["kind"], at=entry["at"], body=entry["body"]
        ),
        case_head=None,
        global_head=None,
    )

    assert documented == [("entry_hash", computed.entry_hash), ("row_hash", computed.row_hash)]
    assert hashlib.sha256(entry_line.encode()).hexdigest() == computed.entry_hash
    assert row == {"v": 1, "global_seq": 1, "global_prev": computed.global_prev, "entry_hash": computed.entry_hash}


def test_the_documented_standalone_check_agrees_with_the_verifier(tmp_path: Path):
    (script,) = (block for block in _procedure_blocks() if block.startswith("import base64"))
    (tmp_path / "check_bundle.py").write_text(script, encoding="utf-8")
    document = exported(decided_log())
    tampered = json.loads(json.dumps(document))
    tampered["traces"][0]["decided_by"] = "cfo_jane"
    (tmp_path / "good.json").write_bytes(bundle_bytes(document))
    (tmp_path / "tampered.json").write_text(json.dumps(tampered, indent=2), encoding="utf-8")
    (tmp_path / "key.pem").write_text(public_key_pem(KEY.public_key()), encoding="utf-8")
    (tmp_path / "other.pem").write_text(public_key_pem(Ed25519PrivateKey.generate().public_key()), encoding="utf-8")

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "check_bundle.py", *args], cwd=tmp_path, capture_output=True, text=True)

    assert check("good.json", "key.pem").returncode == 0
    assert "bundle holds: case renewal-acme, 5 rows" in check("good.json").stdout
    assert "InvalidSignature" in check("good.json", "other.pem").stderr
    assert "AssertionError: trace 1" in check("tampered.json").stderr
