"""TCP and HTTP(S) probes against real servers on loopback, TLS with a CA made in the test."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from probes import http, tcp
from probes.target import Target
from sitewatch.config.model import HttpProbe, TcpProbe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_tcp_open_port_answers() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await tcp.probe(Target("127.0.0.1", TcpProbe(port=port)), timeout=2)
    assert result.ok, result.detail
    assert result.rtt_ms is not None
    assert result.value == {"port": port}


async def test_tcp_closed_port_is_refused() -> None:
    port = free_port()
    result = await tcp.probe(Target("127.0.0.1", TcpProbe(port=port)), timeout=2)
    assert not result.ok
    assert result.error_kind == "refused"
    assert result.detail == f"127.0.0.1:{port}: connection refused"


async def test_tcp_full_backlog_times_out() -> None:
    """A listener that never accepts, with its backlog full, leaves SYNs unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue so further SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        result = await tcp.probe(Target("127.0.0.1", TcpProbe(port=port)), timeout=0.5)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert not result.ok
    assert result.error_kind == "timeout"


# -- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, web.AppRunner]]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="SiteWatch test page: all well")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(5)  # the server under test is slow on purpose
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", runner
    await runner.cleanup()


def http_target(url: str, **options: object) -> Target:
    return Target(url, HttpProbe(url=url, **options))  # type: ignore[arg-type]


async def test_http_ok_with_expected_body(site: tuple[str, web.AppRunner]) -> None:
    base, _ = site
    result = await http.probe(http_target(base + "/", expect_body="all well"), timeout=2)
    assert result.ok, result.detail
    assert result.value["status"] == 200
    assert result.rtt_ms is not None


async def test_http_wrong_body_and_status(site: tuple[str, web.AppRunner]) -> None:
    base, _ = site
    result = await http.probe(http_target(base + "/", expect_body="not there"), timeout=2)
    assert (result.ok, result.error_kind) == (False, "unexpected")
    assert result.detail == "the body does not contain 'not there'"
    result = await http.probe(http_target(base + "/broken"), timeout=2)
    assert (result.ok, result.error_kind, result.detail) == (False, "unexpected", "status 503")
    result = await http.probe(http_target(base + "/broken", expect_status=503), timeout=2)
    assert result.ok


async def test_http_timeout_and_refused(site: tuple[str, web.AppRunner]) -> None:
    base, _ = site
    result = await http.probe(http_target(base + "/slow"), timeout=0.3)
    assert (result.ok, result.error_kind) == (False, "timeout")
    result = await http.probe(http_target(f"http://127.0.0.1:{free_port()}/"), timeout=2)
    assert (result.ok, result.error_kind) == (False, "refused")


async def test_https_reports_certificate_days_and_refuses_unknown_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_context)
    app = web.Application()

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_context).start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    url = f"https://127.0.0.1:{port}/"
    try:
        trusted = await http.probe(http_target(url, ca_file=ca_file), timeout=3)
        untrusted = await http.probe(http_target(url), timeout=3)
        unverified = await http.probe(http_target(url, verify_tls=False), timeout=3)
    finally:
        await runner.cleanup()
    assert trusted.ok, trusted.detail
    days = trusted.value["cert_days_left"]
    assert isinstance(days, float)
    assert days > 300  # trustme's certificates last for centuries
    assert (untrusted.ok, untrusted.error_kind) == (False, "tls")
    assert "certificate" in untrusted.detail
    assert unverified.ok
    assert "cert_days_left" not in unverified.value
