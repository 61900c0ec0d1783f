"""Probes: one module per kind, each an async function from a target to a result.

    PROBES["icmp"](target, timeout=2.0) -> ProbeResult

The registry is explicit: each kind is listed below, once; registering a kind twice is a bug
and raises. Nothing is discovered by scanning files.
"""

from __future__ import annotations

import sys
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
from probes import host, http, icmp, path, sip, tcp  # noqa: E402


async def _snmp(target: Target, *, timeout: float) -> ProbeResult:
    """The SNMP probe, imported on first use: pysnmp and its MIBs hold some 15 MB of memory,
    which an agent whose site has no SNMP devices need not carry."""
    from probes import snmp  # noqa: PLC0415

    return await snmp.probe(target, timeout=timeout)


async def _interface(target: Target, *, timeout: float) -> ProbeResult:
    """A router's IF-MIB row for one link, on the SNMP probe's machinery (imported as above)."""
    from probes import snmp  # noqa: PLC0415

    return await snmp.interface_probe(target, timeout=timeout)


register("icmp", icmp.probe)
register("tcp", tcp.probe)
register("http", http.probe)
register("snmp", _snmp)
register("sip", sip.probe)
register("host", host.probe)
register("interface", _interface)
register("path", path.probe)


def close() -> None:
    """Close the sockets the probes share in this event loop; call it before the loop ends."""
    icmp.close()
    snmp = sys.modules.get("probes.snmp")
    if snmp is not None:
        snmp.close()


__all__ = ["PROBES", "HostProbe", "ProbeFn", "ProbeResult", "Target", "close", "register"]
