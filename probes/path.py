"""The path probe: which link carries this site's traffic now, seen from the agent.

An echo request sent toward the hub with a small TTL dies at the router `ttl` hops out, and
that router's "time exceeded" names it: over the primary the primary's provider edge answers,
after a failover the backup's. The site's plan maps every link to its next hop(s) (`hops`), so
the answering address names the link in use. A ping of a far-end address cannot tell this:
after a failover it is answered over the backup just the same.

The echoes go out on the ICMP engine's shared sockets (`probes/icmp.py`), their TTL carried on
each send. Routers ration their "time exceeded" replies (Linux: one a second per sender after
a burst of six; Cisco: one per 500 ms), so a measurement sends one echo and tries again only
when no answer came in a third of the timeout, and the links of one site share it: their
path probes run at the same tick and ask the same question, so one measurement answers all
of them. Two echoes at once per link would starve each other of the router's replies.

    value: {"toward": "10.99.0.254", "ttl": 1, "hop": "10.99.6.1", "via": "willowvale-mpls"}
    ok: via is the probed link. Another link's hop: "unexpected", naming that link.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from icmplib.exceptions import SocketPermissionError

from probes import icmp
from probes.result import ErrorKind, JsonValue, ProbeResult, failed, now, short
from probes.target import Target
from sitewatch.config.model import PathProbe

ECHOES = 3  # tries at most, one after the other; the first answer decides
Measurement = asyncio.Future[list[icmp.Echo]]
_IN_FLIGHT: dict[tuple[asyncio.AbstractEventLoop, str, int], Measurement] = {}


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Send TTL-limited echoes toward `spec.toward` and report which link's next hop answered."""
    spec = target.spec
    if not isinstance(spec, PathProbe):
        raise TypeError(f"path probe given a {spec.kind} spec")
    started = now()
    value: dict[str, JsonValue] = {"toward": spec.toward, "ttl": spec.ttl, "hop": None, "via": None}
    toward = _canonical(spec.toward)
    if toward is None:
        detail = f"toward {spec.toward!r} is not an IP address"
        return failed(target.name, "path", started, "protocol", detail, value=value)
    value["toward"] = toward
    try:
        echoes = await _measure(toward, spec.ttl, timeout)
    except (icmp.IcmpPermissionError, SocketPermissionError) as err:
        reason = err.strerror if isinstance(err, OSError) else None
        detail = f"{reason or err}: {icmp.PERMISSION_HINT}"
        return failed(target.name, "path", started, "permission", detail, value=value)
    return judge(target.name, spec, toward, started, echoes)


async def _measure(toward: str, ttl: int, timeout: float) -> list[icmp.Echo]:
    """Return the echoes of one measurement toward `toward`, sharing one already under way."""
    key = (asyncio.get_running_loop(), toward, ttl)
    running = _IN_FLIGHT.get(key)
    if running is None:
        running = asyncio.ensure_future(_echoes(toward, ttl, timeout))
        _IN_FLIGHT[key] = running
        running.add_done_callback(lambda _: _IN_FLIGHT.pop(key, None))
    return await asyncio.shield(running)  # a cancelled caller leaves it to the others


async def _echoes(toward: str, ttl: int, timeout: float) -> list[icmp.Echo]:
    """Send one echo at a time, up to ECHOES, until something answers."""
    echoes: list[icmp.Echo] = []
    egress = icmp.Egress(ttl=ttl)
    for _ in range(ECHOES):
        [echo] = await icmp.engine().echo_all([toward], timeout=timeout / ECHOES, egress=egress)
        echoes.append(echo)
        if echo.exceeded or echo.rtt_ms is not None or echo.error_kind not in (None, "timeout"):
            break
    return echoes


def judge(
    name: str, spec: PathProbe, toward: str, started: datetime, echoes: Sequence[icmp.Echo]
) -> ProbeResult:
    """Turn the fates of the echoes into the path result of link `name`."""
    value: dict[str, JsonValue] = {"toward": toward, "ttl": spec.ttl, "hop": None, "via": None}
    hops = Counter(_canonical(e.source) or e.source for e in echoes if e.exceeded)
    if hops:
        hop = hops.most_common(1)[0][0]
        via = link_of(spec, hop)
        value |= {"hop": hop, "via": via}
        answered = f"{hop} answered at TTL {spec.ttl}"
        if via == name:
            return ProbeResult(name, "path", started, ok=True, value=value, detail=answered)
        if via is None:
            detail = f"{answered}, the next hop of no link of this site"
        else:
            detail = f"traffic goes via {via} ({answered})"
        return failed(name, "path", started, "unexpected", detail, value=value)
    if any(e.rtt_ms is not None for e in echoes):
        value["hop"] = toward
        detail = f"{toward} itself answered: it is within {spec.ttl} hop(s), raise the path's ttl"
        return failed(name, "path", started, "unexpected", detail, value=value)
    failure = next((e for e in echoes if e.error_kind not in (None, "timeout")), None)
    if failure is not None and failure.error_kind is not None:
        kind: ErrorKind = failure.error_kind
        return failed(name, "path", started, kind, f"{toward}: {failure.detail}", value=value)
    detail = short(f"{toward}: no hop answered at TTL {spec.ttl}")
    return failed(name, "path", started, "timeout", detail, value=value)


def link_of(spec: PathProbe, hop: str) -> str | None:
    """Return the link whose next hops include `hop`, or None when no link names it."""
    for link, addresses in spec.hops:
        if any(_canonical(address) == hop for address in addresses):
            return link
    return None


def _canonical(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.split("%", maxsplit=1)[0]))
    except ValueError:
        return None
