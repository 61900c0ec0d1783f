"""A link whose sources disagree, in Chromium: the site page shows each source and the conflict.

The scenario of issue 12: a site with an MPLS primary and a fibre backup has its primary cut.
The centre's pings of the primary's edge fail; the agent's ping of the primary's far end still
answers, over the backup. The page must say that the primary is down, list both sources, mark
the agent's reachability ping as not counted, and say that the sources disagree.

The collector's real app is served on loopback (port 0) from a thread of this process, as
`sitewatch collector` serves it; the agent posts its results to the real API, and the centre's
results go where its own sweep puts them (the store and the state book). Nothing is sent over
any network but loopback: the edges are never pinged, their results are written as a sweep
that got no answer would write them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web
from playwright.sync_api import Browser, expect

from collector.api import build_app
from collector.front import FrontRunner
from collector.service import Collector
from collector.store import CENTRE, Store
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from tests.browser.chromium import WAIT_MS, chromium, login, screenshot
from tests.browser.conftest import PASSWORDS

AGENT_TOKEN = "willow-agent-secret"  # noqa: S105 -- a test's own token
INVENTORY = """\
organisation: Test Municipality
timezone: Africa/Johannesburg
thresholds: {interval: 10s, timeout: 1s, fail_after: 2, recover_after: 1}
sites:
  - id: willow
    name: Willow & Vale <Offices>
    users: 5
    links:
      - {id: willow-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],
         edge: 127.0.0.2}
      - {id: willow-fibre, kind: fibre, role: backup, to: hub, probe: [127.0.0.1],
         edge: 127.0.0.3}
"""
Done = TypeVar("Done")


def write_config(folder: Path, hashes: dict[str, str]) -> Path:
    (folder / "inventory.yaml").write_text(INVENTORY)
    path = folder / "collector.yaml"
    token = hashlib.sha256(AGENT_TOKEN.encode()).hexdigest()
    path.write_text(
        "listen: 127.0.0.1:8080\n"
        f"database: {folder / 'collector.db'}\n"
        "inventory: inventory.yaml\n"
        f"agents:\n  - {{id: willow-01, site: willow, token_sha256: {token}}}\n"
        "users:\n"
        f"  - {{name: screen, role: viewer, password_hash: '{hashes['screen']}'}}\n"
    )
    return path


class Served:
    """The collector's app served from a thread with its own event loop."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = FrontRunner(build_app(collector), access_log=None)
        self.url = ""

    def run(self, work: Callable[[], Coroutine[object, object, Done]]) -> Done:
        """Run `work` on the server's loop (where the state book lives); return its result."""
        return asyncio.run_coroutine_threadsafe(work(), self.loop).result(timeout=30)

    def start(self) -> None:
        self.thread.start()

        async def listen() -> str:
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            host, port = self.runner.addresses[0][:2]
            return f"http://{host}:{port}"

        self.url = self.run(listen)

    def stop(self) -> None:
        self.run(self.runner.cleanup)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@contextmanager
def served(collector: Collector) -> Iterator[Served]:
    server = Served(collector)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def post_results(url: str, results: list[ProbeResult]) -> dict[str, object]:
    """Post an agent's batch to the real API, as the agent's shipper does."""
    body = {"results": [{"seq": n, "result": r.to_json()} for n, r in enumerate(results, 1)]}
    request = urllib.request.Request(  # noqa: S310 -- http to loopback only
        f"{url}/api/v1/agent/results",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {AGENT_TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 -- loopback
        reply: dict[str, object] = json.loads(answer.read())
    return reply


def centre_sweeps(server: Served, results: list[ProbeResult]) -> None:
    """Put the centre's results where its sweep puts them: the store, then the state book."""
    store, book = server.collector.store, server.collector.pipeline.book

    # the store takes writes from any thread
    first = store.results.next_sequence(CENTRE, len(results))
    store.results.ingest(
        CENTRE, tuple(enumerate(results, start=first)), received=server.collector.clock.now()
    )

    async def sweep() -> None:
        for result in results:
            book.observe("centre", result)

    server.run(sweep)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium("127.0.0.1") as started:
        yield started


def test_the_site_page_shows_a_cut_primary_its_evidence_and_the_conflict(
    tmp_path: Path, hashes: dict[str, str], browser: Browser
) -> None:
    config = load_collector_config(write_config(tmp_path, hashes))
    store = Store(tmp_path / "collector.db")
    try:
        with served(Collector(config, store)) as server:
            now = datetime.now(UTC)
            seconds = [now - timedelta(seconds=s) for s in (40, 30, 20, 10)]
            # the agent: both far ends answer all along (after the cut, over the backup)
            agent = [
                ProbeResult(link, "icmp", ts, True, rtt_ms=4.0, loss=0.0)
                for ts in seconds
                for link in ("willow-mpls", "willow-fibre")
            ]
            assert post_results(server.url, agent)["stored"] == len(agent)
            # the centre: the backup's edge answers; the primary's stops answering
            centre = [
                ProbeResult("willow-fibre", "icmp", ts, True, rtt_ms=5.0, loss=0.0)
                for ts in seconds
            ]
            centre += [
                ProbeResult("willow-mpls", "icmp", ts, ok, rtt_ms=5.0 if ok else None,
                            loss=0.0 if ok else 1.0, error_kind=None if ok else "timeout",
                            detail="" if ok else "127.0.0.2: no reply")
                for ts, ok in zip(seconds, (True, True, False, False), strict=True)
            ]  # fmt: skip
            centre_sweeps(server, centre)

            context = browser.new_context(viewport={"width": 1400, "height": 900})
            try:
                page = context.new_page()
                login(page, server.url, "screen", PASSWORDS["screen"])
                page.goto(f"{server.url}/sites/willow")
                expect(page.locator("h1")).to_contain_text("Willow & Vale <Offices>")
                primary = page.locator('tr[data-link="willow-mpls"]')
                expect(primary.locator(".pill")).to_have_text("down", timeout=WAIT_MS)
                evidence = page.locator('tr[data-evidence-of="willow-mpls"]')
                conflict = evidence.locator(".conflict")
                expect(conflict).to_be_visible()
                expect(conflict).to_contain_text("seen by centre: down")
                expect(conflict).to_contain_text("agent: reachable")
                centre_row = evidence.locator('tr[data-source="centre-ping"]')
                expect(centre_row).to_be_visible()
                expect(centre_row).to_contain_text("this link")
                expect(centre_row.locator(".pill")).to_have_text("down")
                expect(centre_row).to_contain_text("127.0.0.2: no reply")
                far_end = evidence.locator('tr[data-source="far-end-ping"]')
                expect(far_end).to_be_visible()
                expect(far_end).to_contain_text("reachability")
                expect(far_end.locator(".uncounted")).to_have_text("not counted")
                # the backup's sources agree: no conflict shown there
                expect(page.locator('tr[data-evidence-of="willow-fibre"] .conflict')).to_have_count(
                    0
                )
                screenshot(page, "site-link-evidence-conflict")
            finally:
                context.close()
    finally:
        store.close()
