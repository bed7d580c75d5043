"""Hostile input at the command line, as a user runs it: case files for `hitl start` and the arguments of
`hitl approve | reject | request-info`. Each is refused with one line and exit 2, and nothing reaches
Temporal: no workflow is started, no update or signal is sent (checked on the real dev server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode

from demo.examples import EXAMPLES
from gates.cases import RenewalDiscountRequest
from hitl_temporal import CaseClient
from hitl_temporal.cli.case_files import MAX_CASE_FILE_BYTES, MAX_MESSAGE_CHARS
from tests.helpers import HITL, clean_env, run_hitl

RENEWAL = json.loads((EXAMPLES / "renewal_acme_fy26.json").read_text())


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a refused command (exactly one, no traceback, the expected exit code)."""
    assert result.returncode == code, f"exit {result.returncode}; stdout={result.stdout!r} stderr={result.stderr!r}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert "\x1b" not in lines[0], "an escape sequence reached the terminal"
    return lines[0]


@pytest.fixture
def env(temporal_env):
    """`hitl` pointed at the test dev server, on a task queue no worker polls (nothing may run anyway)."""
    return clean_env(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        HITL_TASK_QUEUE=f"hostile-{uuid.uuid4()}",
    )


async def assert_not_started(temporal_env, *case_ids: str) -> None:
    for case_id in case_ids:
        with pytest.raises(RPCError) as err:
            await temporal_env.client.get_workflow_handle(case_id).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND, f"{case_id} was started"


def renewal_payload() -> tuple[dict, str]:
    """The example renewal with a renewal period of its own (the dev server is shared), and its case ID."""
    payload = {**RENEWAL, "renewal": f"fy26-{uuid.uuid4().hex[:8]}"}
    return payload, RenewalDiscountRequest.model_validate(payload).case_id()


# --- case files ------------------------------------------------------------------------------------


def _body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


# (name, bytes of the file from the payload, the message after "hitl: <file>")
BAD_FILES = [
    ("not-utf8", lambda p: b"\xff\xfe" + _body(p), " is not UTF-8 text (byte 0xff at offset 0)"),
    ("latin1", lambda p: _body({**p, "justification": "caf\u00e9"}).replace(b"caf\\u00e9", b"caf\xe9"), None),
    ("empty", lambda p: b"", " is empty; expected a JSON object"),
    ("blank", lambda p: b" \n\t\n", " is empty; expected a JSON object"),
    ("bom-only", lambda p: b"\xef\xbb\xbf", " is empty; expected a JSON object"),
    (
        "duplicate-key",
        lambda p: _body(p)[:-1] + b', "account": "globex_corp"}',
        ': duplicate key "account": each key may appear once',
    ),
    ("nan", lambda p: _body(p)[:-1] + b', "requested_discount_pct": NaN}', ": NaN is not a JSON number"),
    ("deep", lambda p: b"[" * 40 + b"]" * 40, " is nested deeper than 32 levels"),
    (
        "array",
        lambda p: json.dumps([p]).encode(),
        ": expected a JSON object with the renewal_discount_exception fields, found a JSON array",
    ),
    (
        "string",
        lambda p: b'"renewal"',
        ": expected a JSON object with the renewal_discount_exception fields, found a JSON string",
    ),
    ("not-json", lambda p: b"{oops", " is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    ("trailing-garbage", lambda p: _body(p) + b"}", " is not valid JSON: Extra data at line 1 column"),
    (
        "huge",
        lambda p: _body({**p, "justification": "x" * (MAX_CASE_FILE_BYTES + 10)}),
        " is larger than 64 KiB; a case payload is a JSON object of a few hundred bytes",
    ),
    (
        "extra-field",
        lambda p: _body({**p, "priority": "high"}),
        ": invalid renewal_discount_exception case: priority: Extra inputs are not permitted",
    ),
    (
        "missing-field",
        lambda p: _body({k: v for k, v in p.items() if k != "requester"}),
        ": invalid renewal_discount_exception case: requester: Field required",
    ),
    (
        "nul-in-text",
        lambda p: _body({**p, "justification": "ok\u0000then"}),
        ": invalid renewal_discount_exception case: justification: "
        "Value error, text contains the control character ⟨U+0000⟩ at position 3",
    ),
    (
        "escape-in-text",
        lambda p: _body({**p, "justification": "\u001b[2Jcleared"}),
        ": invalid renewal_discount_exception case: justification: "
        "Value error, text contains the control character ⟨U+001B⟩ at position 1",
    ),
    (
        "invisible-text",
        lambda p: _body({**p, "justification": "\u200b\u200b"}),
        ": invalid renewal_discount_exception case: justification: Value error, text has no visible characters",
    ),
    (
        "unpaired-surrogate",
        lambda p: _body(p)[:-1] + b', "chat_thread": "\\ud800"}',
        None,  # refused by the field's type; the message is pydantic's
    ),
    (
        "bidi-key",
        lambda p: _body({**p, "account\u202e": "x"}),
        ": invalid renewal_discount_exception case: account⟨U+202E⟩: Extra inputs are not permitted",
    ),
    (
        "huge-number",
        lambda p: _body(p).replace(b'"28"', b"1e999"),
        ": invalid renewal_discount_exception case: requested_discount_pct: Input should be a finite number",
    ),
    (
        "three-decimals",
        lambda p: _body({**p, "requested_discount_pct": "28.125"}),
        ": invalid renewal_discount_exception case: requested_discount_pct: "
        "Decimal input should have no more than 2 decimal places",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
async def test_bad_case_file_is_one_line_and_starts_nothing(temporal_env, env, tmp_path: Path, name, content, message):
    payload, case_id = renewal_payload()
    path = tmp_path / f"{name}.json"
    path.write_bytes(content(payload))

    line = one_line_error(await run_hitl(env, "start", "renewal", "--file", str(path)))

    assert line.startswith(f"hitl: {path}"), line
    if message is not None:
        assert line.startswith(f"hitl: {path}{message}"), line
    elif name == "latin1":
        assert "is not UTF-8 text (byte 0xe9 at offset" in line, line
    else:
        assert "chat_thread" in line, line
    await assert_not_started(temporal_env, case_id, case_id.replace("acme_enterprise", "globex_corp"))


async def test_missing_directory_device_and_unreadable_paths_are_one_line_each(temporal_env, env, tmp_path: Path):
    missing, directory, a_file = tmp_path / "no-such.json", tmp_path / "cases", tmp_path / "notes.txt"
    directory.mkdir()
    a_file.write_text("not a directory")
    results = await asyncio.gather(
        run_hitl(env, "start", "renewal", "--file", str(missing)),
        run_hitl(env, "start", "renewal", "--file", str(directory)),
        run_hitl(env, "start", "renewal", "--file", "/dev/zero"),  # endless: read only up to the cap
        run_hitl(env, "start", "renewal", "--file", str(tmp_path / "two\nlines\x1b[2J.json")),
        run_hitl(env, "start", "renewal", "--file", f"{a_file}/case.json"),  # unreadable (even as root)
    )
    lines = [one_line_error(result) for result in results]
    assert lines == [
        f"hitl: {missing}: no such file",
        f"hitl: {directory} is a directory, not a case file",
        "hitl: /dev/zero is larger than 64 KiB; a case payload is a JSON object of a few hundred bytes",
        f"hitl: {tmp_path}/two⟨U+000A⟩lines⟨U+001B⟩[2J.json: no such file",
        f"hitl: {a_file}/case.json: cannot read: Not a directory",
    ]


async def test_case_file_with_a_byte_order_mark_starts_the_case(temporal_env, env, tmp_path: Path):
    """Editors on Windows write one; it is not part of the JSON."""
    payload, case_id = renewal_payload()
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(payload, indent=2).encode())
    try:
        started = await run_hitl(env, "start", "renewal", "--file", str(path), "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout) == {"case_id": case_id, "created": True}
    finally:
        await temporal_env.client.get_workflow_handle(case_id).terminate("test over")


# --- decision arguments ----------------------------------------------------------------------------

WRITES = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ADMITTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
}

REASON = "service-impact precedent"
BAD_DECISIONS = [
    (
        "zero-width-reason",
        "approve",
        "fin_rev_ana",
        "\u200b",
        "hitl: invalid decision: reason: Value error, text has no visible characters",
    ),
    (
        "escape-reason",
        "reject",
        "fin_rev_ana",
        "ok \x1b[31mred",
        "hitl: invalid decision: reason: Value error, text contains the control character ⟨U+001B⟩ at position 4",
    ),
    (
        "bell-reason",
        "request-info",
        "fin_rev_ana",
        "ring\x07",
        "hitl: invalid decision: reason: Value error, text contains the control character ⟨U+0007⟩ at position 5",
    ),
    ("blank-reason", "approve", "fin_rev_ana", " \t ", "hitl: invalid decision: reason: String should have at least 1 character"),
    (
        "huge-reason",
        "approve",
        "fin_rev_ana",
        "x" * 5000,
        "hitl: invalid decision: reason: String should have at most 4000 characters",
    ),
    (
        "spaces-as",
        "approve",
        "fin rev ana",
        REASON,
        "hitl: invalid decision: reviewer: String should match pattern '^[a-z0-9][a-z0-9_.@-]*$'",
    ),
    (
        "uppercase-as",
        "approve",
        "Fin_Rev_Ana",
        REASON,
        "hitl: invalid decision: reviewer: String should match pattern '^[a-z0-9][a-z0-9_.@-]*$'",
    ),
    (
        "unicode-as",
        "approve",
        "fín_rev_ana",
        REASON,
        "hitl: invalid decision: reviewer: String should match pattern '^[a-z0-9][a-z0-9_.@-]*$'",
    ),
    (
        "escape-as",
        "approve",
        "fin\x1b[2J",
        REASON,
        "hitl: invalid decision: reviewer: String should match pattern '^[a-z0-9][a-z0-9_.@-]*$'",
    ),
    ("huge-as", "approve", "a" * 500, REASON, "hitl: invalid decision: reviewer: String should have at most 80 characters"),
]


async def test_bad_decision_arguments_are_refused_and_nothing_is_sent(temporal_env, env):
    payload, case_id = renewal_payload()
    cases = CaseClient(temporal_env.client, env["HITL_TASK_QUEUE"])
    await cases.start_case(RenewalDiscountRequest.model_validate(payload))
    handle = temporal_env.client.get_workflow_handle(case_id)
    try:
        results = []
        for start in range(0, len(BAD_DECISIONS), 4):  # a few at a time: the machine is shared
            batch = BAD_DECISIONS[start : start + 4]
            results += await asyncio.gather(
                *(
                    run_hitl(env, command, case_id, "--as", reviewer, "--reason", reason)
                    for _, command, reviewer, reason, _ in batch
                )
            )
        for (name, *_, expected), result in zip(BAD_DECISIONS, results):
            assert one_line_error(result) == expected, name
        events = {event.event_type for event in (await handle.fetch_history()).events}
        assert not events & WRITES, "a refused decision reached the case"
    finally:
        await handle.terminate("test over")


def test_a_nul_in_an_argument_cannot_reach_the_command():
    """argv is NUL-terminated: the OS refuses such an argument before `hitl` runs (the Text type refuses it
    in the payloads that can carry it: files, signals, updates)."""
    with pytest.raises(ValueError, match="embedded null byte"):
        subprocess.run([HITL, "approve", "x", "--as", "fin_rev_ana", "--reason", "a\x00b"], capture_output=True, check=False)


async def test_a_case_argument_with_escape_sequences_is_shown_marked(temporal_env, env):
    unknown = await run_hitl(env, "approve", "\x1b[2Jrenewal\u202e", "--as", "fin_rev_ana", "--reason", REASON)
    assert one_line_error(unknown, code=1) == "hitl: no case matching ⟨U+001B⟩[2Jrenewal⟨U+202E⟩"
    huge = await run_hitl(env, "reject", "renewal_discount_exception:" + "x" * 5000, "--as", "fin_rev_ana", "--reason", REASON)
    line = one_line_error(huge, code=1)
    assert line.startswith("hitl: no case renewal_discount_exception:xxx") and line.endswith("x…"), line[:200]
    assert len(line) == len("hitl: ") + MAX_MESSAGE_CHARS
