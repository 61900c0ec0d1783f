"""The collector's HTTP front door: how long a connection may idle, how many one address may
hold, who the client is behind a proxy, and the JSON answer to requests aiohttp refuses itself.

aiohttp's defaults suit a server behind a proxy on a trusted network; the collector faces every
branch site, and anyone on them, directly. So:

- the HTTP parser does not inflate bodies (`auto_decompress=False`): aiohttp would inflate a
  gzip body as it arrives, before any handler could ask who sent it. Handlers authenticate
  first, then inflate in bounded steps (`collector.body`);
- a connection idle for `keepalive` seconds is closed, and so is one that trickles a request's
  headers for that long (aiohttp's keep-alive timer fires while no whole request has arrived);
  a body must arrive within `body_seconds` (`collector.api.read_body`);
- large reads (history, reports, a site's page) run in one pool of their own (`expensive`);
- one address holds at most `per_address` connections; the next is answered 503 and closed
  (a trusted reverse proxy, exempt, carries everyone's connections);
- what the parser refuses before any handler runs (a 10 kB request line, bad HTTP) gets the
  contract's JSON error body, logged at debug: a scanner is not a fault of ours.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from sitewatch.config.model import IPNetwork

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FrontLimits:
    """Every limit of the front door, in one place; tests shorten the timeouts."""

    keepalive: float = 15.0  # seconds a connection may idle, or trickle one request's headers
    body_seconds: float = 20.0  # seconds a body may take to arrive once its handler reads it
    linger: float = 2.0  # seconds spent draining a body nobody read before closing
    per_address: int = 64  # connections held at once by one client address
    max_line: int = 8190  # bytes of the request line, and of one header
    expensive_per_client: int = 2  # history and report reads in flight per token or session
    exempt: tuple[IPNetwork, ...] = ()  # trusted proxies: every browser comes through them

    def handler_args(self) -> dict[str, Any]:
        """Return the keyword arguments of aiohttp's RequestHandler these limits set."""
        return {
            "keepalive_timeout": self.keepalive,
            "lingering_time": self.linger,
            "max_line_size": self.max_line,
            "max_field_size": self.max_line,
            "auto_decompress": False,
        }


FRONT: web.AppKey[FrontLimits] = web.AppKey("front_limits", FrontLimits)


strict_dumps = functools.partial(json.dumps, allow_nan=False)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """Return the contract's error body: `{"error": {"code", "message", ...}}`."""
    return {"error": {"code": code, "message": message, **extra}}


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return `data` as strict JSON: a NaN would be a bug here (readers pass floats `finite`)."""
    return web.json_response(data, status=status, headers=headers, dumps=strict_dumps)


def error_json(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """Return the contract's error response; one helper for the front door and the API."""
    return json_response(error_body(code, message, **extra), status=status, headers=headers)


class FrontHandler(RequestHandler):
    """aiohttp's per-connection protocol, with the contract's errors and the address cap."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if isinstance(server, FrontServer) and server.crowded(self):
            log.debug("refused a connection: %s holds too many", server.address_of(self))
            transport.write(_CROWDED)  # type: ignore[attr-defined]
            self.force_close()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer what the parser (or a broken handler) refused with the JSON error body."""
        if status >= 500:
            log.error("error serving %s", request.remote, exc_info=exc)
        else:
            log.debug("refused bad HTTP from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer is half sent: the connection is closed instead")
        code, text = _describe(status, exc, message)
        response = error_json(status, code, text)
        response.force_close()
        return response


def _describe(status: int, exc: BaseException | None, message: str | None) -> tuple[str, str]:
    """Return the code and message for a request the framework refused."""
    if isinstance(exc, LineTooLong):
        return "too_long", "the request line or a header is too long"
    if isinstance(exc, HttpProcessingError):
        return "bad_request", f"not a valid HTTP request: {exc.message}"[:300]
    if status == 504:
        return "timeout", "the request took too long"
    if status >= 500:
        return "internal", "internal error, see the log"
    return "bad_request", (message or HTTPStatus(status).phrase)[:300]


_CROWDED_BODY = b'{"error": {"code": "too_many_connections", "message": "too many connections from this address"}}'  # noqa: E501 -- one literal
_CROWDED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 5\r\n\r\n%s"
    % (len(_CROWDED_BODY), _CROWDED_BODY)
)


class FrontServer(web.Server):
    """aiohttp's server, making FrontHandlers and counting connections per client address."""

    def __init__(
        self, *args: Any, per_address: int, exempt: tuple[IPNetwork, ...], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.per_address, self.exempt = per_address, exempt
        self._addresses: dict[RequestHandler, str] = {}
        self._counts: Counter[str] = Counter()

    def __call__(self) -> RequestHandler:
        return FrontHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        address = _host(transport.get_extra_info("peername"))
        self._addresses[handler] = address
        self._counts[address] += 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        address = self._addresses.pop(handler, None)
        if address is not None:
            self._counts[address] -= 1
            if self._counts[address] <= 0:
                del self._counts[address]

    def address_of(self, handler: RequestHandler) -> str:
        return self._addresses.get(handler, "unknown")

    def crowded(self, handler: RequestHandler) -> bool:
        """Return whether `handler`'s address holds more connections than it may."""
        address = self.address_of(handler)
        return self._counts[address] > self.per_address and not _inside(address, self.exempt)


def _host(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class FrontRunner(web.AppRunner):
    """An AppRunner whose server is a FrontServer, with the app's FrontLimits."""

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        limits = self.app.get(FRONT) or FrontLimits()
        return FrontServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            per_address=limits.per_address,
            exempt=limits.exempt,
            **plain._kwargs,
        )


def client_address(request: web.BaseRequest, trusted: tuple[IPNetwork, ...]) -> str:
    """Return the client's address: the rightmost X-Forwarded-For hop no trusted proxy holds.

    Only a peer inside `trusted` is believed; anyone else could write any X-Forwarded-For.
    Hops are read right to left, because each proxy appends the address it saw: the first one
    outside `trusted` is the client as far as anyone we trust can tell. A hop that is not an
    address ends the walk at the last proxy we believed.
    """
    peer = _address(request.remote or "")
    if peer is None:
        return request.remote or "unknown"
    believed = str(peer)
    if not _trusted(peer, trusted):
        return believed
    hops = ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
    for hop in reversed([h.strip() for h in hops if h.strip()]):
        address = _address(hop)
        if address is None:
            return believed
        believed = str(address)
        if not _trusted(address, trusted):
            return believed
    return believed


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the address in `text`; an IPv4 peer of a dual-stack socket (::ffff:a.b.c.d) as IPv4.

    Without that, an IPv4 proxy reaching a listener on [::] would match no IPv4 CIDR.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: tuple[IPNetwork, ...]
) -> bool:
    return any(address in network for network in trusted)


def _inside(text: str, trusted: tuple[IPNetwork, ...]) -> bool:
    address = _address(text)
    return address is not None and _trusted(address, trusted)


MAX_TEXT = 4_000  # characters of a staff note, through the API or a dashboard form


def whole_number(text: str) -> int | None:
    """Return the number an id or limit in a URL gives, or None (not "²", not 40 digits)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


EXPENSIVE: web.AppKey[ThreadPoolExecutor] = web.AppKey("expensive_reads", ThreadPoolExecutor)
EXPENSIVE_THREADS = 1  # large reads at once, whoever asks: each holds the GIL while it builds
Built = TypeVar("Built")


async def expensive(request: web.Request, work: Callable[[], Built]) -> Built:
    """Run a large read in the expensive-read pool, off the event loop and the default pool.

    The API's history and report and the dashboard's site and report pages all read here: one
    thread, so large reads take turns for the GIL and the store's lock instead of piling up.
    """
    return await asyncio.get_running_loop().run_in_executor(request.app[EXPENSIVE], work)


async def expensive_pool(app: web.Application) -> AsyncIterator[None]:
    """Hold the large-read pool for the app's life; cleanup waits for reads still running."""
    pool = ThreadPoolExecutor(EXPENSIVE_THREADS, thread_name_prefix="sitewatch-read")
    app[EXPENSIVE] = pool
    yield
    await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
