"""Chromium for the dashboard's browser tests: Debian's build, driven by Playwright.

Screenshots go to `test-artifacts/` at the top of the repository, kept after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Tests run as root, where Chromium's sandbox cannot start; and the browser must not go looking
# for a proxy, nor reach any host but the collector's address (see `chromium`).
ARGS = ["--no-sandbox", "--no-proxy-server"]
WAIT_MS = 10_000  # how long a page may take to show what a step expects


def require_chromium() -> None:
    """Skip when Chromium is missing; under CI, fail instead."""
    if not CHROMIUM.exists():
        message = (
            f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def chromium(host: str) -> Iterator[Browser]:
    """Start a headless Chromium that can reach `host` (an address) and nothing else by name."""
    require_chromium()
    rules = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*ARGS, rules]
        )
        try:
            yield browser
        finally:
            browser.close()


def login(page: Page, base: str, name: str, password: str) -> None:
    """Log in through the form and wait for the overview."""
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#tiles")).to_be_visible(timeout=WAIT_MS)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as a test artefact; return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
