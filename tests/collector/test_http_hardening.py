"""The collector's HTTP front door against hostile clients, on a real server on port 0.

Gzip bombs (with and without a token, on any path), corrupt and unknown encodings, bad HTTP
answered with the JSON error body, NaN and lone surrogates in bodies, history storms limited per
token, idle and trickling connections closed, too many connections from one address refused,
clients hanging up mid-body, and the trusted proxies whose X-Forwarded-For counts.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import logging
import math
import socket
import threading
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web

from collector import api, report
from collector.api import MAX_BODY, build_app
from collector.body import finite
from collector.dashboard.auth import LOGIN_COOKIE, LOGIN_FORM, MAX_FORM
from collector.dashboard.sessions import COOKIE, SESSIONS, Login
from collector.front import MAX_TEXT, FrontLimits, FrontRunner, client_address, json_response
from collector.service import Collector
from collector.store import Store
from collector.topology import Cause
from sitewatch.config.errors import ConfigError
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken
from tests.collector.test_api import OPERATOR, STAFF, TOKENS, example_config, record, sha
from tests.unit.test_config import INVENTORY, collector_text, write

OTHER_VIEWER = "other-viewer-secret"
BOMB_INFLATED = 64 * 1024 * 1024  # the tests' bomb: 64 MiB of zeros in about 64 kB of gzip
DEADLINE = 20.0  # seconds any wait in these tests may take before it is a failure


# -- a real collector behind the FrontRunner ------------------------------------------------


@dataclass
class Front:
    """A collector served by the FrontRunner on 127.0.0.1, and an HTTP client for it."""

    port: int
    runner: web.AppRunner
    http: aiohttp.ClientSession
    collector: Collector  # the collector the app was built from

    @property
    def app(self) -> web.Application:
        return self.runner.app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        token: str | None = OPERATOR,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.url + path, data=body, headers=sent) as reply:
            text = await reply.text()
            return reply.status, json.loads(text) if text else None, dict(reply.headers)

    async def raw(self, request: bytes) -> bytes:
        """Send `request` on a connection of its own; return all the server answers."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(DEADLINE):
                return await reader.read()
        finally:
            writer.close()


Serve = Callable[[FrontLimits], Awaitable[Front]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start collectors with the given limits; stop them (and their stores) afterwards."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(limits: FrontLimits) -> Front:
        config = example_config(
            tuple(AgentCredential(a, a.split("-")[0], sha(t)) for a, t in TOKENS.items()),
            (
                ApiToken("screen", "viewer", sha(STAFF)),
                ApiToken("other", "viewer", sha(OTHER_VIEWER)),
                ApiToken("desk", "operator", sha(OPERATOR)),
            ),
        )
        store = Store(tmp_path / f"collector-{len(cleanups)}.db")
        collector = Collector(config, store)
        app = build_app(collector, limits)
        runner = FrontRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        http = aiohttp.ClientSession()

        async def stop() -> None:
            await http.close()
            await runner.cleanup()
            store.close()

        cleanups.append(stop)
        return Front(runner.addresses[0][1], runner, http, collector)

    yield start
    for stop in reversed(cleanups):
        await stop()


@pytest.fixture
async def front(serve: Serve) -> Front:
    return await serve(FrontLimits())


# -- counting every byte zlib inflates, ours and aiohttp's ----------------------------------


class Inflated:
    """Bytes inflated by any zlib decompressor made while the spy is in place."""

    def __init__(self) -> None:
        self.total = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.total += count


class _Counting:
    def __init__(self, real: Any, counter: Inflated) -> None:
        self._real, self._counter = real, counter

    def decompress(self, *args: Any, **kwargs: Any) -> bytes:
        out: bytes = self._real.decompress(*args, **kwargs)
        self._counter.add(len(out))
        return out

    def flush(self, *args: Any) -> bytes:
        out: bytes = self._real.flush(*args)
        self._counter.add(len(out))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> Inflated:
    counter = Inflated()
    real = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *a, **k: _Counting(real(*a, **k), counter))
    return counter


@pytest.fixture(scope="module")
def bomb() -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + 15)
    zeros = bytes(1024 * 1024)
    parts = [squeeze.compress(zeros) for _ in range(BOMB_INFLATED // len(zeros))]
    return b"".join([*parts, squeeze.flush()])


GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


# -- 1. gzip bombs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/v1/agent/results", None, 401),
        ("/api/v1/agent/results", "not-a-token", 401),
        ("/api/v1/incidents/1/notes", None, 401),
        ("/api/v1/incidents/1/notes", STAFF, 403),  # a viewer may not write: nothing read
        ("/api/v1/maintenance", None, 401),
        ("/no/such/path", None, 404),
    ],
)
async def test_a_bomb_from_a_stranger_is_refused_without_inflating_a_byte(
    front: Front, inflated: Inflated, bomb: bytes, *, path: str, token: str | None, status: int
) -> None:
    answer, body, _ = await front.call("POST", path, bomb, token=token, headers=GZIP)
    assert (answer, inflated.total) == (status, 0)
    assert body["error"]["code"]


async def test_a_bomb_with_a_token_is_refused_once_its_inflated_size_passes_the_limit(
    front: Front, inflated: Inflated, bomb: bytes
) -> None:
    status, body, _ = await front.call(
        "POST", "/api/v1/agent/results", bomb, token=TOKENS["tesko-01"], headers=GZIP
    )
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert MAX_BODY < inflated.total <= MAX_BODY + 2 * 1024 * 1024  # stopped at the limit


async def test_health_answers_while_bombs_are_in_flight(front: Front, bomb: bytes) -> None:
    """Three bombs half sent (their senders stall): /healthz still answers at once."""
    writers = []
    for token in (None, TOKENS["tesko-01"], TOKENS["willowvale-01"]):
        _, writer = await asyncio.open_connection("127.0.0.1", front.port)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            b"POST /api/v1/agent/results HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
            + auth.encode()
            + f"Content-Length: {len(bomb)}\r\n\r\n".encode()
            + bomb[: len(bomb) // 2]
        )
        await writer.drain()
        writers.append(writer)
    try:
        status, body, _ = await front.call("GET", "/healthz", token=None)
        assert (status, body["status"]) == (200, "ok")
    finally:
        for writer in writers:
            writer.close()


# -- encodings -----------------------------------------------------------------------------


def _batch() -> bytes:
    return json.dumps({"results": [record("tesko-mpls", 1)]}).encode()


def _bad_crc() -> bytes:
    good = bytearray(gzip.compress(_batch()))
    good[-8] ^= 0xFF  # the CRC-32 in the trailer
    return bytes(good)


ENCODED = [
    ("gzip", gzip.compress(_batch()), 200, None),
    ("deflate", zlib.compress(_batch()), 200, None),
    ("identity", _batch(), 200, None),
    ("gzip", _bad_crc(), 400, "bad_encoding"),
    ("gzip", gzip.compress(_batch())[:10] + b"garbage" * 20, 400, "bad_encoding"),
    ("gzip", gzip.compress(_batch())[:-12], 400, "bad_encoding"),  # truncated
    ("gzip", gzip.compress(_batch()) + b"trailing", 400, "bad_encoding"),
    ("deflate", gzip.compress(_batch()), 400, "bad_encoding"),
    ("br", _batch(), 415, "unsupported_encoding"),
    ("zstd", _batch(), 415, "unsupported_encoding"),
    ("gzip, gzip", gzip.compress(gzip.compress(_batch())), 415, "unsupported_encoding"),
]


@pytest.mark.parametrize(("encoding", "data", "status", "code"), ENCODED)
async def test_encodings_of_results(
    front: Front, encoding: str, data: bytes, status: int, code: str | None
) -> None:
    answer, body, _ = await front.call(
        "POST",
        "/api/v1/agent/results",
        data,
        token=TOKENS["tesko-01"],
        headers={"Content-Encoding": encoding},
    )
    assert answer == status, body
    if code is not None:
        assert body["error"]["code"] == code


@pytest.mark.parametrize("action", ["notes", "acknowledge", "resolve"])
@pytest.mark.parametrize(("encoding", "data", "status", "code"), ENCODED[3:])
async def test_corrupt_staff_bodies_are_400_or_415_never_500(
    front: Front, *, action: str, encoding: str, data: bytes, status: int, code: str
) -> None:
    path = f"/api/v1/incidents/1/{action}"
    answer, body, _ = await front.call("POST", path, data, headers={"Content-Encoding": encoding})
    assert (answer, body["error"]["code"]) == (status, code)


async def test_a_body_that_is_over_the_limit_before_inflating_is_413(front: Front) -> None:
    head = (
        "POST /api/v1/agent/results HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKENS['tesko-01']}\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
    )
    answer = await front.raw(head.encode())
    assert answer.startswith(b"HTTP/1.1 413")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "too_large"


# -- 2. what the framework refuses is JSON too ------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 10_000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello to plain HTTP
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
    ],
    ids=["long-request-line", "long-header", "tls", "bad-length", "bad-chunk", "bad-version"],
)
async def test_bad_http_gets_the_json_error_body(front: Front, request_bytes: bytes) -> None:
    answer = await front.raw(request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1].startswith(b"4"), answer[:200]
    assert b"application/json" in head
    error = json.loads(body)["error"]
    assert error["code"]
    assert error["message"]


async def test_bad_http_is_logged_at_debug_not_as_an_error(
    front: Front, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await front.raw(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n")
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- 3. strict JSON in, strict JSON out -------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(front: Front, constant: str) -> None:
    batch = _batch().replace(b'"ok": true', f'"ok": true, "rtt_ms": {constant}'.encode())
    status, body, _ = await front.call(
        "POST", "/api/v1/agent/results", batch, token=TOKENS["tesko-01"]
    )
    assert (status, body["error"]["code"]) == (400, "bad_json")
    note = f'{{"text": {constant}}}'.encode()
    status, body, _ = await front.call("POST", "/api/v1/incidents/1/notes", note)
    assert (status, body["error"]["code"]) == (400, "bad_json")


@pytest.mark.parametrize(
    ("action", "field"), [("notes", "text"), ("acknowledge", "note"), ("resolve", "note")]
)
async def test_a_lone_surrogate_in_a_staff_body_is_422_naming_the_field(
    front: Front, action: str, field: str
) -> None:
    cause = Cause("device:ts-prn-01", "device", "P3", "printer down", ("tesko",), 0, {})
    front.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = front.collector.incidents.open_incidents()
    path = f"/api/v1/incidents/{incident.id}/{action}"
    body = f'{{"{field}": "called \\ud800 Telkom"}}'.encode()
    status, answer, _ = await front.call("POST", path, body)
    assert status == 422
    assert answer["error"]["message"].startswith(f"{field}:")
    status, _, _ = await front.call("GET", f"/api/v1/incidents/{incident.id}", token=STAFF)
    assert status == 200


def test_replies_are_strict_json() -> None:
    assert finite({"a": [math.nan, -math.inf, 1.5], "b": (2.0,)}) == {
        "a": [None, None, 1.5],
        "b": [2.0],
    }
    with pytest.raises(ValueError, match="JSON compliant"):
        json_response({"a": math.nan})


# -- 4. history storms ------------------------------------------------------------------------


class Gate:
    """Holds the store's history reads until opened; counts the reads waiting at it."""

    def __init__(self, store: Store) -> None:
        self.real, self.open, self.waiting = store.results.history, threading.Event(), 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def history(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.waiting += 1
            self.threads.add(threading.current_thread().name)
        self.open.wait(DEADLINE)
        return self.real(*args, **kwargs)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(DEADLINE / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)  # polling a condition, with a deadline
    assert condition(), what


async def test_a_token_may_run_two_history_reads_at_once_and_gets_429_beyond(
    front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(front.collector.store)
    monkeypatch.setattr(front.collector.store.results, "history", gate.history)
    path = "/api/v1/history?target=tesko-mpls&limit=100000"
    running = [asyncio.create_task(front.call("GET", path, token=STAFF)) for _ in range(2)]
    await until(lambda: gate.waiting == 1, "the first read at the gate")
    await until(lambda: sum(front.app[api.IN_FLIGHT].values()) == 2, "both reads admitted")
    status, body, headers = await front.call("GET", path, token=STAFF)
    assert (status, body["error"]["code"]) == (429, "busy")
    assert int(headers["Retry-After"]) > 0
    other = asyncio.create_task(front.call("GET", path, token=OTHER_VIEWER))  # its own count
    health, _, _ = await front.call("GET", "/healthz", token=None)
    assert health == 200
    gate.open.set()
    assert [(await task)[0] for task in [*running, other]] == [200, 200, 200]
    status, _, _ = await front.call("GET", path, token=STAFF)
    assert status == 200  # the slots are free again


async def test_history_is_serialised_off_the_event_loop(
    front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    real = api._history_row

    def spy(row: Any) -> dict[str, Any]:
        threads.add(threading.get_ident())
        return real(row)

    monkeypatch.setattr(api, "_history_row", spy)
    batch = json.dumps({"results": [record("tesko-mpls", n) for n in range(1, 4)]}).encode()
    status, _, _ = await front.call(
        "POST", "/api/v1/agent/results", batch, token=TOKENS["tesko-01"]
    )
    assert status == 200
    status, rows, _ = await front.call("GET", "/api/v1/history?target=tesko-mpls", token=STAFF)
    assert (status, len(rows)) == (200, 3)
    assert threads
    assert threading.get_ident() not in threads


async def test_health_does_not_wait_behind_the_stores_connection(front: Front) -> None:
    """A long read holding the store's connection must not make /healthz wait for it."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with front.collector.store.db.reading():
            held.set()
            release.wait(DEADLINE)

    holder = asyncio.create_task(asyncio.to_thread(hold))
    try:
        await until(held.is_set, "the store's connection held")
        status, body, _ = await front.call("GET", "/healthz", token=None)
        assert (status, body["status"]) == (200, "ok")
    finally:
        release.set()
        await holder


# -- 5. idle, slow and crowding connections -----------------------------------------------


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(DEADLINE):
        return await reader.read()


async def test_an_idle_connection_is_closed(serve: Serve) -> None:
    front = await serve(FrontLimits(keepalive=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    try:
        assert await _closed_by_server(reader) == b""
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_answer(serve: Serve) -> None:
    front = await serve(FrontLimits(keepalive=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await _closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


async def test_a_client_trickling_its_headers_is_cut_off(serve: Serve) -> None:
    front = await serve(FrontLimits(keepalive=0.5))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    closed = asyncio.create_task(_closed_by_server(reader))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        for _ in range(int(DEADLINE / 0.05)):  # one byte every 50 ms, as a slowloris would
            if closed.done():
                break
            writer.write(b"a")
            await asyncio.sleep(0.05)  # the client's pace, not synchronisation
        assert await closed == b""
    finally:
        writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408(serve: Serve) -> None:
    front = await serve(FrontLimits(body_seconds=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    try:
        writer.write(
            b"POST /api/v1/agent/results HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {TOKENS['tesko-01']}\r\n".encode()
            + b"Content-Length: 1000\r\n\r\n{"
        )
        answer = await _closed_by_server(reader)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert json.loads(body)["error"]["code"] == "too_slow"
    finally:
        writer.close()


async def test_one_address_holds_only_so_many_connections(serve: Serve) -> None:
    front = await serve(FrontLimits(per_address=3))
    held = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            held.append(writer)
        reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
        held.append(writer)
        answer = await _closed_by_server(reader)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        held.pop().close()
        held.pop().close()  # one of the three leaves: the address may connect again
        await until(lambda: _count(front) <= 2, "the server saw the connections close")
        status, _, _ = await front.call("GET", "/healthz", token=None)
        assert status == 200
    finally:
        for writer in held:
            writer.close()


async def test_a_trusted_proxy_is_not_capped(serve: Serve) -> None:
    """Behind a reverse proxy every browser shares its address: it may hold many connections."""
    front = await serve(FrontLimits(per_address=1, exempt=(ipaddress.ip_network("127.0.0.0/8"),)))
    held = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
            held.append(writer)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        for writer in held:
            writer.close()


def _count(front: Front) -> int:
    server = front.runner.server
    assert server is not None
    return len(server.connections)


# -- 6. a client that hangs up mid-body -------------------------------------------------------


async def test_a_client_leaving_mid_body_is_logged_at_debug(
    front: Front, caplog: pytest.LogCaptureFixture
) -> None:
    await _hang_up_halfway(
        front,
        caplog,
        b"POST /api/v1/agent/results HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKENS['tesko-01']}\r\n".encode()
        + b'Content-Length: 100000\r\n\r\n{"results": [',
        "mid-body",
    )


async def _hang_up_halfway(
    front: Front, caplog: pytest.LogCaptureFixture, request: bytes, said: str
) -> None:
    """Send part of a request and hang up: the server says `said` at debug, nothing at ERROR."""
    caplog.set_level(logging.DEBUG)
    _, writer = await asyncio.open_connection("127.0.0.1", front.port)
    writer.write(request)
    await writer.drain()
    writer.close()
    await until(
        lambda: any(said in r.getMessage() or r.levelno >= logging.ERROR for r in caplog.records),
        "the server noticed",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- 7. trusted proxies -----------------------------------------------------------------------


def test_trusted_proxies_are_read_and_checked(tmp_path: Path) -> None:
    write(tmp_path, INVENTORY)
    good = collector_text() + "trusted_proxies: [127.0.0.1/32, '::1', 10.0.0.0/8]\n"
    config = load_collector_config(write(tmp_path, good, "collector.yaml"))
    assert [str(n) for n in config.trusted_proxies] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    bad = collector_text() + "trusted_proxies:\n  - 10.0.0.1/8\n  - proxy.example.org\n"
    path = write(tmp_path, bad, "collector.yaml")
    with pytest.raises(ConfigError) as caught:
        load_collector_config(path)
    problems = [str(p) for p in caught.value.problems]
    assert problems[0].startswith(f"{path}:9: trusted_proxies[0]: '10.0.0.1/8' is not")
    assert problems[1].startswith(f"{path}:10: trusted_proxies[1]: 'proxy.example.org' is not")


class _Request:
    """What `client_address` reads of a request: its peer and its headers."""

    def __init__(self, remote: str, forwarded: list[str]) -> None:
        self.remote = remote
        self.headers = _Headers(forwarded)


class _Headers:
    def __init__(self, forwarded: list[str]) -> None:
        self.forwarded = forwarded

    def getall(self, name: str, default: Any) -> list[str]:
        return self.forwarded if name == "X-Forwarded-For" else default


PROXIES = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("127.0.0.1", ["203.0.113.9"], "203.0.113.9"),
        ("127.0.0.1", ["198.51.100.1, 203.0.113.9, 10.1.1.1"], "203.0.113.9"),  # rightmost
        ("127.0.0.1", ["198.51.100.1", "203.0.113.9"], "203.0.113.9"),  # two headers
        ("192.0.2.7", ["203.0.113.9"], "192.0.2.7"),  # a stranger's X-Forwarded-For
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["not-an-address"], "127.0.0.1"),
        ("127.0.0.1", ["10.2.2.2"], "10.2.2.2"),  # only proxies: the farthest one
    ],
)
def test_the_client_is_the_rightmost_hop_no_trusted_proxy_holds(
    remote: str, forwarded: list[str], client: str
) -> None:
    request: Any = _Request(remote, forwarded)
    assert client_address(request, PROXIES) == client


def test_nobody_is_trusted_by_default() -> None:
    request: Any = _Request("127.0.0.1", ["203.0.113.9"])
    assert client_address(request, ()) == "127.0.0.1"


@pytest.mark.parametrize("limit", [100, 9, 5])
async def test_history_pages_send_every_row_once_even_when_rows_share_a_time(
    front: Front, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(api, "HISTORY_PAGE", 3)
    instant = datetime.now(UTC).replace(microsecond=123456) - timedelta(minutes=5)
    batch = [record("tesko-mpls", seq, ts=instant) for seq in range(1, 8)]  # seven at once
    batch += [record("tesko-mpls", seq, ts=instant + timedelta(seconds=seq)) for seq in (8, 9)]
    body = json.dumps({"results": batch}).encode()
    status, _, _ = await front.call("POST", "/api/v1/agent/results", body, token=TOKENS["tesko-01"])
    assert status == 200
    path = f"/api/v1/history?target=tesko-mpls&limit={limit}"
    status, rows, headers = await front.call("GET", path, token=STAFF)
    assert status == 200
    assert len(rows) == min(limit, 9)
    assert [row["ts"] for row in rows] == sorted(row["ts"] for row in rows)
    assert ("X-SiteWatch-Truncated" in headers) == (limit <= 9)
    whole = front.collector.store.results.history("tesko-mpls", 0, 2e9, 100)
    assert len({(r.source, r.seq) for r in whole}) == 9


# -- 8. one token, however it is spelled, is one reader ---------------------------------------


async def test_one_token_in_any_spelling_shares_its_two_history_slots(
    front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(front.collector.store)
    monkeypatch.setattr(front.collector.store.results, "history", gate.history)
    path = "/api/v1/history?target=tesko-mpls&limit=100000"
    spellings = [f"Bearer {STAFF}", f"bearer  {STAFF}", f"BEARER {STAFF} ", f"bEaReR {STAFF}"]

    async def read(spelling: str) -> tuple[int, Any, dict[str, str]]:
        return await front.call("GET", path, token=None, headers={"Authorization": spelling})

    running = [asyncio.create_task(read(spelling)) for spelling in spellings[:2]]
    await until(lambda: sum(front.app[api.IN_FLIGHT].values()) == 2, "both reads admitted")
    assert len(front.app[api.IN_FLIGHT]) == 1  # counted as one reader
    for spelling in spellings[2:]:
        status, body, _ = await read(spelling)
        assert (status, body["error"]["code"]) == (429, "busy")
    gate.open.set()
    assert [(await task)[0] for task in running] == [200, 200]


# -- 9. the dashboard's large pages are large reads ---------------------------------------------


def _session(front: Front, role: Any = "operator") -> dict[str, str]:
    token = front.app[SESSIONS].create(Login("desk", role))
    return {"Cookie": f"{COOKIE}={token}"}


async def _page(front: Front, path: str, headers: dict[str, str]) -> tuple[int, str]:
    async with front.http.get(front.url + path, headers=headers) as reply:
        return reply.status, await reply.text()


async def test_site_pages_are_limited_per_session_and_read_in_the_large_read_pool(
    front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(front.collector.store)
    monkeypatch.setattr(front.collector.store.results, "history", gate.history)
    cookie = _session(front, "viewer")
    running = [asyncio.create_task(_page(front, "/sites/tesko", cookie)) for _ in range(2)]
    await until(lambda: gate.waiting == 1, "the first page's read at the gate")
    await until(lambda: sum(front.app[api.IN_FLIGHT].values()) == 2, "both pages admitted")
    status, _ = await _page(front, "/sites/tesko", cookie)
    assert status == 429
    other = asyncio.create_task(_page(front, "/sites/tesko?hours=1", _session(front, "viewer")))
    await until(lambda: sum(front.app[api.IN_FLIGHT].values()) == 3, "another session admitted")
    gate.open.set()
    assert [(await task)[0] for task in [*running, other]] == [200, 200, 200]
    assert {name.split("_")[0] for name in gate.threads} == {"sitewatch-read"}


async def test_the_reports_page_is_built_in_the_large_read_pool(
    front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    real = report.build_report

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "build_report", spy)
    status, _ = await _page(front, "/reports", _session(front, "viewer"))
    assert status == 200
    assert {name.split("_")[0] for name in threads} == {"sitewatch-read"}


# -- 10. dashboard forms: small, in time, and quiet when the browser leaves ---------------------

FORM_HEAD = (
    "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    "{extra}Content-Length: {length}\r\n\r\n"
)


def _form_head(path: str, length: int, extra: str = "") -> bytes:
    return FORM_HEAD.format(path=path, length=length, extra=extra).encode()


async def _answer_head(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(DEADLINE):
        return await reader.readuntil(b"\r\n\r\n")


async def test_a_trickled_login_form_is_cut_after_body_seconds(serve: Serve) -> None:
    front = await serve(FrontLimits(body_seconds=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    answered = asyncio.create_task(_answer_head(reader))
    try:
        writer.write(_form_head("/login", 1_000) + b"name=")
        for _ in range(int(DEADLINE / 0.05)):  # one byte every 50 ms, as a slowloris would
            if answered.done():
                break
            writer.write(b"a")
            await asyncio.sleep(0.05)  # the client's pace, not synchronisation
        assert (await answered).startswith(b"HTTP/1.1 408")
        assert await _closed_by_server(reader) is not None  # and the connection ends
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("path", "length"),
    [("/login", 1024 * 1024), ("/incidents/1/notes", 1024 * 1024), ("/login", LOGIN_FORM + 1)],
)
async def test_a_form_over_the_cap_is_413_before_it_is_read(
    front: Front, path: str, length: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    try:  # declared, none of it sent: the answer cannot wait for it
        cookie = "".join(f"{k}: {v}\r\n" for k, v in _session(front).items())
        writer.write(_form_head(path, length, cookie))
        assert (await _answer_head(reader)).startswith(b"HTTP/1.1 413")
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("password", "status"),
    [("!" * 1_000, 401), ("!" * 1_700, 413)],  # ~3 KiB and ~5 KiB percent-encoded
)
async def test_a_login_form_over_4_kib_is_413_and_a_long_password_still_fits(
    front: Front, password: str, status: int
) -> None:
    """The login form is parsed on the loop for strangers: 4 KiB, a 1,000-character password."""
    token = "t" * 43
    form = {"name": "desk", "password": password, "next": "/sites/tesko", "csrf": token}
    size = len(urlencode(form))
    assert (size < 4 * 1024) if status == 401 else (size >= 5 * 1024)
    async with front.http.post(
        f"{front.url}/login",
        data=form,
        headers={"Cookie": f"{LOGIN_COOKIE}={token}"},
        allow_redirects=False,
    ) as reply:
        assert reply.status == status  # 401: read, checked and refused as a wrong password


@pytest.mark.parametrize(("path", "cap"), [("/login", LOGIN_FORM), ("/logout", MAX_FORM)])
async def test_a_chunked_form_is_413_once_it_passes_the_cap(
    front: Front, path: str, cap: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port)
    chunk = b"a" * (cap + 1024)
    cookie = "".join(f"{k}: {v}\r\n" for k, v in _session(front).items()).encode()
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode()
            + cookie
            + b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        )
        assert (await _answer_head(reader)).startswith(b"HTTP/1.1 413")
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/login", "/incidents/1/notes", "/logout"])
async def test_a_browser_leaving_mid_form_is_logged_at_debug(
    front: Front, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    cookie = "".join(f"{k}: {v}\r\n" for k, v in _session(front).items())
    head = _form_head(path, 2_000, cookie)
    await _hang_up_halfway(front, caplog, head + b"csrf=abc&text=half", "mid-form")


# -- 11. trusted proxies on a dual-stack listener, and what may be trusted ---------------------


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        ("::ffff:127.0.0.1", ["203.0.113.9"], "203.0.113.9"),  # an IPv4 proxy on [::]
        ("::ffff:192.0.2.7", ["203.0.113.9"], "192.0.2.7"),  # a stranger, however written
        ("127.0.0.1", ["::ffff:10.2.2.2"], "10.2.2.2"),
        ("::ffff:198.51.100.4", [], "198.51.100.4"),  # one key per client, however it came
    ],
)
def test_ipv4_mapped_addresses_are_read_as_ipv4(
    remote: str, forwarded: list[str], client: str
) -> None:
    request: Any = _Request(remote, forwarded)
    assert client_address(request, PROXIES) == client


async def test_a_trusted_ipv4_proxy_is_not_capped_on_a_dual_stack_listener(serve: Serve) -> None:
    front = await serve(FrontLimits(per_address=1, exempt=(ipaddress.ip_network("127.0.0.0/8"),)))
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # as [::] is on most hosts
    listener.bind(("::ffff:127.0.0.1", 0))
    dual = web.SockSite(front.runner, listener)
    await dual.start()
    held = []
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
            held.append(writer)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    finally:
        for writer in held:
            writer.close()
        await dual.stop()


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("0.0.0.0/0", "'0.0.0.0/0' is every address: it would believe anyone's X-Forwarded-For"),
        ("'::/0'", "'::/0' is every address"),
        ("10.0.0.0/7", "'10.0.0.0/7' is wider than /8"),
        ("'2001:db8::/31'", "'2001:db8::/31' is wider than /32"),
        ("''", "must not be empty"),
        ("~", "expected text, got nothing (null)"),
    ],
)
def test_trusted_proxies_that_would_trust_too_many_are_refused(
    tmp_path: Path, entry: str, says: str
) -> None:
    write(tmp_path, INVENTORY)
    text = collector_text() + f"trusted_proxies:\n  - 127.0.0.1\n  - {entry}\n"
    path = write(tmp_path, text, "collector.yaml")
    with pytest.raises(ConfigError) as caught:
        load_collector_config(path)
    (problem,) = [str(p) for p in caught.value.problems]
    assert problem.startswith(f"{path}:10: trusted_proxies[1]: {says}")


async def test_a_longest_note_in_any_script_fits_the_form_cap(front: Front) -> None:
    """4,000 characters of é are 24 kB percent-encoded: over the login cap, within MAX_FORM."""
    cause = Cause("device:ts-prn-01", "device", "P3", "printer down", ("tesko",), 0, {})
    front.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = front.collector.incidents.open_incidents()
    token = front.app[SESSIONS].create(Login("desk", "operator"))
    session = front.app[SESSIONS].get(token)
    assert session is not None
    form = {"csrf": session.csrf, "text": "é" * MAX_TEXT}
    async with front.http.post(
        f"{front.url}/incidents/{incident.id}/notes",
        data=form,
        headers={"Cookie": f"{COOKIE}={token}"},
        allow_redirects=False,
    ) as reply:
        assert reply.status == 303
    events = front.collector.incidents.timeline(incident.id)
    (note,) = [e for e in events if e.kind == "note"]
    assert note.detail["text"] == "é" * MAX_TEXT
