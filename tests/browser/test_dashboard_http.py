"""The dashboard over HTTP, without a browser: logins, CSRF, the rate limit, roles, the stream.

These run anywhere (no lab, no Chromium); the browser tests beside them drive the same pages
in a real Chromium on the lab.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.api import build_app
from collector.appkeys import CONFIG, INCIDENTS, PIPELINE, STORE
from collector.dashboard import auth
from collector.dashboard.events import STOPPING
from collector.dashboard.sessions import COOKIE
from collector.service import Collector
from collector.store import Store
from collector.topology import Cause
from probes.result import JsonValue, ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import TlsFiles
from sitewatch.passwords import is_password_hash, verify_password
from tests.browser.conftest import EVIL_NAME, Dashboard, csrf_of, write_config

PAGES = ("/", "/sites/alpha", "/sites/evil", "/incidents", "/incidents?status=all", "/reports")


def open_incident(dashboard: Dashboard, title: str = "alpha-mpls down: Alpha cut off") -> int:
    cause = Cause(
        "link:alpha-mpls",
        "link",
        "P1",
        title,
        ("alpha", "evil"),
        15,
        {"link": "alpha-mpls", "links": ["alpha-mpls"], "site": "alpha"},
    )
    dashboard.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = dashboard.collector.incidents.open_incidents()
    return incident.id


async def test_pages_send_strangers_to_the_login_form(dashboard: Dashboard) -> None:
    for path in ("/", "/incidents/1", "/sites/alpha?hours=6", "/reports"):
        response = await dashboard.client.get(path, allow_redirects=False)
        assert response.status == 303, path
        assert response.headers["Location"].startswith("/login?next=/"), path
    status, html = await dashboard.page("/login")
    assert status == 200
    assert 'name="password"' in html
    response = await dashboard.client.post(
        "/incidents/1/acknowledge", data={"csrf": "x"}, allow_redirects=False
    )
    assert response.status == 403


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_the_session(
    dashboard: Dashboard,
) -> None:
    assert await dashboard.login("desk") == 303
    cookie = dashboard.client.session.cookie_jar.filter_cookies(dashboard.client.make_url("/"))
    token = cookie[COOKIE].value
    status, html = await dashboard.page("/")
    assert status == 200
    assert "Alpha Offices" in html
    assert "desk" in html
    response = await dashboard.client.post(
        "/logout", data={"csrf": csrf_of(html)}, allow_redirects=False
    )
    assert (response.status, response.headers["Location"]) == (303, "/login")
    assert (await dashboard.page("/"))[0] == 303
    dashboard.client.session.cookie_jar.update_cookies({COOKIE: token})  # the old cookie is dead
    assert (await dashboard.page("/"))[0] == 303


async def test_the_session_cookie_flags(dashboard: Dashboard) -> None:
    page = await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "desk-password"},
        allow_redirects=False,
    )
    header = next(v for v in response.headers.getall("Set-Cookie") if v.startswith(COOKIE))
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Secure" not in header  # plain HTTP: a Secure cookie would never come back


async def test_the_cookie_is_secure_when_the_collector_serves_tls(
    tmp_path: Path, hashes: dict[str, str]
) -> None:
    config = load_collector_config(write_config(tmp_path, hashes))
    config = replace(config, tls=TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem"))
    store = Store(tmp_path / "collector.db")
    try:
        async with TestClient(TestServer(build_app(Collector(config, store)))) as client:
            page = await client.get("/login")
            assert "Secure" in page.headers["Set-Cookie"]
            response = await client.post(
                "/login",
                data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "x"},
                allow_redirects=False,
            )
            assert response.status in (401, 403)  # the Secure login cookie is not sent back
    finally:
        store.close()


async def test_a_wrong_password_or_an_unknown_user_gets_the_same_answer(
    dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    def counting(password: str, stored: str) -> bool:
        checked.append(stored)
        return verify_password(password, stored)

    monkeypatch.setattr(auth, "verify_password", counting)
    assert await dashboard.login("desk", "wrong") == 401
    assert await dashboard.login("nobody", "wrong") == 401
    # the unknown name cost a full scrypt check too, against a hash of the same cost
    assert checked[1] == auth.DUMMY_HASH
    assert is_password_hash(auth.DUMMY_HASH)
    assert checked[0].split("$")[:4] == auth.DUMMY_HASH.split("$")[:4]
    page = await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "wrong"},
    )
    assert "Wrong user name or password." in await response.text()


async def test_repeated_failures_are_rate_limited(dashboard: Dashboard) -> None:
    for _ in range(5):
        assert await dashboard.login("desk", "guess") == 401
    page = await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "desk-password"},
        allow_redirects=False,
    )
    assert response.status == 429  # even the right password: it is not even checked
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert "Too many failed logins" in await response.text()
    assert await dashboard.login("screen") == 429  # the same address, another name


async def _guess_from(client: TestClient[Any, Any], forwarded_for: str) -> int:
    """Fail one login through a proxy that says the browser is at `forwarded_for`."""
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "guess"},
        headers={"X-Forwarded-For": f"{forwarded_for}, 127.0.0.1"},
        allow_redirects=False,
    )
    return response.status


@pytest.mark.parametrize(("trusted", "separate"), [("[127.0.0.1/32]", True), ("[]", False)])
async def test_behind_a_trusted_proxy_each_browser_has_its_own_login_limit(
    tmp_path: Path, hashes: dict[str, str], *, trusted: str, separate: bool
) -> None:
    """From a trusted proxy the limit counts per forwarded address; from anyone else per peer."""
    path = write_config(tmp_path, hashes, f"trusted_proxies: {trusted}\n")
    store = Store(tmp_path / "collector.db")
    try:
        async with TestClient(
            TestServer(build_app(Collector(load_collector_config(path), store)))
        ) as client:
            assert [await _guess_from(client, "203.0.113.1") for _ in range(5)] == [401] * 5
            assert await _guess_from(client, "203.0.113.1") == 429
            assert await _guess_from(client, "203.0.113.2") == (401 if separate else 429)
    finally:
        store.close()


async def test_a_burst_of_concurrent_guesses_is_limited_too(dashboard: Dashboard) -> None:
    answers = await asyncio.gather(*(dashboard.login("desk", f"guess{n}") for n in range(20)))
    assert answers.count(401) == 5  # checked: the limit counts an attempt before its check
    assert answers.count(429) == 15


async def test_broken_cookies_and_fields_are_no_500(dashboard: Dashboard) -> None:
    page = await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login", data={"csrf": "é" * 40, "name": "desk", "password": "x"}
    )
    assert response.status == 403  # a stale form, not a crash
    assert "The login form was stale" in await response.text()
    assert page.status == 200
    for path in ("/incidents/²", "/sites/alpha?hours=²", "/reports?month=9999-12"):
        await dashboard.login("desk")
        response = await dashboard.client.get(path)
        assert response.status in (400, 404), path


async def test_the_login_form_needs_its_csrf_token(dashboard: Dashboard) -> None:
    await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login", data={"name": "desk", "password": "desk-password"}, allow_redirects=False
    )
    assert response.status == 403
    page = await dashboard.client.get("/login")
    response = await dashboard.client.post(
        "/login",
        data={"csrf": csrf_of(await page.text()), "name": "desk", "password": "desk-password"},
        headers={"Origin": "http://attacker.example"},
        allow_redirects=False,
    )
    assert response.status == 403


async def test_login_goes_back_to_the_page_asked_for_but_never_off_site(
    dashboard: Dashboard,
) -> None:
    for target, expected in (("/incidents?status=all", "/incidents?status=all"),
                             ("//attacker.example/", "/"), ("https://attacker.example/", "/"),
                             ("/\\attacker.example", "/")):  # fmt: skip
        dashboard.client.session.cookie_jar.clear()  # logged out: the form is shown
        page = await dashboard.client.get("/login", params={"next": target})
        response = await dashboard.client.post(
            "/login",
            data={
                "csrf": csrf_of(await page.text()),
                "next": target,
                "name": "desk",
                "password": "desk-password",
            },
            allow_redirects=False,
        )
        assert response.headers["Location"] == expected, target


async def test_forms_refuse_a_missing_wrong_or_foreign_csrf_token(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("desk") == 303
    path = f"/incidents/{incident_id}/acknowledge"
    token = await dashboard.csrf(f"/incidents/{incident_id}")
    for data, headers in (
        ({}, {}),
        ({"csrf": "not-the-token"}, {}),
        ({"csrf": token}, {"Origin": "http://attacker.example"}),
        ({"csrf": token}, {"Origin": "null"}),
    ):
        response = await dashboard.client.post(
            path, data=data, headers=headers, allow_redirects=False
        )
        assert response.status == 403, (data, headers)
    assert dashboard.collector.incidents.open_incidents()[0].status == "open"
    own = str(dashboard.client.make_url("/")).rstrip("/")
    response = await dashboard.client.post(
        path, data={"csrf": token, "note": "on my way"}, headers={"Origin": own},
        allow_redirects=False,
    )  # fmt: skip
    assert (response.status, response.headers["Location"]) == (303, f"/incidents/{incident_id}")
    (incident,) = dashboard.collector.incidents.open_incidents()
    assert (incident.status, incident.acknowledged_by) == ("acknowledged", "desk")
    assert dashboard.collector.pipeline.notify_wake.is_set()
    status, html = await dashboard.page(f"/incidents/{incident_id}")
    assert status == 200
    assert "on my way" in html
    assert f'action="/incidents/{incident_id}/acknowledge"' not in html  # done already
    response = await dashboard.client.post(path, data={"csrf": token}, allow_redirects=False)
    assert response.status == 409  # acknowledged twice: a page that says so
    assert response.content_type == "text/html"  # the dashboard's page, not the API's JSON
    page = await response.text()
    assert "acknowledged" in page
    assert "<h1>Not done</h1>" in page


async def test_notes_and_resolving_by_an_operator(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("desk") == 303
    token = await dashboard.csrf()
    base = f"/incidents/{incident_id}"
    response = await dashboard.client.post(f"{base}/notes", data={"csrf": token, "text": " "})
    assert response.status == 422
    response = await dashboard.client.post(
        f"{base}/notes", data={"csrf": token, "text": "called Telkom"}
    )
    assert response.status == 200  # followed to the incident page
    assert "called Telkom" in await response.text()
    response = await dashboard.client.post(f"{base}/resolve", data={"csrf": token})
    assert response.status == 422
    response = await dashboard.client.post(
        f"{base}/resolve", data={"csrf": token, "note": "router replaced"}
    )
    html = await response.text()
    assert "router replaced" in html
    assert dashboard.collector.incidents.open_incidents() == []
    assert f'action="{base}/resolve"' not in html


async def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(
    dashboard: Dashboard,
) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("screen") == 303
    status, html = await dashboard.page(f"/incidents/{incident_id}")
    assert status == 200
    assert "/acknowledge" not in html
    assert "/resolve" not in html
    token = csrf_of(html)  # a valid token, from the logout form
    for action, data in (("acknowledge", {}), ("notes", {"text": "x"}), ("resolve", {"note": "x"})):
        response = await dashboard.client.post(
            f"/incidents/{incident_id}/{action}", data={"csrf": token, **data}
        )
        assert response.status == 403, action
        assert "operator" in await response.text()
    assert dashboard.collector.incidents.open_incidents()[0].status == "open"


async def test_the_api_accepts_a_session_and_wants_its_csrf_token_for_changes(
    dashboard: Dashboard,
) -> None:
    incident_id = open_incident(dashboard)
    assert (await dashboard.client.get("/api/v1/sites")).status == 401
    assert await dashboard.login("desk") == 303
    response = await dashboard.client.get("/api/v1/sites")
    assert response.status == 200
    assert {s["id"] for s in await response.json()} == {"alpha", "evil", "pound"}
    path = f"/api/v1/incidents/{incident_id}/notes"
    response = await dashboard.client.post(path, json={"text": "from a script"})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "csrf_check_failed"
    token = await dashboard.csrf()
    response = await dashboard.client.post(
        path, json={"text": "from a script"}, headers={"X-CSRF-Token": token}
    )
    assert response.status == 200
    assert (await response.json())["notes"][0]["author"] == "desk"


async def test_the_api_refuses_a_viewer_session_operator_actions(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("screen") == 303
    token = await dashboard.csrf()
    response = await dashboard.client.post(
        f"/api/v1/incidents/{incident_id}/acknowledge", headers={"X-CSRF-Token": token}
    )
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"


async def read_event(response: Any) -> tuple[str, str]:
    """Return the next event's name and data from an event stream."""
    name, data = "message", list[str]()
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if not line:
            raise AssertionError("the stream ended")
        line = line.rstrip("\n")
        if not line and data:
            return name, "\n".join(data)
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def test_the_event_stream_sends_a_snapshot_at_once(dashboard: Dashboard) -> None:
    open_incident(dashboard)
    assert await dashboard.login("screen") == 303
    async with dashboard.client.get("/events") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name, data = await read_event(response)
        assert name == "message"
        snapshot = json.loads(data)
        assert [s["id"] for s in snapshot["sites"]][-1] == "pound"  # unmonitored: last
        assert {s["name"] for s in snapshot["sites"]} == {"Alpha Offices", EVIL_NAME, "Pound"}
        (incident,) = snapshot["incidents"]
        assert (incident["priority"], incident["sites"]) == ("P1", f"Alpha Offices, {EVIL_NAME}")
        assert incident["due_at"].endswith("Z")
        assert snapshot["sites"][0]["availability"] == "—"
        # ... and again a second later, until the collector stops
        assert (await read_event(response))[0] == "message"
        assert dashboard.client.app is not None
        dashboard.client.app[STOPPING].set()
        await asyncio.wait_for(response.content.read(), 5)  # the stream ends
        assert response.content.at_eof()


async def test_the_event_stream_tells_a_logged_out_page_to_log_in(dashboard: Dashboard) -> None:
    async with dashboard.client.get("/events") as response:
        assert response.status == 200
        assert await read_event(response) == ("expired", "{}")


async def test_pages_escape_names_and_titles(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard, title="<img src=x onerror=alert(1)> down")
    assert await dashboard.login("desk") == 303
    for path in (*PAGES, f"/incidents/{incident_id}"):
        status, html = await dashboard.page(path)
        assert status == 200, path
        assert "<script>alert" not in html, path
        assert "<img src=x" not in html, path
    _, html = await dashboard.page("/")
    assert "&lt;script&gt;alert(&#39;sitewatch&#39;)&lt;/script&gt;" in html
    _, html = await dashboard.page(f"/incidents/{incident_id}")
    assert "&lt;img src=x onerror=alert(1)&gt; down" in html


EXTERNAL = re.compile(r"https?://|(?:src|href|action)\s*=\s*[\"']//|url\(\s*[\"']?//", re.I)


async def test_no_page_script_or_style_refers_to_another_host(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("desk") == 303
    assets: set[str] = set()
    for path in (*PAGES, f"/incidents/{incident_id}", "/sites/alpha?hours=1"):
        response = await dashboard.client.get(path)
        html = await response.text()
        assert not EXTERNAL.search(html), (path, EXTERNAL.search(html))
        assert "Content-Security-Policy" in response.headers
        assets |= set(re.findall(r'(?:src|href)="(/static/[^"]+)"', html))
    assert assets == {"/static/dashboard.css", "/static/dashboard.js", "/static/overview.js"}
    for asset in sorted(assets):
        response = await dashboard.client.get(asset)
        assert response.status == 200, asset
        assert not EXTERNAL.search(await response.text()), asset
    dashboard.client.session.cookie_jar.clear()
    _, html = await dashboard.page("/login")
    assert 'name="password"' in html
    assert not EXTERNAL.search(html)


async def test_security_headers_on_pages(dashboard: Dashboard) -> None:
    response = await dashboard.client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in (await dashboard.client.get("/healthz")).headers


def snmp_result(target: str, ts: datetime) -> ProbeResult:
    supplies: list[JsonValue] = [
        {"index": "1.1", "description": "Black Toner <K>", "level": 30, "max": 100,
         "percent": 30.0, "state": "ok"},
        {"index": "1.2", "description": "Waste box", "level": -3, "max": 100,
         "percent": None, "state": "some_remaining"},
    ]  # fmt: skip
    return ProbeResult(
        target, "snmp", ts, ok=True, value={"profile": "printer", "supplies": supplies}
    )


async def test_the_site_page_shows_links_devices_charts_supplies_and_its_chain(
    dashboard: Dashboard,
) -> None:
    now = datetime.now(UTC)
    results = [
        ProbeResult("alpha-mpls", "icmp", now, ok=True, rtt_ms=12.5, loss=0.0),
        ProbeResult("evil-wireless", "icmp", now, ok=False, loss=1.0, error_kind="timeout"),
        snmp_result("alpha-prn", now),
    ]
    store = dashboard.collector.store
    await asyncio.to_thread(
        store.results.ingest, "alpha-agent", list(enumerate(results, 1)), received=now.timestamp()
    )
    open_incident(dashboard)
    assert await dashboard.login("screen") == 303
    status, html = await dashboard.page("/sites/alpha")
    assert status == 200
    assert 'data-link="alpha-mpls"' in html
    assert 'data-device="alpha-prn"' in html
    assert 'class="series series-agent" d="M' in html
    assert "Black Toner &lt;K&gt;" in html
    assert '<meter min="0" max="100" low="15" high="40" optimum="100" value="30.0">' in html
    assert "some_remaining" in html
    assert "alpha-mpls down" in html  # its recent incident
    status, html = await dashboard.page("/sites/evil")
    assert status == 200
    chain = html[html.index('class="chain"') :]
    assert chain.index("&lt;script&gt;") < chain.index("Alpha Offices") < chain.index("→ hub")
    status, html = await dashboard.page("/sites/nowhere")
    assert status == 404
    assert "There is no site" in html
    assert (await dashboard.page("/sites/alpha?hours=5"))[0] == 400


async def test_the_incident_list_filters(dashboard: Dashboard) -> None:
    incident_id = open_incident(dashboard)
    assert await dashboard.login("screen") == 303
    _, html = await dashboard.page("/incidents")
    assert f'data-incident="{incident_id}"' in html
    _, html = await dashboard.page("/incidents?status=resolved")
    assert "No incidents match." in html
    _, html = await dashboard.page("/incidents?status=all&priority=P2")
    assert "No incidents match." in html
    _, html = await dashboard.page("/incidents?status=all&priority=P1")
    assert f'data-incident="{incident_id}"' in html
    assert (await dashboard.page("/incidents?status=closed"))[0] == 400
    assert (await dashboard.page("/incidents?priority=P9"))[0] == 400
    assert (await dashboard.page("/incidents/999"))[0] == 404
    assert (await dashboard.page("/incidents/abc"))[0] == 404


async def test_the_reports_page_shows_the_month_and_downloads_its_csv(
    dashboard: Dashboard,
) -> None:
    incident_id = open_incident(dashboard, title="<b>cut</b> off")
    store = dashboard.collector.store
    with store.db.writing() as db:  # make it major: the report lists major incidents
        db.execute("UPDATE incidents SET major = 1 WHERE id = ?", (incident_id,))
    assert await dashboard.login("screen") == 303
    # this month where the organisation is: the page's default (not UTC's, on a month's last night)
    zone = ZoneInfo(dashboard.collector.config.inventory.timezone)
    month = datetime.now(zone).strftime("%Y-%m")
    status, html = await dashboard.page("/reports")
    assert status == 200
    assert f'value="{month}"' in html
    assert "Incidents resolved within target" in html
    assert "Alpha Offices" in html
    assert "&lt;b&gt;cut&lt;/b&gt; off" in html
    assert "incidents opened: 1," in html
    status, html = await dashboard.page("/reports?month=2024-05")
    assert status == 200
    assert 'href="/api/v1/reports/sla?from=2024-05-01&amp;to=2024-05-31"' in html
    assert 'href="/reports/sla.csv?month=2024-05"' in html
    assert "incidents opened: 0," in html
    response = await dashboard.client.get("/reports/sla.csv?month=2024-05")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert 'filename="sla-2024-05.csv"' in response.headers["Content-Disposition"]
    assert (await response.text()).startswith("section,subject,metric,value")
    assert (await dashboard.page("/reports?month=2024-13"))[0] == 400
    assert (await dashboard.client.get("/reports/sla.csv?month=May")).status == 400


async def test_the_app_holds_the_collectors_own_parts(dashboard: Dashboard) -> None:
    app, collector = dashboard.client.app, dashboard.collector
    assert app is not None
    assert app[STORE] is collector.store
    assert app[INCIDENTS] is collector.incidents
    assert app[CONFIG] is collector.config
    assert app[PIPELINE] is collector


async def test_an_incident_page_lists_the_evidence_of_its_cause_escaped(
    dashboard: Dashboard,
) -> None:
    notes = ["centre-ping down: 127.0.0.1: <b>no reply</b>", "far-end-ping up (reachability)"]
    cause = Cause(
        "link:alpha-mpls",
        "link",
        "P2",
        "alpha-mpls down",
        ("alpha",),
        12,
        {"link": "alpha-mpls", "links": ["alpha-mpls"], "site": "alpha", "evidence": notes},
    )
    dashboard.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = dashboard.collector.incidents.open_incidents()
    assert await dashboard.login("screen") == 303
    status, html = await dashboard.page(f"/incidents/{incident.id}")
    assert status == 200
    assert (
        '<ul class="cause-evidence"><li>centre-ping down: 127.0.0.1: &lt;b&gt;no reply&lt;/b&gt;'
        "</li><li>far-end-ping up (reachability)</li></ul>"
    ) in html
    assert "evidence:" not in html  # listed, not joined into the cause's line


async def test_a_links_evidence_on_the_site_page_is_escaped(dashboard: Dashboard) -> None:
    """A probe's detail is text from the network (an SNMP ifDescr, an ICMP error): escaped."""
    book, now = dashboard.collector.pipeline.book, datetime.now(UTC)
    for second in (3, 2, 1):
        ts = now - timedelta(seconds=second)
        book.observe(
            "centre",
            ProbeResult(
                "alpha-mpls",
                "icmp",
                ts,
                False,
                loss=1.0,
                error_kind="timeout",
                detail="<img src=x> no reply",
            ),
        )
    assert await dashboard.login("screen") == 303
    status, html = await dashboard.page("/sites/alpha")
    assert status == 200
    assert '<tr class="link-evidence" data-evidence-of="alpha-mpls">' in html
    assert '<tr data-source="centre-ping" class="counted">' in html
    assert "&lt;img src=x&gt; no reply" in html
    assert "<img src=x" not in html
