"""Real-browser helpers: Debian's Chromium driven by Playwright (async API), for the Temporal Web UI.

No `playwright install`: Playwright only brings its driver; the browser is Debian's `chromium`
package, installed here (as root, through apt-get) when it is missing. The facts these helpers
rely on (selectors, the long-polling page, blur before submit) are in the team's notes on testing
the Temporal Web UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Locator, Page, async_playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
# Headless, no sandbox (we run as root), nothing phoning home: the machine only reaches package registries.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# apt waits this long for another apt/dpkg (a parallel test run, an engineer) to release its lock.
APT_LOCK_WAIT_S = 120
APT_INSTALL_TIMEOUT_S = 200
APT_UPDATE_TIMEOUT_S = 90

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [apt_get, "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ensure_chromium() -> tuple[str, float]:
    """The path of Debian's Chromium, installing the package first when it is missing.

    Returns (path, seconds spent installing; 0 when it was there). Skips only when the browser is
    missing and we are not root (CI runs as root on a clean machine, so there it is installed).
    A failed install is retried once after `apt-get update`: a clean machine may have no package
    lists, or stale ones whose versions are gone from the mirror."""
    if CHROMIUM.exists():
        return str(CHROMIUM), 0.0
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root: `sudo apt-get install -y chromium`")
    started = time.monotonic()
    install = ("install", "-y", "chromium")
    result = _apt(*install, timeout=APT_INSTALL_TIMEOUT_S)
    if result.returncode != 0:
        if "dpkg --configure -a" in result.stderr + result.stdout:  # an earlier install was interrupted
            subprocess.run(["dpkg", "--configure", "-a"], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        update = _apt("update", timeout=APT_UPDATE_TIMEOUT_S)
        if update.returncode != 0:
            pytest.fail(f"apt-get update failed ({update.returncode}):\n{update.stderr[-2000:]}")
        result = _apt(*install, timeout=APT_INSTALL_TIMEOUT_S)
    if result.returncode != 0 or not CHROMIUM.exists():
        output = (result.stderr or result.stdout)[-2000:]
        pytest.fail(f"apt-get install -y chromium failed ({result.returncode}):\n{output}")
    return str(CHROMIUM), time.monotonic() - started


@contextlib.asynccontextmanager
async def chromium_context(executable: str, *, width: int = 1440, height: int = 1000) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a new, empty profile (removed afterwards), as one browser context."""
    profile = tempfile.mkdtemp(prefix="hitl-chromium-")
    try:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height},
                locale="en-US",
                timezone_id="UTC",
            )
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def wait_for_http(url: str, timeout: float = 30.0) -> None:
    """Poll until `url` answers 200 (the dev server reports ready before its UI may be listening)."""
    deadline = time.monotonic() + timeout
    last: object = None
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                response = await http.get(url)
                if response.status_code == 200:
                    return
                last = response.status_code
            except httpx.HTTPError as err:
                last = err
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout:.0f}s (last: {last!r})")


def screenshot_dir(fallback: Path) -> Path:
    """docs/ when HITL_UPDATE_SCREENSHOTS=1 (to refresh the README's pictures), else a test's tmp dir,
    so an ordinary test run does not rewrite tracked files."""
    return DOCS if os.environ.get("HITL_UPDATE_SCREENSHOTS") == "1" else fallback


async def screenshot(page: Page, directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    await page.screenshot(path=str(path), animations="disabled", caret="hide")
    return path


async def open_send_an_update(page: Page, update: str = "submit_decision", *, description: str | None = None) -> Locator:
    """More Actions -> Send an Update on the workflow page, with `update` picked in the dialog's
    select (whose option shows the update's `description`, checked when given); the dialog.

    The page's DOM also holds a hidden twin of the dialog: the role and name find the visible one."""
    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send an Update").click()
    dialog = page.get_by_role("dialog", name="Send an Update")
    await expect(dialog).to_be_visible()
    await dialog.get_by_test_id("update-select-button").click()
    option = dialog.get_by_role("option", name=re.compile(rf"^{re.escape(update)}"))
    if description is not None:
        await expect(option).to_contain_text(description)
    await option.click()
    return dialog


async def submit_update(page: Page, dialog: Locator, data: Mapping[str, object]) -> None:
    """Type `data` (as JSON) into the dialog's Data box and press Submit.

    Blur first: on blur the editor pretty-prints and grows, so a click on Submit while it has focus
    lands on the footer (the layout moves between mousedown and mouseup). The result (the dialog
    closing, or its one-line refusal) is the caller's to check."""
    editor = dialog.get_by_role("textbox", name="Data")
    await editor.fill(json.dumps(data))
    await page.keyboard.press("Tab")
    await expect(editor).to_contain_text(f'  "{next(iter(data))}"')
    await dialog.get_by_role("button", name="Submit", exact=True).click()  # not the "submit_decision" select
