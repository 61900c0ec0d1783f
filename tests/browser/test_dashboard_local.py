"""The dashboard in Chromium against a collector on loopback: no lab needed, only the browser.

The collector runs as the user runs it (`sitewatch collector`), with no agent; its own pings
go to loopback only. Stopping it must not be held up by the open dashboard, the page must say
that its connection is lost, and after a restart (sessions are kept in the database) it must
carry on where it was, still logged in.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.chromium import WAIT_MS, chromium, login, screenshot
from tests.browser.conftest import EVIL_NAME, INVENTORY, PASSWORDS
from tests.deploy import Deployment, deploy, free_port


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium("127.0.0.1") as started:
        yield started


@pytest.fixture
def deployment(tmp_path: Path, hashes: dict[str, str]) -> Iterator[Deployment]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    users = (
        "users:\n"
        f"  - {{name: desk, role: operator, password_hash: '{hashes['desk']}'}}\n"
        f"  - {{name: screen, role: viewer, password_hash: '{hashes['screen']}'}}\n"
    )
    running = deploy(
        tmp_path, inventory, ["alpha"], f"127.0.0.1:{free_port()}", collector_extra=users
    )
    try:
        running.start_collector()
        yield running
    finally:
        running.stop_all()


def test_the_page_says_when_its_connection_drops_and_a_restart_keeps_the_login(
    deployment: Deployment, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        login(page, deployment.url, "screen", PASSWORDS["screen"])
        tiles = page.locator(".tile")
        expect(tiles).to_have_count(3)
        expect(page.locator('.tile[data-site="evil"] .tile-name')).to_have_text(EVIL_NAME)
        expect(page.locator('.tile[data-site="pound"]')).to_have_attribute(
            "data-status", "unmonitored"
        )
        expect(page.locator(".tile").last).to_have_attribute("data-site", "pound")  # the best
        banner = page.get_by_text("connection lost — retrying")
        expect(banner).to_be_hidden()
        expect(page.locator("#updated")).not_to_have_text("", timeout=WAIT_MS)

        # SIGTERM with the dashboard's stream open: the collector stops (within the 30 s that
        # Deployment.kill waits), and the page says it has lost the collector.
        assert deployment.kill("collector", signal.SIGTERM) == 0
        expect(banner).to_be_visible(timeout=WAIT_MS)
        screenshot(page, "dashboard-connection-lost")

        deployment.start_collector()
        expect(banner).to_be_hidden(timeout=WAIT_MS)  # the stream is back, on the same login
        page.reload()
        expect(tiles).to_have_count(3)
        expect(page).not_to_have_url(re.compile(r"/login"))
    finally:
        context.close()
