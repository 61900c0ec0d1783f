"""RTT and loss of a link over time, drawn on the server as SVG path data.

Results are averaged into BUCKETS equal slices of the period, one line for the agent's view
from inside the site and one for the centre's pings of the link's edge. A slice without results
leaves a gap; a failed probe counts as 100% loss and has no RTT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from collector.store import CENTRE, Stored

WIDTH, HEIGHT = 600.0, 140.0
BUCKETS = 120
SOURCES = ("agent", "centre")


@dataclass(frozen=True, slots=True)
class Series:
    name: str  # agent | centre
    path: str  # SVG path data in the chart's WIDTH x HEIGHT box; empty without data


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    top: str  # the label of the top of the scale
    start: str  # the label of the left end
    end: str  # the label of the right end
    series: tuple[Series, ...]

    @property
    def empty(self) -> bool:
        return not any(series.path for series in self.series)


def link_charts(
    rows: Sequence[Stored], start: float, end: float, tz: ZoneInfo
) -> tuple[Chart, Chart]:
    """Return the RTT chart and the loss chart of one link's ICMP results in [start, end)."""
    width = (end - start) / BUCKETS
    rtt: dict[str, list[list[float]]] = {s: [[] for _ in range(BUCKETS)] for s in SOURCES}
    loss: dict[str, list[list[float]]] = {s: [[] for _ in range(BUCKETS)] for s in SOURCES}
    for row in rows:
        result = row.result
        if result.kind != "icmp":
            continue
        slot = int((result.ts.timestamp() - start) // width)
        if not 0 <= slot < BUCKETS:
            continue
        source = "centre" if row.source == CENTRE else "agent"
        if result.ok and result.rtt_ms is not None:
            rtt[source][slot].append(result.rtt_ms)
        lost = result.loss if result.loss is not None else (0.0 if result.ok else 1.0)
        loss[source][slot].append(lost)
    rtt_means = {s: [_mean(b) for b in rtt[s]] for s in SOURCES}
    loss_means = {s: [_mean(b) for b in loss[s]] for s in SOURCES}
    rtt_top = nice_ceiling(
        max((v for s in SOURCES for v in rtt_means[s] if v is not None), default=1)
    )
    labels = (_label(start, tz), _label(end, tz))
    return (
        Chart(
            "Round-trip time",
            f"{rtt_top:g} ms",
            *labels,
            tuple(Series(s, path(rtt_means[s], rtt_top)) for s in SOURCES),
        ),
        Chart(
            "Packet loss",
            "100%",
            *labels,
            tuple(Series(s, path(loss_means[s], 1.0)) for s in SOURCES),
        ),
    )


def path(values: Sequence[float | None], top: float) -> str:
    """Return SVG path data for `values` scaled to `top`, with a gap for each None."""
    step = WIDTH / max(len(values), 1)
    parts: list[str] = []
    drawing = False
    for index, value in enumerate(values):
        if value is None:
            drawing = False
            continue
        x = (index + 0.5) * step
        y = HEIGHT - min(value / top, 1.0) * HEIGHT
        parts.append(f"{'L' if drawing else 'M'}{x:.1f} {y:.1f}")
        if not drawing:
            parts.append("h0.1")  # a lone point still shows, as a dot with a round cap
        drawing = True
    return " ".join(parts)


SMALLEST = 0.001  # the least top a chart's scale has: a microsecond, a tenth of a percent


def nice_ceiling(value: float) -> float:
    """Return 1, 2 or 5 times a power of ten, at or above `value`, and at least SMALLEST.

    A round trip of 5e-324 ms is a number an agent may send; its power of ten is no float.
    """
    if value <= 0:
        return 1.0
    value = max(value, SMALLEST)
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover -- the loop always returns


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _label(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%d %b %H:%M")
