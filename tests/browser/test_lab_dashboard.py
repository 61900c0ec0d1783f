"""The dashboard in Chromium on the lab: live tiles, an incident worked by an operator, roles.

The fast example inventory (1 s interval) with agents in their site namespaces and the
collector on the hub, with two dashboard users: an operator and a viewer. The page is never
reloaded while the network changes: every wait is on the page's DOM, with a deadline.
Screenshots of the overview and of an incident page are kept in test-artifacts/.

The login rate limit counts failures per client address, and every request of these tests
comes from the hub's address: the test of the limit runs last, and no login follows it.

The module runs twice, its collector on SQLite and then on PostgreSQL (ids `sqlite`,
`postgresql`): the collector fixture is parametrised, not the tests, and each run is a fresh
collector with its own database, so the second starts with no failed logins counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.chromium import WAIT_MS, chromium, login, screenshot
from tests.browser.conftest import PASSWORDS
from tests.conftest import BACKENDS
from tests.deploy import Deployment, collector_database, on_lab
from tests.lab import Lab, wait_until
from tests.test_lab_pipeline import monitored

pytestmark = pytest.mark.lab
PORT = 18_082
DOWN_RED = "rgb(198, 40, 40)"  # --down in dashboard.css
OUTAGE_MS = 30_000  # a cut link seen, correlated and pushed to the page
RECOVERY_MS = 60_000


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(
    request: pytest.FixtureRequest,
    lab: Lab,
    hashes: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("dashboard")
    users = (
        "users:\n"
        f"  - {{name: desk, role: operator, password_hash: '{hashes['desk']}'}}\n"
        f"  - {{name: screen, role: viewer, password_hash: '{hashes['screen']}'}}\n"
    )
    with (
        collector_database(request, "lab_dashboard") as database,
        on_lab(lab, folder, PORT, collector_extra=users, database=database) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Browser]:
    with chromium(str(lab.plan.hub_address)) as started:
        yield started


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile: no cookies."""
    opened = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield opened
    finally:
        opened.close()


def test_every_site_has_a_tile(deployment: Deployment, lab: Lab, context: BrowserContext) -> None:
    page = context.new_page()
    login(page, deployment.url, "desk", PASSWORDS["desk"])
    sites = deployment.api("/api/v1/sites")
    expect(page.locator(".tile")).to_have_count(len(sites))
    for site in sites:
        card = page.locator(f'.tile[data-site="{site["id"]}"]')
        expect(card.locator(".tile-name")).to_have_text(site["name"])
        expected = "up" if site["id"] in monitored(lab) else "unmonitored"
        expect(card).to_have_attribute("data-status", expected, timeout=WAIT_MS)
        if expected == "up":  # the status log has a stretch of "up" for it by now
            expect(card.locator(".availability .value")).to_have_text(
                re.compile(r"^24h 100\.00% · 7d 100\.00% · 30d 100\.00%$")
            )
    expect(page.locator("#no-incidents")).to_be_visible()
    expect(page.get_by_text("connection lost — retrying")).to_be_hidden()
    screenshot(page, "dashboard-overview")


def test_a_cut_link_turns_its_tiles_red_live_and_an_operator_acknowledges(
    deployment: Deployment, whole_lab: Lab, context: BrowserContext, browser: Browser
) -> None:
    wait_until(lambda: deployment.calm(monitored(whole_lab)), 60, "a whole network before the test")
    page = context.new_page()
    login(page, deployment.url, "desk", PASSWORDS["desk"])
    page.evaluate("window.sitewatchNotReloaded = true")  # gone if the page were reloaded

    whole_lab.cut_link("customer-care-mpls")
    for site in ("customer-care", "town-hall"):
        card = page.locator(f'.tile[data-site="{site}"]')
        expect(card).to_have_attribute("data-status", "down", timeout=OUTAGE_MS)
        expect(card).to_have_css("background-color", DOWN_RED)
    item = page.locator("#incidents .incident")
    expect(item).to_have_count(1, timeout=OUTAGE_MS)
    expect(item.locator(".prio")).to_have_text("P1")
    expect(item).to_contain_text("Customer Care")
    expect(item.locator(".sla")).to_have_text(re.compile(r"due in \d"))
    expect(page.locator("#no-incidents")).to_be_hidden()
    expect(page.locator(".tile").first).to_have_attribute("data-status", "down")  # worst first
    assert page.evaluate("window.sitewatchNotReloaded") is True
    screenshot(page, "dashboard-overview-outage")

    item.locator("a.title").click()
    expect(page.locator("h1")).to_contain_text("Customer Care")
    expect(page.locator("#incident-status")).to_have_text("open")
    expect(page.locator(".timeline .event-opened")).to_have_count(1)
    screenshot(page, "dashboard-incident")
    incident_url = page.url
    page.get_by_label("Note (optional)").fill("calling the MPLS provider")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("#incident-status")).to_have_text("acknowledged")
    expect(page.locator(".timeline .event-acknowledged .author")).to_have_text("desk")
    expect(page.locator(".timeline .event-note")).to_contain_text("calling the MPLS provider")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    screenshot(page, "dashboard-incident-acknowledged")
    incident = deployment.api("/api/v1/incidents?status=open")[0]
    assert (incident["status"], incident["acknowledged_by"]) == ("acknowledged", "desk")

    viewer = browser.new_context()
    try:
        seen = viewer.new_page()
        login(seen, deployment.url, "screen", PASSWORDS["screen"])
        expect(seen.locator("#incidents .incident .state")).to_have_text("acknowledged")
        seen.goto(incident_url)
        expect(seen.locator("#incident-status")).to_have_text("acknowledged")
        expect(seen.locator("form.action")).to_have_count(0)
        expect(seen.get_by_role("button", name="Resolve")).to_have_count(0)
        token = seen.locator('input[name="csrf"]').first.get_attribute("value")
        status = seen.evaluate(
            """async ([url, token]) => (await fetch(url, {
                method: "POST", body: new URLSearchParams({csrf: token, note: "forged"}),
            })).status""",
            [f"{incident_url}/resolve", token],
        )
        assert status == 403
    finally:
        viewer.close()
    assert deployment.api("/api/v1/incidents?status=open")[0]["status"] == "acknowledged"

    page.goto(deployment.url)
    page.evaluate("window.sitewatchNotReloaded = true")
    whole_lab.restore_link("customer-care-mpls")
    for site in ("customer-care", "town-hall"):
        expect(page.locator(f'.tile[data-site="{site}"]')).to_have_attribute(
            "data-status", "up", timeout=RECOVERY_MS
        )
    expect(page.locator("#no-incidents")).to_be_visible(timeout=RECOVERY_MS)
    assert page.evaluate("window.sitewatchNotReloaded") is True


def test_a_bad_login_shows_an_error(deployment: Deployment, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{deployment.url}/incidents")
    expect(page).to_have_url(re.compile(r"/login\?next=/incidents"))
    page.get_by_label("User name").fill("desk")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".error")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("Password")).to_be_visible()


def test_repeated_failures_are_rate_limited(
    deployment: Deployment, context: BrowserContext
) -> None:
    """Last in this module: afterwards the hub's address may not log in for five minutes."""
    page = context.new_page()
    error = page.locator(".error")
    attempts = 0
    while attempts < 6:
        page.goto(f"{deployment.url}/login")
        page.get_by_label("User name").fill("intruder")
        page.get_by_label("Password").fill(f"guess {attempts}")
        page.get_by_role("button", name="Log in").click()
        attempts += 1
        expect(error).to_be_visible()
        if "Too many failed logins" in (error.text_content() or ""):
            break
        expect(error).to_have_text("Wrong user name or password.")
    assert attempts > 1  # the first attempt was an ordinary failure
    expect(error).to_contain_text("Too many failed logins")
    page.goto(f"{deployment.url}/login")  # now even the right password is refused
    page.get_by_label("User name").fill("desk")
    page.get_by_label("Password").fill(PASSWORDS["desk"])
    page.get_by_role("button", name="Log in").click()
    expect(error).to_contain_text("Too many failed logins")
