"""TCP connect: how long a port takes to accept, and how a failure happened.

Refused (something answered "nothing listens here"), timeout (nothing answered) and
unreachable (no route) call for different actions by the service desk, so they stay apart.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from datetime import datetime

from probes.result import ErrorKind, ProbeResult, failed, now, short
from probes.target import Target
from sitewatch.config.model import TcpProbe

_UNREACHABLE_ERRNOS = {
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL, errno.ENETDOWN, errno.EHOSTDOWN,
    errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM,
}  # fmt: skip


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """Open a TCP connection to `target.address` on the spec's port and close it again."""
    spec = target.spec
    if not isinstance(spec, TcpProbe):
        raise TypeError(f"tcp probe given a {spec.kind} spec")
    started = now()
    begin = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(target.address, spec.port)
    except TimeoutError:
        return _failed(target, started, spec.port, "timeout", f"no answer in {timeout:g}s")
    except OSError as err:
        kind, detail = classify(err)
        return _failed(target, started, spec.port, kind, detail)
    rtt_ms = (time.perf_counter() - begin) * 1000
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass  # the connect succeeded, which is what was asked; a rude close changes nothing
    return ProbeResult(
        target.name, "tcp", started, ok=True, rtt_ms=round(rtt_ms, 3), value={"port": spec.port}
    )


def classify(err: OSError) -> tuple[ErrorKind, str]:
    """Return the error kind and a short detail for a failed connection."""
    if isinstance(err, socket.gaierror):
        return "resolve", f"name lookup failed: {err.strerror}"
    if isinstance(err, ConnectionRefusedError):
        return "refused", "connection refused"
    if err.errno == errno.EINVAL:  # Linux's answer for a destination behind a blackhole route
        return "unreachable", "no route (blackholed)"
    if err.errno in _UNREACHABLE_ERRNOS:
        return "unreachable", err.strerror or str(err)
    if err.errno == errno.ETIMEDOUT:
        return "timeout", "connection timed out"
    return "unreachable", short(str(err))


def _failed(
    target: Target, started: datetime, port: int, kind: ErrorKind, detail: str
) -> ProbeResult:
    where = f"{target.address}:{port}: {detail}"
    return failed(target.name, "tcp", started, kind, where, value={"port": port})
