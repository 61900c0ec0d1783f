"""Probe results made by hand, for tests that store or observe them without probing."""

from __future__ import annotations

from datetime import UTC, datetime

from probes.result import ProbeResult


def probe_result(target: str, ts: float, *, ok: bool, detail: str = "") -> ProbeResult:
    """Return a ping of `target` at `ts` (Unix seconds): answered, or timed out (`detail` why)."""
    return ProbeResult(
        target,
        "icmp",
        datetime.fromtimestamp(ts, UTC),
        ok,
        rtt_ms=2.5 if ok else None,
        loss=0.0 if ok else 1.0,
        error_kind=None if ok else "timeout",
        detail=detail,
    )
