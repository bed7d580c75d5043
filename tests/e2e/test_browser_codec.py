"""With payloads encrypted, the Temporal Web UI pointed at `hitl codec-server` (`--ui-codec-endpoint`)
shows the case decoded, in a real browser, and Send an Update still decides it.

Temporal stores only ciphertext (checked in the raw history), so every readable word on the page
went through the codec server: the summary and static details (User Metadata), the start input,
the current details the live worker answers with. The reviewer's update goes out through the same
server (/encode) and the worker decrypts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page, expect
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from demo.examples import example
from gates.cases import CaseKind, CaseRequest
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES
from gates.trace import CaseResult
from hitl_temporal import CaseClient
from hitl_temporal.cli.codec_server import codec_app
from hitl_temporal.codec import ENCODING, KEY_ID_METADATA, EncryptionCodec, KeyRing, encrypted_converter, new_key
from tests.browser import chromium_context, ensure_chromium, open_send_an_update, screenshot, submit_update, wait_for_http
from tests.case_helpers import trace_row, wait_until_waiting
from tests.helpers import new_worker
from workers.client import DATA_CONVERTER, client_interceptors
from workers.devstack import dynamic_config_flags, free_port, temporal_binary

LOAD_MS = 30_000
STEP_MS = 15_000
expect.set_options(timeout=STEP_MS)
REASON = "Approved through the codec server"
RING = KeyRing.parse(f"ui-test:{new_key()}")


@dataclass(frozen=True)
class EncryptedUi:
    env: WorkflowEnvironment
    url: str
    decoded: list[str]  # the paths the UI called on the codec server


@pytest.fixture(scope="module")
def chromium() -> str:
    path, _seconds = ensure_chromium()
    return path


def _distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def encrypted_ui() -> AsyncIterator[EncryptedUi]:
    """A dev server with its UI pointed at a codec server over RING, and a client that encrypts with it."""
    port, ui_port, codec_port = _distinct_ports(3)
    ui_url = f"http://127.0.0.1:{ui_port}"
    calls: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler):
        calls.append(f"{request.method} {request.path}")
        return await handler(request)

    app = codec_app(EncryptionCodec(RING), ui_origins=[ui_url], namespace="default")
    app.middlewares.insert(0, count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", codec_port).start()
    try:
        async with await WorkflowEnvironment.start_local(
            ui=True,
            ui_port=ui_port,
            port=port,
            dev_server_existing_path=temporal_binary(),
            search_attributes=ALL_SEARCH_ATTRIBUTES,
            data_converter=encrypted_converter(DATA_CONVERTER, RING),
            interceptors=client_interceptors(),
            dev_server_extra_args=[
                "--ui-disable-news-fetch",
                "--ui-codec-endpoint",
                f"http://127.0.0.1:{codec_port}",
                *dynamic_config_flags(),
            ],
        ) as env:
            await wait_for_http(f"{ui_url}/api/v1/settings")
            yield EncryptedUi(env=env, url=ui_url, decoded=calls)
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.timeout(600)  # room for a first `apt-get install chromium`
async def test_the_ui_shows_an_encrypted_case_decoded_and_an_update_through_it_decides_the_case(
    chromium, encrypted_ui, world_pool, tmp_path: Path
):
    client = encrypted_ui.env.client
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-enc{uuid.uuid4().hex[:8]}")
    async with new_worker(client, world_pool) as worker:  # kept live: the UI's metadata query needs it
        cases = CaseClient(client, worker.task_queue)
        case_id = (await cases.start_case(request)).case_id
        handle = client.get_workflow_handle(case_id, result_type=CaseResult)
        await wait_until_waiting(handle)
        digest = (await cases.get_case(case_id)).gate.digest  # type: ignore[union-attr]
        await _assert_stored_encrypted(client, case_id, request)

        async with chromium_context(chromium) as context:
            page = await context.new_page()
            page.set_default_timeout(STEP_MS)
            try:
                await _read_the_case(page, encrypted_ui.url, case_id, request)
                await screenshot(page, tmp_path, "ui-encrypted-case.png")
                await _send_an_update(page, {"outcome": "approve", "reviewer": "fin_rev_ana", "reason": REASON, "digest": digest})
                await expect(page.get_by_test_id("execution-status")).to_have_text("Completed", timeout=LOAD_MS)
            except Exception:
                with contextlib.suppress(Exception):  # never hide the real failure
                    print(f"\nthe page when the test failed: {await screenshot(page, tmp_path, 'failure.png')}")
                raise
        result = await asyncio.wait_for(handle.result(), timeout=30)

    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", "fin_rev_ana", "update")
    row = await trace_row(world_pool, case_id)
    assert (row["decided_by"], row["decided_via"], row["reason"]) == ("fin_rev_ana", "update", REASON)
    assert "POST /decode" in encrypted_ui.decoded
    # The update the UI sent went through /encode: Temporal holds it encrypted too.
    history = await _raw_client(client).get_workflow_handle(case_id).fetch_history()
    [accepted] = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    [update_input] = accepted.workflow_execution_update_accepted_event_attributes.accepted_request.input.args.payloads
    assert update_input.metadata["encoding"] == ENCODING and b"fin_rev_ana" not in update_input.data


def _raw_client(client: Client) -> Client:
    config = client.config()
    config["data_converter"] = DATA_CONVERTER
    return Client(**config)


async def _assert_stored_encrypted(client: Client, case_id: str, request: CaseRequest) -> None:
    """What the UI will show decoded is ciphertext in Temporal: it can only have come through the codec server."""
    history = await _raw_client(client).get_workflow_handle(case_id).fetch_history()
    started = history.events[0]
    stored = [*started.workflow_execution_started_event_attributes.input.payloads, started.user_metadata.summary,
              started.user_metadata.details]  # fmt: skip
    for payload in stored:
        assert payload.metadata["encoding"] == ENCODING and payload.metadata[KEY_ID_METADATA] == b"ui-test"
        assert request.account.encode() not in payload.data


async def _read_the_case(page: Page, ui: str, case_id: str, request: CaseRequest) -> None:
    await page.goto(f"{ui}/namespaces/default/workflows/{quote(case_id, safe='')}", timeout=LOAD_MS)
    await expect(page.get_by_test_id("execution-status")).to_have_text("Running", timeout=LOAD_MS)
    # The start input (the Timeline tab's Input card), decoded: the request's own JSON.
    await expect(page.get_by_text(re.compile(r'"requested_discount_pct":\s*"28"')).first).to_be_visible(timeout=LOAD_MS)
    await expect(page.get_by_text(re.compile(r'"account":\s*"acme_enterprise"')).first).to_be_visible()

    await page.get_by_role("tab", name="User Metadata").click()
    summary = page.frame_locator("iframe#user-metadata-summary").locator("body")
    await expect(summary).to_contain_text(f"Finance: 28% renewal discount for acme_enterprise ({request.renewal})")
    details = page.frame_locator("iframe#user-metadata-details").locator("body")
    await expect(details).to_contain_text(f"Business key {request.business_key()}")
    await expect(details).to_contain_text("requested_discount_pct: 28")
    current_frame = page.frame_locator("iframe#user-metadata-current-details")
    await expect(current_frame.get_by_role("heading", name="Waiting")).to_be_visible(timeout=LOAD_MS)
    await expect(current_frame.locator("body")).to_contain_text("Send an Update → submit_decision")


async def _send_an_update(page: Page, decision: dict[str, str | None]) -> None:
    dialog = await open_send_an_update(page)
    await submit_update(page, dialog, decision)
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_text("Update successful").first).to_be_visible()
