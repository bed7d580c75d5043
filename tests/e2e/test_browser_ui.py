"""A reviewer decides a case in the Temporal Web UI, in a real browser.

Headless Chromium (Debian's package, driven by Playwright) opens a waiting renewal case on a dev
server started with its UI, reads the User Metadata the workflow publishes (summary, static
details, current details with who may decide and the JSON to send), sends the `decide` signal
through More Actions -> Send a Signal, and the decision lands in PostgreSQL as a trace. With a
worker in verified identity mode, More Actions -> Send an Update -> `submit_decision` shows each
refusal as its one line (no stack trace) and takes a decision that carries a proof and the digest.

HITL_UPDATE_SCREENSHOTS=1 writes the screenshots to docs/ (for the README); otherwise they go to
the test's tmp dir. On a failure, the page as it was is saved there too (path in the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from playwright.async_api import TimeoutError as PlaywrightTimeoutError
from temporalio.testing import WorkflowEnvironment

from activities.identity import LocalIssuer
from demo.examples import example
from gates.cases import CaseKind, CaseRequest
from gates.search_attributes import ALL_SEARCH_ATTRIBUTES
from gates.trace import CaseResult
from hitl_temporal import CaseClient
from tests.browser import (
    chromium_context,
    ensure_chromium,
    open_send_an_update,
    screenshot,
    screenshot_dir,
    submit_update,
    wait_for_http,
)
from tests.case_helpers import trace_row, wait_until_waiting
from tests.helpers import new_worker
from workers.client import DATA_CONVERTER, client_interceptors
from workers.config import Settings
from workers.devstack import dynamic_config_flags, free_port, temporal_binary

# Bounded waits (ms). The first page load compiles the UI's bundle and runs the metadata query.
# Waits on an outcome of the case (the status turning Completed after the signal, which needs the
# worker's `record_decision` to finish) get LOAD_MS: on a loaded machine that takes well over 5 s.
LOAD_MS = 30_000
STEP_MS = 15_000
# `expect(...)` has its own default (5 s), not the page's: every assertion polls up to STEP_MS.
expect.set_options(timeout=STEP_MS)
REASON = "Approved from the Temporal UI"
# The refusal of a decision without a proof, one line that says how to get one.
NEEDS_A_PROOF = re.compile(
    r"^\s*submit_decision needs a proof that you are fin_rev_ana: [^\n]*`hitl token --as fin_rev_ana`[^\n]*$"
)


@dataclass(frozen=True)
class UiServer:
    env: WorkflowEnvironment
    url: str


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> str:
    """Debian's Chromium; installed with apt-get (as root) when missing, so a clean CI machine gets it."""
    path, seconds = ensure_chromium()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if seconds and reporter is not None:
        reporter.write_line(f"\ninstalled Debian's chromium (apt-get install -y chromium) in {seconds:.1f}s")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ui_server():
    """A dev server of its own WITH the Web UI (the session's `temporal_env` runs without one)."""
    port = free_port()
    ui_port = free_port()
    while ui_port == port:
        ui_port = free_port()
    async with await WorkflowEnvironment.start_local(
        ui=True,
        ui_port=ui_port,
        port=port,
        dev_server_existing_path=temporal_binary(),
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        data_converter=DATA_CONVERTER,
        interceptors=client_interceptors(),
        dev_server_extra_args=["--ui-disable-news-fetch", *dynamic_config_flags()],
    ) as env:
        url = f"http://127.0.0.1:{ui_port}"
        await wait_for_http(f"{url}/api/v1/settings")
        yield UiServer(env=env, url=url)


@pytest.mark.slow
@pytest.mark.timeout(600)  # room for a first `apt-get install chromium` (~40 s); the test takes 20-30 s
async def test_reviewer_approves_a_renewal_from_the_temporal_web_ui(chromium, ui_server, world_pool, tmp_path: Path):
    shots = screenshot_dir(tmp_path)
    client = ui_server.env.client
    # a unique renewal period keeps this case apart from any other on the server
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-ui{uuid.uuid4().hex[:8]}")
    async with new_worker(client, world_pool) as worker:  # kept live: the UI's metadata query needs a worker
        case_id = (await CaseClient(client, worker.task_queue).start_case(request)).case_id  # static summary, details
        handle = client.get_workflow_handle(case_id, result_type=CaseResult)
        await wait_until_waiting(handle)

        async with chromium_context(chromium) as context:
            page = await context.new_page()
            page.set_default_timeout(STEP_MS)
            try:
                await _decide_in_the_ui(page, ui_server.url, case_id, request, shots)
            except Exception:
                with contextlib.suppress(Exception):  # never hide the real failure
                    print(f"\nthe page when the test failed: {await screenshot(page, tmp_path, 'failure.png')}")
                raise

        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", "fin_rev_ana", "signal")
    row = await trace_row(world_pool, case_id)
    assert (row["decided_by"], row["decided_via"], row["outcome"]) == ("fin_rev_ana", "signal", "approve")
    assert (row["gate"], row["reason"]) == ("finance", REASON)


async def _decide_in_the_ui(page: Page, ui: str, case_id: str, request: CaseRequest, shots: Path) -> None:
    # Not wait_until="networkidle": the page long-polls history and never goes idle.
    await page.goto(f"{ui}/namespaces/default/workflows/{quote(case_id, safe='')}", timeout=LOAD_MS)
    status = page.get_by_test_id("execution-status")
    await expect(status).to_have_text("Running", timeout=LOAD_MS)

    # User Metadata: each value is markdown rendered in its own iframe.
    metadata_tab = page.get_by_role("tab", name="User Metadata")
    await metadata_tab.click()
    summary = page.frame_locator("iframe#user-metadata-summary").locator("body")
    # code spans render as text
    await expect(summary).to_contain_text(f"Finance: 28% renewal discount for acme_enterprise ({request.renewal})")
    details = page.frame_locator("iframe#user-metadata-details").locator("body")
    await expect(details).to_contain_text(f"Business key {request.business_key()}")
    await expect(details).to_contain_text("requested_discount_pct: 28")
    current_frame = page.frame_locator("iframe#user-metadata-current-details")
    current = current_frame.locator("body")
    # current details come from the __temporal_workflow_metadata query, answered by the live worker
    await expect(current_frame.get_by_role("heading", name="Waiting")).to_be_visible(timeout=LOAD_MS)
    await expect(current).to_contain_text("Finance gate, level 1 of 3")
    await expect(current).to_contain_text(re.compile(r"May decide now: [^\n]*\bfin_rev_ana\b"))
    # identity asserted (new_worker's default): the update's JSON names the digest and needs no proof
    await expect(current).to_contain_text("Send an Update → submit_decision")
    await expect(current).to_contain_text(re.compile(r'"digest": "sha256:[0-9a-f]{64}"\s*\}'))
    await expect(current).to_contain_text("Tools that can only signal send the same data with Send a Signal → decide")
    await screenshot(page, shots, "ui-case-waiting.png")

    # More Actions -> Send a Signal -> `decide`, whose option carries the signal's description.
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")  # the DOM also holds a hidden twin
    await expect(dialog).to_be_visible()
    await dialog.get_by_test_id("signal-select-button").click()
    option = dialog.get_by_role("option", name=re.compile(r"^decide"))
    await expect(option).to_contain_text("Record a reviewer's decision")
    await screenshot(page, shots, "ui-choose-signal.png")
    await option.click()
    editor = dialog.get_by_role("textbox", name="Data")
    await editor.fill(json.dumps({"outcome": "approve", "reviewer": "fin_rev_ana", "reason": REASON}))
    # Blur before submitting: on blur the editor pretty-prints and grows, so a click on Submit while
    # it has focus lands on the footer (the layout moves between mousedown and mouseup).
    await page.keyboard.press("Tab")
    await expect(editor).to_contain_text('  "outcome"')
    await screenshot(page, shots, "ui-send-signal.png")
    await dialog.get_by_role("button", name="Submit").click()
    await expect(dialog).to_be_hidden()
    toast = page.locator("#workflow-signal-success-toast")
    await expect(toast).to_contain_text("Workflow signaled.")
    await expect(status).to_have_text("Completed", timeout=LOAD_MS)
    try:  # dismiss it: it would cover the screenshots below (it also hides by itself after a few seconds)
        await toast.get_by_role("button", name="Close").click(timeout=2000)
    except PlaywrightTimeoutError:
        pass
    await expect(toast).to_be_hidden()

    # Current Details is not refetched on its own; "R" refreshes it (the panel says so).
    await metadata_tab.click()
    await page.keyboard.press("r")
    await expect(current_frame.get_by_role("heading", name="Decided")).to_be_visible()
    await expect(current).to_contain_text(f"approve by fin_rev_ana (signal): {REASON}")
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    await screenshot(page, shots, "ui-case-decided.png")

    # Event History labels each activity with the summary the workflow gave it, down to the recording:
    # the opening read that asked the sources, the precedents read with the gate's roster and keys.
    await page.get_by_role("tab", name=re.compile(r"^Event History")).click()
    await page.get_by_role("button", name="Compact").click()
    opening = "read the start's summary and details, resolve the current renewal_discount_exception policy, ask crm, chat"
    await expect(page.get_by_text(opening, exact=True)).to_be_visible()
    precedents_and_gate = re.compile(r"^look up similar past decisions; who sits in finance_reviewers\b")
    await expect(page.get_by_text(precedents_and_gate)).to_be_visible()
    await expect(page.get_by_text("record approve by fin_rev_ana", exact=True)).to_be_visible()
    await screenshot(page, shots, "ui-case-history.png")


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_send_an_update_shows_each_refusal_as_one_line_and_takes_a_decision_with_proof_and_digest(
    chromium, ui_server, world_pool, tmp_path: Path
):
    """Verified identity, the Web UI's Send an Update -> submit_decision: the requester with a valid
    proof of their own is refused (separation of duties), a reviewer without a proof is refused, each
    as one line in the dialog while the case waits on; the reviewer's decision with a proof and the
    digest shown in Current Details completes the case."""
    shots = screenshot_dir(tmp_path)
    client = ui_server.env.client
    settings = Settings(_env_file=None, database_url=None, identity="verified", state_dir=tmp_path)
    issuer = LocalIssuer(tmp_path)  # the worker's local issuer: the same state dir, so the same key
    request = example(CaseKind.RENEWAL, human=True, renewal=f"fy26-ui{uuid.uuid4().hex[:8]}")
    async with new_worker(client, world_pool, settings=settings) as worker:
        cases = CaseClient(client, worker.task_queue)
        case_id = (await cases.start_case(request)).case_id
        handle = client.get_workflow_handle(case_id, result_type=CaseResult)
        await wait_until_waiting(handle)
        shown = (await cases.get_case(case_id)).gate
        assert shown is not None and shown.digest is not None

        async with chromium_context(chromium) as context:
            page = await context.new_page()
            page.set_default_timeout(STEP_MS)
            try:
                digest = await _open_send_an_update(page, ui_server.url, case_id)
                assert digest == shown.digest  # what `hitl show` prints is what the panel shows
                dialog = page.get_by_role("dialog", name="Send an Update")
                requester = request.requester

                await submit_update(page, dialog, _decision(requester, digest, issuer.mint(requester)))
                await _expect_one_line_refusal(dialog, f"{requester} requested this case and may not decide it")
                await _expect_still_waiting(page, cases, case_id)

                await submit_update(page, dialog, _decision("fin_rev_ana", digest, None))
                await _expect_one_line_refusal(dialog, NEEDS_A_PROOF)
                await screenshot(page, shots, "ui-update-refused.png")
                await _expect_still_waiting(page, cases, case_id)

                await submit_update(page, dialog, _decision("fin_rev_ana", digest, issuer.mint("fin_rev_ana")))
                await expect(dialog).to_be_hidden()
                await expect(page.get_by_text("Update successful").first).to_be_visible()
                await expect(page.get_by_test_id("execution-status")).to_have_text("Completed", timeout=LOAD_MS)
            except Exception:
                with contextlib.suppress(Exception):  # never hide the real failure
                    print(f"\nthe page when the test failed: {await screenshot(page, tmp_path, 'failure.png')}")
                raise

        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert (result.outcome, result.decided_by, result.decided_via) == ("approve", "fin_rev_ana", "update")
    row = await trace_row(world_pool, case_id)
    trace = json.loads(row["trace"]) if isinstance(row["trace"], str) else row["trace"]
    assert trace["identity"] == "verified" and trace["evidence_digest"] == digest
    assert (trace["decided_identity"]["person"], trace["decided_identity"]["issuer"]) == ("fin_rev_ana", "hitl-local")


def _decision(reviewer: str, digest: str, proof: str | None) -> dict[str, str]:
    decision = {"outcome": "approve", "reviewer": reviewer, "reason": REASON, "digest": digest}
    return decision | ({"proof": proof} if proof is not None else {})


async def _open_send_an_update(page: Page, ui: str, case_id: str) -> str:
    """Open the case, read the digest Current Details shows, and open Send an Update on `submit_decision`."""
    await page.goto(f"{ui}/namespaces/default/workflows/{quote(case_id, safe='')}", timeout=LOAD_MS)
    await expect(page.get_by_test_id("execution-status")).to_have_text("Running", timeout=LOAD_MS)
    await page.get_by_role("tab", name="User Metadata").click()
    current = page.frame_locator("iframe#user-metadata-current-details").locator("body")
    await expect(current).to_contain_text("Send an Update → submit_decision", timeout=LOAD_MS)
    await expect(current).to_contain_text('"proof": "<hitl token --as <your id>>"')
    found = re.search(r'"digest": "(sha256:[0-9a-f]{64})"', await current.inner_text())
    assert found, "Current Details shows no evidence digest"

    await open_send_an_update(page, description="Decide and get the result back")
    return found.group(1)


async def _expect_one_line_refusal(dialog, reason: str | re.Pattern[str]) -> None:
    """The dialog's alert is the refusal's one line and nothing else: no stack trace, no worker file path."""
    alert = dialog.get_by_role("alert").filter(has_text=re.compile(r"\S"))  # the name select's own alert is empty
    await expect(alert).to_have_text(reason)
    assert "\n" not in (await alert.inner_text()).strip()
    # the proof sent is shown in the Data box; base64url could hold ".py" by chance, so leave it out
    text = re.sub(r'"proof": "[^"]*"', '"proof": …', await dialog.inner_text())
    assert ".py" not in text and "Traceback" not in text, text


async def _expect_still_waiting(page: Page, cases: CaseClient, case_id: str) -> None:
    view = await cases.get_case(case_id)
    assert (view.state, view.decision) == ("waiting", None)
    await expect(page.get_by_test_id("execution-status")).to_have_text("Running")
