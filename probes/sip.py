"""SIP OPTIONS: is the phone's SIP stack alive, and how quickly does it answer?

Any final response (200, but also 404, 405, 483, 486, 503 …) proves the stack is alive: many
phones refuse OPTIONS from strangers and still answer. Only silence means it is not. Responses
are matched by Call-ID and CSeq method, so stray datagrams are ignored. Over UDP the request is
retransmitted on RFC 3261's timer E (500 ms, doubling) until the timeout.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from probes.result import ErrorKind, JsonValue, ProbeResult, failed, now, short
from probes.target import Target
from probes.tcp import classify
from sitewatch import __version__
from sitewatch.config.model import SipProbe

T1 = 0.5  # RFC 3261 round-trip estimate: first retransmission after T1, then doubling
RECEIVE_BUFFER = 2**20  # a burst of replies must not overflow the socket
MAX_MESSAGE = 65535
COMPACT = {
    "i": "call-id",
    "v": "via",
    "f": "from",
    "t": "to",
    "l": "content-length",
    "m": "contact",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
}


@dataclass(frozen=True, slots=True)
class SipResponse:
    """A parsed SIP response: status line and headers (lower-case full names)."""

    status: int
    reason: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class SipRequest:
    """A parsed SIP request, enough to answer or check one."""

    method: str
    uri: str
    headers: Mapping[str, str]


def build_options(
    *,
    address: str,
    port: int,
    transport: str,
    local: tuple[str, int],
    call_id: str,
    tag: str,
    branch: str,
) -> bytes:
    """Return an OPTIONS request to `address:port` from the `local` socket address."""
    host = f"[{address}]" if ":" in address else address
    local_host = f"[{local[0]}]" if ":" in local[0] else local[0]
    lines = [
        f"OPTIONS sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {local_host}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:sitewatch@{local_host}>;tag={tag}",
        f"To: <sip:{host}:{port}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <sip:sitewatch@{local_host}:{local[1]};transport={transport}>",
        "Accept: application/sdp",
        f"User-Agent: SiteWatch/{__version__}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse_headers(lines: list[str]) -> dict[str, str] | None:
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            break
        if line[0] in " \t" and headers:  # a folded continuation line
            last = next(reversed(headers))
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        key = name.strip().lower()
        key = COMPACT.get(key, key)
        headers.setdefault(key, value.strip())  # the first of repeated headers (top Via)
    return headers


def _lines(data: bytes) -> list[str] | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").split("\n")


def parse_response(data: bytes) -> SipResponse | None:
    """Return the response in `data`, or None if it is not a well-formed SIP response."""
    lines = _lines(data)
    if not lines or not lines[0].startswith("SIP/2.0 "):
        return None
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        return None
    status = int(parts[1])
    if not 100 <= status <= 699:
        return None
    headers = _parse_headers(lines[1:])
    if headers is None or "call-id" not in headers or "cseq" not in headers:
        return None
    return SipResponse(status, parts[2].strip() if len(parts) > 2 else "", headers)


def parse_request(data: bytes) -> SipRequest | None:
    """Return the request in `data`, or None if it is not a well-formed SIP request."""
    lines = _lines(data)
    if not lines:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not parts[0].isalpha():
        return None
    headers = _parse_headers(lines[1:])
    if headers is None or "call-id" not in headers or "cseq" not in headers:
        return None
    return SipRequest(parts[0], parts[1], headers)


def matches(response: SipResponse, call_id: str) -> bool:
    """Return whether `response` answers our OPTIONS."""
    cseq = response.headers.get("cseq", "").split()
    return response.headers.get("call-id") == call_id and cseq[-1:] == ["OPTIONS"]


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Send one OPTIONS to the phone and report the first final response."""
    spec = target.spec
    if not isinstance(spec, SipProbe):
        raise TypeError(f"sip probe given a {spec.kind} spec")
    started = now()
    call_id = f"{secrets.token_hex(12)}@sitewatch"
    tally = _Tally()
    try:
        async with asyncio.timeout(timeout):
            if spec.transport == "udp":
                response, rtt_ms = await _over_udp(target.address, spec.port, call_id, tally)
            else:
                response, rtt_ms = await _over_tcp(target.address, spec.port, call_id, tally)
    except TimeoutError:
        if tally.garbage:
            detail = f"{tally.garbage} malformed replies and no SIP response in {timeout:g}s"
            return _failed(target, started, "protocol", detail)
        return _failed(target, started, "timeout", f"no SIP response in {timeout:g}s")
    except OSError as err:
        kind, detail = classify(err)
        return _failed(target, started, kind, detail)
    if response is None:
        return _failed(target, started, "protocol", "the peer closed without a SIP response")
    value: dict[str, JsonValue] = {"status": response.status, "reason": response.reason}
    for header in ("user-agent", "server"):
        if header in response.headers:
            value[header.replace("-", "_")] = short(response.headers[header])[:120]
    return ProbeResult(target.name, "sip", started, ok=True, rtt_ms=round(rtt_ms, 3), value=value)


Outcome = tuple[SipResponse | None, float]  # the response (None: the peer closed), rtt in ms


@dataclass
class _Tally:
    """Malformed replies seen, kept outside the coroutine so a timeout does not lose it."""

    garbage: int = 0


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.error: OSError | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.datagrams.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        if isinstance(exc, OSError):
            self.error = exc
            self.datagrams.put_nowait(b"")


async def _over_udp(address: str, port: int, call_id: str, tally: _Tally) -> Outcome:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.setblocking(False)
    try:
        sock.connect((address, port))  # connected: ICMP errors come back to us, others filtered
    except OSError:
        sock.close()
        raise
    transport, receiver = await loop.create_datagram_endpoint(_Receiver, sock=sock)
    try:
        local = sock.getsockname()[:2]
        request = build_options(
            address=address,
            port=port,
            transport="udp",
            local=local,
            call_id=call_id,
            tag=secrets.token_hex(4),
            branch=f"z9hG4bK{secrets.token_hex(8)}",
        )
        begin = time.perf_counter()
        transport.sendto(request)
        interval = T1
        next_send = begin + interval
        while True:
            wait = max(next_send - time.perf_counter(), 0)
            try:
                async with asyncio.timeout(wait):
                    data = await receiver.datagrams.get()
            except TimeoutError:
                transport.sendto(request)  # timer E: retransmit, doubling up to T2 (4 s)
                interval = min(interval * 2, 4.0)
                next_send = time.perf_counter() + interval
                continue
            if receiver.error is not None:
                raise receiver.error
            response = parse_response(data)
            if response is None:
                tally.garbage += 1
            elif matches(response, call_id) and response.status >= 200:
                return response, (time.perf_counter() - begin) * 1000
    finally:
        transport.close()


async def _over_tcp(address: str, port: int, call_id: str, tally: _Tally) -> Outcome:
    begin = time.perf_counter()
    reader, writer = await asyncio.open_connection(address, port)
    try:
        local = writer.get_extra_info("sockname")[:2]
        writer.write(
            build_options(
                address=address,
                port=port,
                transport="tcp",
                local=local,
                call_id=call_id,
                tag=secrets.token_hex(4),
                branch=f"z9hG4bK{secrets.token_hex(8)}",
            )
        )
        await writer.drain()
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            response = parse_response(head)
            length = int(response.headers.get("content-length", "0") or 0) if response else 0
            if length:
                await reader.readexactly(min(length, MAX_MESSAGE))
            if response is None:
                tally.garbage += 1
            elif matches(response, call_id) and response.status >= 200:
                return response, (time.perf_counter() - begin) * 1000
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return None, 0.0
    finally:
        writer.close()


def _failed(target: Target, started: datetime, kind: ErrorKind, detail: str) -> ProbeResult:
    return failed(target.name, "sip", started, kind, f"{target.address}: {detail}")
