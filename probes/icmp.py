"""ICMP echo: one probe, and sweeps of many hosts on one shared socket per address family.

A raw ICMP socket receives a copy of every echo reply that reaches the host, so a socket per
probe costs O(n²) work when hundreds of probes run at once (that is what icmplib's
`async_multiping` does). Here one `IcmpEngine` per event loop owns one socket per family, sends
every request itself and hands each reply to the waiting request by identifier and sequence
number; a sweep of N dead hosts costs one timeout, not N.

icmplib opens the sockets: raw when this process may (root or CAP_NET_RAW), else the kernel's
unprivileged datagram ICMP (`net.ipv4.ping_group_range`), and says which permission is missing
when neither works. Packets are built and parsed here, because the engine needs the ICMP errors
(destination unreachable, time exceeded) matched to the request that caused them.

A request may leave a particular way (`Egress`): from one of this host's addresses, out of one
of its interfaces, or with a small TTL. These ride on each send as ancillary data (IP_PKTINFO,
IP_TTL and their IPv6 twins), so bound pings and the path probe (`probes/path.py`) share the
same sockets instead of opening one per way out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import itertools
import logging
import math
import os
import socket
import struct
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from icmplib import ICMPv4Socket, ICMPv6Socket
from icmplib.exceptions import ICMPSocketError, SocketPermissionError

from probes.result import ErrorKind, JsonValue, ProbeResult, now, short
from probes.target import Target
from sitewatch.config.model import IcmpProbe

log = logging.getLogger(__name__)

PAYLOAD = b"SiteWatch-icmp-probe-0123456789ab"  # 32 bytes + 1: recognisable in a capture
MAX_SEQUENCE = 0x10000
RECEIVE_BUFFER = 4 * 2**20  # a sweep's replies arrive in a burst
MAX_ERRORS_PER_READ = 64  # socket errors read in one wake-up before yielding to the loop
PERMISSION_HINT = (
    "ICMP needs a raw socket (run as root, or grant CAP_NET_RAW: the agent's systemd unit does) "
    "or unprivileged ICMP (sysctl net.ipv4.ping_group_range='0 2147483647')"
)

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python 3.11 lacks it
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}
_UNREACHABLE = {4: 3, 6: 1}
_TIME_EXCEEDED = {4: 11, 6: 3}
_UNREACHABLE_ERRNOS = {
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENETDOWN,
    errno.EHOSTDOWN, errno.EACCES,
}  # fmt: skip
# EINVAL: Linux's answer to a send into a blackhole route; EACCES: a prohibit route or firewall.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's values; Python does not export them
IP_RECVERR, IPV6_RECVERR = getattr(socket, "IP_RECVERR", 11), getattr(socket, "IPV6_RECVERR", 25)
_RECVERR = {4: (socket.IPPROTO_IP, IP_RECVERR), 6: (socket.IPPROTO_IPV6, IPV6_RECVERR)}
_EXTENDED_ERROR = struct.Struct("=IBBBBII")  # struct sock_extended_err
_FROM_ICMP = {2, 3}  # SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6


@dataclass(frozen=True, slots=True)
class Egress:
    """How a request leaves this host: from an address, out of an interface, with a TTL.

    The default is the kernel's choice of all three. A source address or an interface makes
    the kernel send by that way only, so an echo that comes back proves that way works.
    """

    source: str | None = None  # one of this host's addresses, canonical form
    ifindex: int = 0  # 0: any interface
    ttl: int | None = None  # IPv4 TTL or IPv6 hop limit; None: the system's default

    def ancillary(self, version: int) -> list[tuple[int, int, bytes]]:
        """Return the control messages that make one send leave this way."""
        messages: list[tuple[int, int, bytes]] = []
        if self.source is not None or self.ifindex:
            if version == 4:
                source = socket.inet_aton(self.source or "0.0.0.0")  # noqa: S104 -- "any"
                info = struct.pack("@i4s4s", self.ifindex, source, bytes(4))
                messages.append((socket.IPPROTO_IP, IP_PKTINFO, info))
            else:
                source = socket.inet_pton(socket.AF_INET6, self.source or "::")
                info = struct.pack("@16si", source, self.ifindex)
                messages.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info))
        if self.ttl is not None:
            level, name = (
                (socket.IPPROTO_IP, socket.IP_TTL)
                if version == 4
                else (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)
            )
            messages.append((level, name, struct.pack("@i", self.ttl)))
        return messages


ANY_WAY = Egress()


@dataclass(frozen=True, slots=True)
class Echo:
    """The fate of one echo request: its round-trip time, or why there is none."""

    rtt_ms: float | None
    error_kind: ErrorKind | None = None
    detail: str = ""
    source: str = ""  # who answered: the host that replied, or the router that sent an error
    exceeded: bool = False  # the answer was "time exceeded": the TTL ran out at `source`


@dataclass(slots=True)
class _Pending:
    """A request in flight: where it went, when, and the future its fate settles."""

    destination: str
    sent: int  # time.time_ns() at send: the kernel stamps replies on the same clock
    future: asyncio.Future[Echo]


class IcmpPermissionError(OSError):
    """Neither raw nor unprivileged ICMP sockets may be opened by this process."""


class _Family:
    """One socket of one address family, with the requests waiting on it."""

    def __init__(self, version: int, loop: asyncio.AbstractEventLoop, identifier: int) -> None:
        self.version = version
        self.loop = loop
        self.icmp_socket = _open(version)
        self.sock: socket.socket = self.icmp_socket.sock
        self.sock.setblocking(False)
        self.privileged: bool = self.icmp_socket.is_privileged
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        # Kernel receive timestamps: a reply's RTT must not include the time the event loop
        # took to get round to reading it (a sweep sends hundreds of requests first).
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # A datagram ICMP socket gets its identifier from the kernel (the local "port").
        self.identifier = identifier if self.privileged else self.sock.getsockname()[1]
        self.waiting: dict[int, _Pending] = {}
        self.next_sequence = int.from_bytes(os.urandom(2), "big")
        self._room: asyncio.Future[None] | None = None  # set when the send buffer has room
        # A raw socket reads ICMP errors like any packet; a datagram one gets them only on its
        # error queue, and only if asked: without them a path probe would hear nothing.
        if not self.privileged:
            self.sock.setsockopt(*_RECVERR[version], 1)
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        if self._room is not None:
            self.loop.remove_writer(self.sock.fileno())
            self._room.cancel()
        self.icmp_socket.close()
        for pending in self.waiting.values():
            if not pending.future.done():
                pending.future.cancel()
        self.waiting.clear()

    def take_sequence(self) -> int:
        """Return a sequence number no request in flight is using."""
        for _ in range(MAX_SEQUENCE):
            sequence = self.next_sequence
            self.next_sequence = (sequence + 1) % MAX_SEQUENCE
            if sequence not in self.waiting:
                return sequence
        raise RuntimeError("65536 ICMP requests in flight on one socket")

    async def room(self) -> None:
        """Wait until the send buffer has room; every waiting sender shares one writer."""
        if self._room is None or self._room.done():
            self._room = self.loop.create_future()
            self.loop.add_writer(self.sock.fileno(), self._on_writable)
        await asyncio.shield(self._room)

    def _on_writable(self) -> None:
        self.loop.remove_writer(self.sock.fileno())
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def packet(self, sequence: int) -> bytes:
        header = struct.pack("!BBHHH", _ECHO_REQUEST[self.version], 0, 0, self.identifier, sequence)
        if self.version == 6 or not self.privileged:
            return header + PAYLOAD  # the kernel fills in the checksum
        checksum = _checksum(header + PAYLOAD)
        return struct.pack("!BBHHH", 8, 0, checksum, self.identifier, sequence) + PAYLOAD

    def _on_readable(self) -> None:
        if not self.privileged:
            self._read_error_queue()
        errors = 0
        while True:
            try:
                data, ancillary, _, source = self.sock.recvmsg(2048, _TIMESTAMP_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:  # a datagram socket's pending error, read from its queue
                log.debug("ICMP socket error: %s", err)
                errors += 1
                if self.privileged or errors > MAX_ERRORS_PER_READ:
                    return  # the next wake-up reads on; an error that stays cannot spin here
                self._read_error_queue()
                continue
            self._dispatch(data, source[0], _kernel_time_ns(ancillary))

    def _read_error_queue(self) -> None:
        """Settle the requests whose ICMP errors a datagram socket queued (IP_RECVERR).

        Each entry holds the echo request's own header (its sequence number) and, in the
        control message, the ICMP type and code and the address of the router that sent it.
        """
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.debug("ICMP error queue unreadable: %s", err)
                return
            for level, kind, info in ancillary:
                if (level, kind) != _RECVERR[self.version] or len(info) < _EXTENDED_ERROR.size:
                    continue
                _, origin, icmp_type, code, _, _, _ = _EXTENDED_ERROR.unpack_from(info)
                if origin in _FROM_ICMP and len(data) >= 8:
                    sequence = struct.unpack_from("!H", data, 6)[0]
                    source = _offender(info[_EXTENDED_ERROR.size :], self.version)
                    self._fail(sequence, icmp_type, code, source)

    def _dispatch(self, data: bytes, source: str, received: int) -> None:
        if self.version == 4 and self.privileged:
            if len(data) < 20:
                return
            data = data[(data[0] & 0x0F) * 4 :]  # drop the IPv4 header
        if len(data) < 8:
            return
        kind, code, _, identifier, sequence = struct.unpack_from("!BBHHH", data)
        if kind == _ECHO_REPLY[self.version]:
            if self.privileged and identifier != self.identifier:
                return  # another program's ping: raw sockets see every reply
            self._settle(sequence, source, received, None, "")
        elif kind in (_UNREACHABLE[self.version], _TIME_EXCEEDED[self.version]):
            self._settle_error(data, kind, code, source)

    def _settle(
        self,
        sequence: int,
        source: str,
        received: int,
        kind: ErrorKind | None,
        detail: str,
        *,
        exceeded: bool = False,
    ) -> None:
        pending = self.waiting.get(sequence)
        if pending is None or pending.future.done():
            return
        if kind is None:
            if source == pending.destination or _same_address(source, pending.destination):
                rtt_ms = max(received - pending.sent, 0) / 1e6
                pending.future.set_result(Echo(rtt_ms=rtt_ms, source=source))
        else:
            fate = Echo(None, kind, detail, source=source, exceeded=exceeded)
            pending.future.set_result(fate)

    def _settle_error(self, data: bytes, kind: int, code: int, source: str) -> None:
        """Match an ICMP error to the request it quotes, and fail that request."""
        inner = data[8:]
        if self.version == 4:
            if len(inner) < 28:
                return
            inner = inner[(inner[0] & 0x0F) * 4 :]
        else:
            if len(inner) < 48:
                return
            inner = inner[40:]
        if len(inner) < 8:
            return
        inner_kind, _, _, identifier, sequence = struct.unpack_from("!BBHHH", inner)
        if inner_kind != _ECHO_REQUEST[self.version] or (
            self.privileged and identifier != self.identifier
        ):
            return
        self._fail(sequence, kind, code, source)

    def _fail(self, sequence: int, kind: int, code: int, source: str) -> None:
        """Fail a request with the ICMP error (type `kind`) that `source` sent about it."""
        exceeded = kind == _TIME_EXCEEDED[self.version]
        what = "time exceeded" if exceeded else "unreachable"
        detail = f"{what} (code {code}) from {source}"
        self._settle(sequence, source, 0, "unreachable", detail, exceeded=exceeded)


class IcmpEngine:
    """Sends echo requests for any number of hosts over one socket per address family."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._identifier = (os.getpid() ^ int.from_bytes(os.urandom(2), "big")) & 0xFFFF
        self._families: dict[int, _Family] = {}

    def close(self) -> None:
        """Close the sockets; requests still waiting are cancelled."""
        for family in self._families.values():
            family.close()
        self._families.clear()

    def _family(self, version: int) -> _Family:
        if version not in self._families:
            self._families[version] = _Family(version, self._loop, self._identifier)
        return self._families[version]

    async def echo_all(
        self, addresses: Sequence[str], *, timeout: float, egress: Egress = ANY_WAY
    ) -> list[Echo]:
        """Send one echo request to each IP address at once; return each one's fate in order.

        All requests go out back to back, leaving by `egress`, and share one deadline, so
        the whole round costs one timeout however many hosts are dead.
        """
        pending: list[_Pending | Echo] = []
        waiting: list[tuple[_Family, int]] = []
        try:
            for address in addresses:
                family = self._family(6 if ":" in address else 4)  # addresses are normalised
                sequence = family.take_sequence()
                entry = _Pending(address, 0, self._loop.create_future())
                family.waiting[sequence] = entry
                waiting.append((family, sequence))
                failure = await self._send(family, sequence, entry, egress)
                pending.append(failure or entry)
            futures = [entry.future for entry in pending if isinstance(entry, _Pending)]
            if futures:
                await asyncio.wait(futures, timeout=timeout)
            return [_fate(entry, timeout) for entry in pending]
        finally:
            for family, sequence in waiting:
                family.waiting.pop(sequence, None)

    async def _send(
        self, family: _Family, sequence: int, entry: _Pending, egress: Egress
    ) -> Echo | None:
        packet = family.packet(sequence)
        ancillary = egress.ancillary(family.version)
        destination = (entry.destination, 0)
        while True:
            entry.sent = time.time_ns()
            try:
                family.sock.sendmsg([packet], ancillary, 0, destination)
            except BlockingIOError:  # the send buffer is full: wait for room, then send
                await family.room()
            except OSError as err:
                return _send_failure(err)
            else:
                return None

    async def ping_all(
        self,
        addresses: Sequence[str],
        *,
        count: int,
        interval: float,
        timeout: float,
        egress: Egress = ANY_WAY,
    ) -> list[list[Echo]]:
        """Send `count` rounds `interval` seconds apart; return each address's echoes."""
        rounds: list[asyncio.Task[list[Echo]]] = []
        async with asyncio.TaskGroup() as group:
            for index in range(count):
                if index:
                    await asyncio.sleep(interval)  # pacing between rounds, not synchronisation
                echoes = self.echo_all(addresses, timeout=timeout, egress=egress)
                rounds.append(group.create_task(echoes))
        results = [task.result() for task in rounds]
        return [list(echoes) for echoes in zip(*results, strict=True)] if results else []


_ENGINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IcmpEngine] = (
    weakref.WeakKeyDictionary()
)


def close() -> None:
    """Close this event loop's ICMP sockets; a later probe opens new ones."""
    shared = _ENGINES.pop(asyncio.get_running_loop(), None)
    if shared is not None:
        shared.close()


def engine() -> IcmpEngine:
    """Return this event loop's shared engine, opening it on first use."""
    loop = asyncio.get_running_loop()
    if loop not in _ENGINES:
        _ENGINES[loop] = IcmpEngine()
    return _ENGINES[loop]


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Ping one target `spec.count` times and report loss, round-trip times and jitter."""
    if not isinstance(target.spec, IcmpProbe):
        raise TypeError(f"icmp probe given a {target.spec.kind} spec")
    [result] = await sweep([target], timeout=timeout)
    return result


async def sweep(targets: Sequence[Target], *, timeout: float) -> list[ProbeResult]:
    """Ping many targets at once on the shared sockets; results come back in the same order.

    Targets are grouped by their count, interval and way out (a spec's `source` or `via`),
    and each group is pinged in rounds; host names are resolved first, all at once. A way
    out this host does not have (an address it does not own, an interface it lacks) fails
    that target at once, naming what is missing.
    """
    started = now()
    addresses: list[str | ProbeResult] = [_literal(t.address) or "" for t in targets]
    names = [i for i, address in enumerate(addresses) if not address]
    if names:  # only host names need a lookup; addresses are taken as they are
        found = await asyncio.gather(*(_resolve(targets[i].address, timeout) for i in names))
        for index, address in zip(names, found, strict=True):
            addresses[index] = address
    results: list[ProbeResult | None] = [
        a if isinstance(a, ProbeResult) else None for a in addresses
    ]
    groups: dict[tuple[int, float, Egress], list[int]] = {}
    for index, target in enumerate(targets):
        if results[index] is None:
            spec = target.spec
            if not isinstance(spec, IcmpProbe):
                groups.setdefault((1, 0.0, ANY_WAY), []).append(index)
                continue
            way = egress(spec.source, spec.via, str(addresses[index]))
            if isinstance(way, str):
                results[index] = _unsendable(target.name, started, str(addresses[index]), way)
            else:
                groups.setdefault((spec.count, spec.interval, way), []).append(index)
    refused: BaseException | None = None
    try:
        shared = engine()
        async with asyncio.TaskGroup() as group:
            tasks = {
                shape: group.create_task(
                    shared.ping_all(
                        [str(addresses[i]) for i in members],
                        count=shape[0], interval=shape[1], timeout=timeout, egress=shape[2],
                    )
                )
                for shape, members in groups.items()
            }  # fmt: skip
    except* (IcmpPermissionError, SocketPermissionError) as group_error:
        refused = group_error
        while isinstance(refused, BaseExceptionGroup):
            refused = refused.exceptions[0]
    if refused is not None:
        reason = refused.strerror if isinstance(refused, OSError) else None
        detail = short(f"{reason or refused}: {PERMISSION_HINT}")
        return [
            ProbeResult(t.name, "icmp", started, ok=False, error_kind="permission", detail=detail)
            for t in targets
        ]
    for shape, members in groups.items():
        for index, echoes in zip(members, tasks[shape].result(), strict=True):
            result = summarise(targets[index].name, started, echoes, str(addresses[index]))
            results[index] = _bound(result, targets[index].spec)
    return [result for result in results if result is not None]


def _bound(result: ProbeResult, spec: object) -> ProbeResult:
    """Say in a bound ping's result how it was sent, so the collector counts it as bound.

    The inventory binding a link's ping is not proof that it went out bound: an agent too
    old to know `source`/`via` sends it by any path. The result carries the proof instead.
    """
    if not isinstance(spec, IcmpProbe) or (spec.source is None and spec.via is None):
        return result
    way = {key: value for key, value in (("source", spec.source), ("via", spec.via)) if value}
    return dataclasses.replace(result, value={**result.value, **way})


def egress(source: str | None, via: str | None, address: str) -> Egress | str:
    """Return the way out a ping to `address` must take, or why this host cannot take it.

    Checked before sending: the kernel would refuse a foreign source address with a bare
    EINVAL, and an unknown interface cannot even be named in a send.
    """
    ifindex = 0
    if via is not None:
        try:
            ifindex = socket.if_nametoindex(via)
        except OSError:
            return f"no interface named {via} on this host"
    if source is None:
        return Egress(ifindex=ifindex)
    try:
        own = ipaddress.ip_address(source)
    except ValueError:
        return f"source {source} is not an IP address"
    if own.version != (6 if ":" in address else 4):
        return f"source {source} is IPv{own.version}, {address} is not"
    family = socket.AF_INET6 if own.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((str(own), 0))  # binds only to an address of this host
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                return f"source {source} is not an address of this host"
            return f"source {source} cannot be used: {err.strerror}"
    return Egress(source=str(own), ifindex=ifindex)


def _unsendable(name: str, started: datetime, address: str, why: str) -> ProbeResult:
    """Return the result of a ping that could not leave the way its spec says: all lost."""
    value: dict[str, JsonValue] = {"address": address, "sent": 0, "received": 0}
    detail = short(f"{address}: {why}")
    return ProbeResult(
        name, "icmp", started, ok=False, loss=1.0, value=value, error_kind="unreachable",
        detail=detail,
    )  # fmt: skip


def _literal(address: str) -> str | None:
    """Return an IP address in canonical form, or None for a host name."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


async def _resolve(name: str, timeout: float) -> str | ProbeResult:
    """Return an IP address for the host name `name`, or a failed result saying why not."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_RAW)
    except (socket.gaierror, TimeoutError, UnicodeError) as err:
        detail = "name lookup timed out" if isinstance(err, TimeoutError) else str(err)
        return ProbeResult(
            name, "icmp", now(), ok=False, error_kind="resolve", detail=short(f"{name}: {detail}")
        )
    return str(infos[0][4][0])


def summarise(name: str, started: datetime, echoes: Iterable[Echo], address: str) -> ProbeResult:
    """Turn the echoes of one target into one result: loss, min/avg/max RTT and jitter."""
    echoes = list(echoes)
    rtts = [e.rtt_ms for e in echoes if e.rtt_ms is not None]
    loss = 1 - len(rtts) / len(echoes) if echoes else 1.0
    value: dict[str, JsonValue] = {"address": address, "sent": len(echoes), "received": len(rtts)}
    if rtts:
        value |= {
            "rtt_min_ms": round(min(rtts), 3),
            "rtt_avg_ms": round(sum(rtts) / len(rtts), 3),
            "rtt_max_ms": round(max(rtts), 3),
            "jitter_ms": round(_jitter(rtts), 3),
        }
        average = round(sum(rtts) / len(rtts), 3)
        return ProbeResult(name, "icmp", started, ok=True, rtt_ms=average, loss=loss, value=value)
    failure = next((e for e in echoes if e.error_kind != "timeout"), echoes[0] if echoes else None)
    kind: ErrorKind = failure.error_kind if failure and failure.error_kind else "timeout"
    detail = failure.detail if failure else "nothing sent"
    detail = short(f"{address}: {detail}")
    return ProbeResult(
        name, "icmp", started, ok=False, loss=loss, value=value, error_kind=kind, detail=detail
    )


def _jitter(rtts: Sequence[float]) -> float:
    """Return the mean absolute difference between consecutive round trips (as icmplib does)."""
    if len(rtts) < 2:
        return 0.0
    return math.fsum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)


def _fate(entry: _Pending | Echo, timeout: float) -> Echo:
    if isinstance(entry, Echo):
        return entry
    if entry.future.done():
        return entry.future.result()
    entry.future.cancel()
    return Echo(rtt_ms=None, error_kind="timeout", detail=f"no reply in {timeout:g}s")


def _send_failure(err: OSError) -> Echo:
    if err.errno in _UNREACHABLE_ERRNOS:
        return Echo(rtt_ms=None, error_kind="unreachable", detail=f"cannot send: {err.strerror}")
    if err.errno == errno.EPERM:
        return Echo(rtt_ms=None, error_kind="permission", detail=f"cannot send: {err.strerror}")
    raise err  # anything else is not a property of the target: let it be seen


def _open(version: int) -> ICMPv4Socket | ICMPv6Socket:
    """Open a raw ICMP socket if allowed, else an unprivileged one, else say what is missing."""
    cls = ICMPv4Socket if version == 4 else ICMPv6Socket
    try:
        return cls(privileged=True)
    except SocketPermissionError:
        pass
    try:
        return cls(privileged=False)
    except (SocketPermissionError, ICMPSocketError) as err:
        raise IcmpPermissionError(errno.EPERM, f"cannot open an ICMPv{version} socket") from err


def _kernel_time_ns(ancillary: list[tuple[int, int, bytes]]) -> int:
    """Return when the kernel received a packet, or now if it did not say."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack_from("@qq", data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return time.time_ns()


def _offender(address: bytes, version: int) -> str:
    """Return the address in the sockaddr after a sock_extended_err, or "" if there is none."""
    try:
        if version == 4 and len(address) >= 8 and address[:2] != bytes(2):
            return socket.inet_ntop(socket.AF_INET, address[4:8])
        if version == 6 and len(address) >= 24 and address[:2] != bytes(2):
            return socket.inet_ntop(socket.AF_INET6, address[8:24])
    except ValueError:
        pass
    return ""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _same_address(source: str, destination: str) -> bool:
    try:
        return ipaddress.ip_address(source.split("%", maxsplit=1)[0]) == ipaddress.ip_address(
            destination
        )
    except ValueError:
        return False
