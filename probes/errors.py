"""Errors of the probes.

    ProbeError
     ├─ ProbeTimeout          nothing answered in time
     ├─ ProbeUnreachable      no way to the target (no route, blackhole, host unreachable)
     └─ ProbeProtocolError    an answer that the protocol does not allow

Probes raise these only inside themselves: each probe maps library errors to them at its
boundary and turns them into a failed `ProbeResult`, so callers see data, not exceptions.
"""

from __future__ import annotations


class ProbeError(Exception):
    """A probe failed in an expected way."""


class ProbeTimeout(ProbeError):
    """Nothing answered within the timeout."""


class ProbeUnreachable(ProbeError):
    """The target cannot be reached from here."""


class ProbeProtocolError(ProbeError):
    """An answer arrived that the protocol does not allow."""
