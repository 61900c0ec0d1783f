"""Probes: one module per kind, each an async function from a target to a result.

    PROBES["icmp"](target, timeout=2.0) -> ProbeResult

The registry is explicit: each kind is listed below, once; registering a kind twice is a bug
and raises. Nothing is discovered by scanning files.
"""

from __future__ import annotations

from typing import Protocol

from probes.result import ProbeResult
from probes.target import HostProbe, Target


class ProbeFn(Protocol):
    """The shape of every probe."""

    async def __call__(self, target: Target, *, timeout: float) -> ProbeResult:
        """Probe `target` once, within `timeout` seconds, and return what was found."""
        ...


PROBES: dict[str, ProbeFn] = {}


def register(kind: str, probe: ProbeFn) -> None:
    """Add a probe kind to the registry."""
    if kind in PROBES:
        raise ValueError(f"probe kind {kind!r} is registered twice")
    PROBES[kind] = probe


# Imported here, after the registry exists, so that each module can import this package.
from probes import host, http, icmp, sip, snmp, tcp  # noqa: E402

register("icmp", icmp.probe)
register("tcp", tcp.probe)
register("http", http.probe)
register("snmp", snmp.probe)
register("sip", sip.probe)
register("host", host.probe)


def close() -> None:
    """Close the sockets the probes share in this event loop; call it before the loop ends."""
    icmp.close()
    snmp.close()


__all__ = ["PROBES", "HostProbe", "ProbeFn", "ProbeResult", "Target", "close", "register"]
