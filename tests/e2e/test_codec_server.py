"""`hitl codec-server` as the Web UI uses it, a real process on a real port: CORS lets the UI's
origin (and only it) call, /decode turns ciphertext back into the case's JSON, /encode encrypts
under the current key, and bad requests get a one-line 4xx."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload

from hitl_temporal.cli.codec_server import MAX_REQUEST_BYTES
from hitl_temporal.codec import EncryptionCodec, KeyRing, new_key
from tests.helpers import HITL, clean_env, wait_for_text
from workers.devstack import free_port

KEY_A, KEY_B = new_key(), new_key()
UI_ORIGIN = "http://localhost:18233"
OTHER_ORIGIN = "http://evil.example:8233"


@dataclass(frozen=True)
class CodecServer:
    url: str
    process: subprocess.Popen
    log: Path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def codec_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CodecServer]:
    """The server with key b current and a (an older key) still decrypting."""
    log = tmp_path_factory.mktemp("codec") / "codec-server.log"
    port = free_port()
    env = clean_env(HITL_CODEC_KEYS=f"b:{KEY_B},a:{KEY_A}")
    with open(log, "wb") as out:  # noqa: ASYNC230 -- the process outlives this block
        process = subprocess.Popen(  # noqa: ASYNC220
            [HITL, "codec-server", "--port", str(port), "--ui-origin", UI_ORIGIN], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        await wait_for_text(log, "codec server on", timeout=30, process=process)
        yield CodecServer(url=f"http://127.0.0.1:{port}", process=process, log=log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _as_json(payload: Payload) -> dict:
    return {
        "metadata": {key: base64.b64encode(value).decode() for key, value in payload.metadata.items()},
        "data": base64.b64encode(payload.data).decode(),
    }


def _from_json(item: dict) -> Payload:
    return Payload(
        metadata={key: base64.b64decode(value) for key, value in item.get("metadata", {}).items()},
        data=base64.b64decode(item.get("data", "")),
    )


CASE_JSON = {"account": "acme_enterprise", "renewal": "fy26", "requested_discount_pct": 28}
PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(CASE_JSON).encode())
UI_HEADERS = {"Origin": UI_ORIGIN, "X-Namespace": "default", "Content-Type": "application/json"}


async def _post(server: CodecServer, path: str, body: object, headers: dict[str, str] = UI_HEADERS) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"{server.url}{path}", content=content, headers=headers)


async def test_the_ui_origin_may_preflight_with_its_headers(codec_server: CodecServer):
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.options(
            f"{codec_server.url}/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    allowed = {name.strip() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-namespace"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "*" not in "".join(response.headers.values())


async def test_another_origin_is_refused_at_preflight_and_at_the_request(codec_server: CodecServer):
    async with httpx.AsyncClient(timeout=10) as http:
        preflight = await http.options(
            f"{codec_server.url}/decode", headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "POST"}
        )
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers

    [stored] = await EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).encode([PLAIN])
    response = await _post(codec_server, "/decode", {"payloads": [_as_json(stored)]}, {**UI_HEADERS, "Origin": OTHER_ORIGIN})
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.json()["error"] == f"origin {OTHER_ORIGIN!r} may not use this codec server (allowed: {UI_ORIGIN})"
    assert "acme_enterprise" not in response.text


async def test_decode_turns_a_payload_written_under_an_older_key_into_the_case_json(codec_server: CodecServer):
    [stored] = await EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).encode([PLAIN])
    assert b"acme_enterprise" not in stored.data

    response = await _post(codec_server, "/decode", {"payloads": [_as_json(stored), _as_json(PLAIN)]})

    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
    decoded, passed_through = (_from_json(item) for item in response.json()["payloads"])
    assert decoded.metadata["encoding"] == b"json/plain"
    assert json.loads(decoded.data) == CASE_JSON
    assert passed_through == PLAIN  # plain payloads (written before encryption was on) stay as they are


async def test_encode_encrypts_under_the_current_key_what_the_ui_sends(codec_server: CodecServer):
    decision = Payload(metadata={"encoding": b"json/plain"}, data=b'{"outcome": "approve", "reviewer": "fin_rev_ana"}')
    response = await _post(codec_server, "/encode", {"payloads": [_as_json(decision)]})
    assert response.status_code == 200, response.text
    [encoded] = (_from_json(item) for item in response.json()["payloads"])
    assert (encoded.metadata["encoding"], encoded.metadata["encryption-key-id"]) == (b"binary/encrypted", b"b")
    assert b"fin_rev_ana" not in encoded.data
    assert await EncryptionCodec(KeyRing.parse(f"b:{KEY_B}")).decode([encoded]) == [decision]


async def test_a_payload_under_an_unknown_key_is_a_422_naming_the_key_id(codec_server: CodecServer):
    [stored] = await EncryptionCodec(KeyRing.parse(f"old:{new_key()}")).encode([PLAIN])
    response = await _post(codec_server, "/decode", {"payloads": [_as_json(stored)]})
    assert response.status_code == 422
    assert response.json() == {"error": "payload encrypted with key 'old', which is not among the keys configured (b, a)"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "the request body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"", 400, "the request body is empty; expected a JSON object"),
        ([1, 2], 400, 'the request body must be a JSON object {"payloads": [...]}'),
        ({"payloads": "x"}, 400, 'the request body must be a JSON object {"payloads": [...]}'),
        ({"payloads": [{"data": "not base64!"}]}, 400, "not a payload: "),
        ({"payloads": [{"unknown": 1}]}, 400, "not a payload: "),
        (b"x" * (MAX_REQUEST_BYTES + 1), 413, f"the request body is over {MAX_REQUEST_BYTES} bytes"),
    ],
)
async def test_a_bad_request_gets_a_one_line_4xx(codec_server: CodecServer, body, status: int, error: str):
    response = await _post(codec_server, "/decode", body)
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert message.startswith(error) and "\n" not in message
    assert response.headers["Access-Control-Allow-Origin"] == UI_ORIGIN  # the UI can read why


async def test_another_namespace_is_refused(codec_server: CodecServer):
    response = await _post(codec_server, "/decode", {"payloads": []}, {**UI_HEADERS, "X-Namespace": "payments"})
    assert response.status_code == 403
    assert response.json()["error"] == "this codec server serves namespace 'default', not 'payments'"


async def test_the_banner_names_the_keys_by_id_only(codec_server: CodecServer):
    log = codec_server.log.read_text()
    assert f"for the Web UI at {UI_ORIGIN} (namespace default); key b encrypts, b, a decrypt" in log
    assert KEY_A not in log and KEY_B not in log


async def test_sigterm_stops_it_cleanly(tmp_path: Path):
    log = tmp_path / "codec-server.log"
    with open(log, "wb") as out:  # noqa: ASYNC230
        process = subprocess.Popen(  # noqa: ASYNC220
            [HITL, "codec-server", "--port", str(free_port())],
            env=clean_env(HITL_CODEC_KEYS=f"a:{KEY_A}"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_for_text(log, "codec server on", timeout=30, process=process)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_without_keys_it_refuses_to_start_in_one_line():
    result = subprocess.run([HITL, "codec-server"], env=clean_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hitl: hitl codec-server needs the payload keys: set HITL_CODEC_KEYS (id:<base64 of 32 bytes>,...)"
    )


def test_a_port_in_use_is_one_line(codec_server: CodecServer):
    port = codec_server.url.rsplit(":", 1)[1]
    env = clean_env(HITL_CODEC_KEYS=f"a:{KEY_A}")
    result = subprocess.run([HITL, "codec-server", "--port", port], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"hitl: port {port} is already in use; pick another with --port PORT"
