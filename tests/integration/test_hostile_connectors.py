"""Hostile answers from the systems a case asks, against a real HTTP server on 127.0.0.1: a CRM (the
HTTP connector) and the advisory agent (OpenAI-compatible). Whatever they send, the worker reads a
bounded amount, never crashes or retries forever on content, and the case gets missing context with a
one-line reason (a human decides), a retry where the failure is transient, or no advice."""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from typing import Any

import pytest
from pydantic_core import to_json
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from activities.agent import MAX_RESPONSE_BYTES, AgentUnavailable, request_agent_advice
from activities.connectors import HttpConnector, TransientSourceError
from activities.connectors._http import MAX_ANSWER_BYTES
from activities.connectors._items import MAX_VALUE_JSON_BYTES
from gates.evidence import ConnectorResult, SourceRequest
from tests.helpers import local_http_server
from workers.config import Settings


@pytest.fixture(scope="module")
def server():
    with local_http_server() as running:
        yield running


@pytest.fixture
def crm_server(server: HTTPServer):
    server.clear()
    yield server
    server.clear()


def crm(items: list[str] | None = None) -> SourceRequest:
    return SourceRequest(source="crm", key={"account": "acme_enterprise"}, items=items or ["tier", "contract_terms"])


async def fetch(server: HTTPServer, request: SourceRequest | None = None, timeout: float = 5.0) -> ConnectorResult:
    return await HttpConnector(server.url_for("/api/"), timeout).fetch(request or crm())


def errors(result: ConnectorResult) -> dict[str, str]:
    return {m.item: m.error for m in result.missing}


def values(result: ConnectorResult) -> dict[str, Any]:
    return {e.item: e.value for e in result.items}


def assert_storable_one_line(result: ConnectorResult) -> None:
    """What PostgreSQL and a terminal can take: no NUL or surrogate anywhere, every reason one line."""
    text = to_json(result.model_dump()).decode()  # raises on an unpaired surrogate
    assert "\\u0000" not in text
    for missing in result.missing:
        assert "\n" not in missing.error and "\x1b" not in missing.error and len(missing.error) <= 500


# 64 KiB chunks a server may write before a client that stopped reading closes the connection: 16 MiB.
STOPPED_READING_CHUNKS = 256


def respond_bytes(server: HTTPServer, body: bytes, **headers: str) -> None:
    response = Response(body, content_type=headers.pop("content_type", "application/json"), headers=headers)
    server.expect_request("/api/crm").respond_with_response(response)


# --- the CRM: bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"items": {"tier": "caf\xe9"}}', "malformed answer from crm: body is not UTF-8 text (byte 0xe9 at offset 23)"),
        (
            b'{"items": {"tier": "growth", "tier": "enterprise"}}',
            'malformed answer from crm: body: duplicate key "tier": each key may appear once',
        ),
        (
            b'{"items": {"tier": "growth"}, "items": {}}',
            'malformed answer from crm: body: duplicate key "items": each key may appear once',
        ),
        (b'{"items": {"contract_terms": NaN, "tier": "growth"}}', "malformed answer from crm: body: NaN is not a JSON number"),
        (
            b'{"items": {"tier": ' + b"[" * 100 + b"]" * 100 + b"}}",
            "malformed answer from crm: body is nested deeper than 32 levels",
        ),
        (b"", "malformed answer from crm: body is empty; expected a JSON object"),
        (b"\x1b[2J<html>", "malformed answer from crm: not JSON: ⟨U+001B⟩[2J<html>"),
        (
            b'{"items": {"tier": "x"}, "ref": "javascript:alert(1)"}',
            "malformed answer from crm: ref 'javascript:alert(1)' is neither an http(s) URL nor a record id",
        ),
        (
            b'{"items": {"tier": "x"}, "ref": "other:acme"}',
            "malformed answer from crm: ref 'other:acme' is neither an http(s) URL nor a record id",
        ),
        (
            b'{"items": {"tier": "x"}, "ref": "https://crm.example/acme\\u202e"}',
            "malformed answer from crm: ref contains spaces or hidden characters",
        ),
        (
            b'{"items": {"tier": "x"}, "ref": "https://crm.example/a b"}',
            "malformed answer from crm: ref contains spaces or hidden characters",
        ),
        (b'{"items": {"tier": "x"}, "ref": "https://u:p@crm.example/"}', "malformed answer from crm: ref has credentials in it"),
        (
            b'{"items": {"tier": "x"}, "ref": "https://crm.example/' + b"a" * 5000 + b'"}',
            "malformed answer from crm: ref is 5020 characters; at most 2048",
        ),
        (b'{"items": {"tier": "x"}, "ref": "\\ud800"}', "malformed answer from crm: ref contains spaces or hidden characters"),
    ],
    ids=[
        "not-utf8", "duplicate-item", "duplicate-envelope", "nan", "deep", "empty", "escape-in-body", "javascript-ref",
        "not-a-url-ref", "bidi-ref", "space-ref", "credentials-ref", "huge-ref", "surrogate-ref",
    ],
)
async def test_an_answer_we_cannot_take_makes_every_item_missing_with_the_reason(crm_server, body, expected):
    respond_bytes(crm_server, body)
    result = await fetch(crm_server)
    assert result.items == []
    assert set(errors(result)) == {"tier", "contract_terms"}
    for error in errors(result).values():
        assert error.startswith(expected), error
    assert_storable_one_line(result)


async def test_a_record_id_ref_is_kept_like_a_url(crm_server):
    """`crm:acme` says where a human finds the record (the demo world's connector gives such refs)."""
    respond_bytes(crm_server, b'{"items": {"tier": "x", "contract_terms": "net30"}, "ref": "crm:acme"}')
    result = await fetch(crm_server)
    assert {e.ref for e in result.items} == {"crm:acme"} and not result.missing


async def test_a_body_over_the_cap_is_missing_context_without_reading_it_all(crm_server):
    sent: list[int] = []

    def endless(_: Request) -> Response:
        def chunks():
            yield b'{"items": {"contract_terms": "'
            for _ in range(4096):  # 256 MiB if anyone read it all
                sent.append(1)
                yield b"x" * 65536

        return Response(chunks(), content_type="application/json")  # no Content-Length: chunked

    crm_server.expect_request("/api/crm").respond_with_handler(endless)
    result = await fetch(crm_server)
    assert errors(result) == dict.fromkeys(["tier", "contract_terms"], "answer too large: crm sent more than 256 KiB")
    await asyncio.sleep(0.2)
    # the server writes ahead into socket buffers (several MiB on a loaded loopback), so "stopped
    # reading" is far below the 256 MiB on offer, not at the 256 KiB cap itself
    assert len(sent) < STOPPED_READING_CHUNKS, f"{len(sent) * 64} KiB were sent: the connector kept reading"


async def test_a_declared_length_over_the_cap_is_refused_before_the_body(crm_server):
    respond_bytes(crm_server, b" " * (MAX_ANSWER_BYTES + 1))
    assert set(errors(await fetch(crm_server)).values()) == {"answer too large: crm sent more than 256 KiB"}


async def test_a_compressed_body_is_capped_after_decompression(crm_server):
    """10 MiB of JSON whitespace in 10 KiB of gzip: the cap is on what would be parsed."""
    respond_bytes(crm_server, gzip.compress(b" " * (10 * 1024 * 1024) + b'{"items": {}}'), **{"Content-Encoding": "gzip"})
    assert set(errors(await fetch(crm_server)).values()) == {"answer too large: crm sent more than 256 KiB"}


async def test_a_source_dripping_its_body_times_out_as_transient(crm_server):
    """Each chunk arrives well within httpx's per-read timeout; the whole exchange does not."""
    release = threading.Event()

    def drip(_: Request) -> Response:
        def chunks():
            for _ in range(50):
                yield b" "
                if release.wait(0.2):
                    return
            yield b'{"items": {"tier": "late"}}'

        return Response(chunks(), content_type="application/json")

    crm_server.expect_request("/api/crm").respond_with_handler(drip)
    started = time.monotonic()
    try:
        with pytest.raises(TransientSourceError, match=r"crm did not answer within 0.6s"):
            await fetch(crm_server, timeout=0.6)
    finally:
        release.set()
    assert time.monotonic() - started < 2.0


async def test_a_5xx_with_a_huge_hostile_body_is_transient_with_a_short_marked_excerpt(crm_server):
    crm_server.expect_request("/api/crm").respond_with_data(b"\x1b]0;owned\x07" + b"E" * 1024 * 1024, status=503)
    with pytest.raises(TransientSourceError) as raised:
        await fetch(crm_server)
    message = str(raised.value)
    assert message.startswith("crm unavailable: HTTP 503 from") and "(a body over 4 KiB, not shown)" in message
    assert "\x1b" not in message and len(message) < 500


async def test_a_4xx_body_is_quoted_marked_and_bounded(crm_server):
    crm_server.expect_request("/api/crm").respond_with_data("bad key\x1b[2J\u202e" + "y" * 1000, status=400)
    error = errors(await fetch(crm_server))["tier"]
    assert error.startswith("crm refused the request: HTTP 400: bad key⟨U+001B⟩[2J⟨U+202E⟩yyy") and error.endswith("…")
    assert len(error) <= 500


# --- the CRM: values -------------------------------------------------------------------------------


async def test_a_value_over_8_kib_is_missing_as_too_large_and_the_rest_is_kept(crm_server):
    crm_server.expect_request("/api/crm").respond_with_json(
        {"items": {"tier": "enterprise", "contract_terms": "z" * (MAX_VALUE_JSON_BYTES + 1)}, "ref": "https://crm.example/acme"}
    )
    result = await fetch(crm_server)
    assert values(result) == {"tier": "enterprise"}
    size = MAX_VALUE_JSON_BYTES + 3  # the quotes
    assert errors(result) == {
        "contract_terms": f"answer too large: contract_terms from crm is {size:,} bytes of JSON; at most 8 KiB"
    }


async def test_nul_and_unpaired_surrogates_are_kept_as_evidence_made_storable(crm_server):
    """Kept, not dropped: the rest of the text is still evidence; U+FFFD shows the reviewer where it was."""
    respond_bytes(crm_server, b'{"items": {"tier": "enter\\u0000prise", "contract_terms": "net 30 \\ud83d days"}}')
    result = await fetch(crm_server)
    assert result.missing == []
    assert values(result) == {"tier": "enter\ufffdprise", "contract_terms": "net 30 \ufffd days"}
    assert_storable_one_line(result)


async def test_a_chat_thread_with_hostile_strings_is_kept_storable(crm_server):
    thread = (
        b'{"channel": "#deal\\u0000desk", "title": "\\udc00t", "messages": 2, "participants": ["a\\ud800"],'
        b' "approval_stated_by": null, "customer_commitment": "\\u001b[2J promise", "last_message_at": null}'
    )
    crm_server.expect_request("/api/chat").respond_with_response(
        Response(b'{"items": {"t1": ' + thread + b"}}", content_type="application/json")
    )
    request = SourceRequest(source="chat", key={"thread": "t1"}, items=["t1"])
    result = await fetch(crm_server, request)
    found = values(result)["t1"]
    assert (found["channel"], found["title"], found["participants"]) == ("#deal\ufffddesk", "\ufffdt", ["a\ufffd"])
    assert found["customer_commitment"] == "\x1b[2J promise"  # kept as sent: the brief shows it marked
    assert_storable_one_line(result)


async def test_a_number_beyond_float_range_is_missing_not_infinity(crm_server):
    """`1e999` is valid JSON and decodes to inf, which no rule can compare and jsonb cannot store."""
    respond_bytes(crm_server, b'{"items": {"tier": "growth", "enterprise_arr": 1e999, "contract_terms": "net 30"}}')
    result = await fetch(crm_server, crm(["tier", "enterprise_arr", "contract_terms"]))
    assert values(result) == {"tier": "growth", "contract_terms": "net 30"}
    assert errors(result) == {"enterprise_arr": "malformed answer from crm: enterprise_arr: a number too large to be finite"}


async def test_thousands_of_unasked_items_are_ignored(crm_server):
    crm_server.expect_request("/api/crm").respond_with_json(
        {"items": {f"extra_{i}": i for i in range(5000)} | {"tier": "growth"}}
    )
    result = await fetch(crm_server)
    assert values(result) == {"tier": "growth"} and errors(result) == {"contract_terms": "not returned by crm"}


# --- the agent -------------------------------------------------------------------------------------

LABELS = ["crm: tier"]
GOOD = {"summary_markdown": "Fine.", "proposed_outcome": "needs_human", "rationale": "Because.", "cited_evidence": ["crm: tier"]}


def completion(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


async def advise(server: HTTPServer) -> None:
    settings = Settings(_env_file=None, agent_base_url=server.url_for("/v1"), agent_timeout_seconds=5.0)
    await request_agent_advice(settings, brief_markdown="brief", evidence_labels=LABELS, policy_findings=[])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff" + json.dumps(completion(json.dumps(GOOD))).encode(), "agent response is not UTF-8 text (byte 0xff at offset 0)"),
        (b'{"choices": [], "choices": []}', 'agent response: duplicate key "choices": each key may appear once'),
        (b'{"choices": [' + b"[" * 40 + b"]" * 40 + b"]}", "agent response is nested deeper than 32 levels"),
        (
            json.dumps(completion('{"proposed_outcome": "approve", "proposed_outcome": "reject"}')).encode(),
            'agent answer: duplicate key "proposed_outcome"',
        ),
        (json.dumps(completion('{"summary_markdown": NaN}')).encode(), "agent answer: NaN is not a JSON number"),
        (
            json.dumps(completion(json.dumps({**GOOD, "summary_markdown": "ok\u0000"}))).encode(),
            "agent answer failed validation: summary_markdown: Value error, text contains the control character ⟨U+0000⟩",
        ),
        (
            json.dumps(completion(json.dumps({**GOOD, "rationale": "\u001b[2Jwipe"}))).encode(),
            "agent answer failed validation: rationale: Value error, text contains the control character ⟨U+001B⟩",
        ),
        (
            json.dumps(completion(json.dumps({**GOOD, "rationale": "\u200b"}))).encode(),
            "agent answer failed validation: rationale: Value error, text has no visible characters",
        ),
        (
            json.dumps(completion(json.dumps({**GOOD, "cited_evidence": ["crm: tier"] * 51}))).encode(),
            "agent answer failed validation: cited_evidence: List should have at most 50 items",
        ),
        (
            json.dumps(completion(json.dumps({**GOOD, "cited_evidence": ["x" * 201]}))).encode(),
            "agent answer failed validation: cited_evidence.0: String should have at most 200 characters",
        ),
        (
            json.dumps(completion("\u001b]0;owned\u0007 not json")).encode(),
            "agent answer is not JSON (Expecting value at line 1 column 1): '\\x1b]0;owned\\x07 not json'",
        ),
    ],
    ids=[
        "not-utf8", "duplicate-key", "deep", "duplicate-in-answer", "nan-in-answer", "nul-in-summary", "escape-in-rationale",
        "invisible-rationale", "too-many-citations", "huge-citation", "escape-in-non-json",
    ],
)
async def test_an_agent_answer_we_cannot_take_is_no_advice_with_one_line(server, body, expected):
    server.clear()
    server.expect_request("/v1/chat/completions", method="POST").respond_with_response(
        Response(body, content_type="application/json")
    )
    with pytest.raises(AgentUnavailable) as raised:
        await advise(server)
    message = str(raised.value)
    assert message.startswith(expected), message
    assert "\n" not in message and "\x1b" not in message


async def test_an_agent_answer_over_the_cap_is_not_read_whole(server):
    server.clear()
    sent: list[int] = []

    def endless(_: Request) -> Response:
        def chunks():
            yield b'{"choices": [{"message": {"content": "'
            for _ in range(4096):
                sent.append(1)
                yield b"x" * 65536

        return Response(chunks(), content_type="application/json")

    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(endless)
    with pytest.raises(AgentUnavailable, match=f"agent response too large: more than {MAX_RESPONSE_BYTES // 1024} KiB"):
        await advise(server)
    await asyncio.sleep(0.2)
    assert len(sent) < STOPPED_READING_CHUNKS, f"{len(sent) * 64} KiB were sent: the agent client kept reading"
