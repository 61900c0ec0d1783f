"""`/reports`: the monthly SLA and availability report, for the management meeting.

The figures come from `collector.report` (the same report as `sitewatch report sla` and
`/api/v1/reports/sla`), for whole months in the organisation's time zone. `report_tables`
turns the report's JSON into the page's tables; `/reports/sla.csv?month=YYYY-MM` downloads the
report module's CSV.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from collector import report
from collector.appkeys import CLOCK, CONFIG, STORE
from collector.dashboard.auth import PageError, guard
from collector.dashboard.render import duration, render
from collector.dashboard.sessions import Session
from collector.front import expensive
from collector.times import local_time
from sitewatch.config.model import PRIORITIES

REPORT_API = "/api/v1/reports/sla"
MONTH = re.compile(r"(\d{4})-(\d{2})")
MET = {True: "yes", False: "NO", None: "—"}


@dataclass(frozen=True, slots=True)
class Table:
    """One table of a report: a title, column names and rows of cells as text."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def report_tables(body: Mapping[str, Any], tz: ZoneInfo) -> list[Table]:
    """Return the tables of a report in the JSON form of `collector.report.report_json`."""
    priorities = Table(
        "Incidents resolved within target",
        report.PRIORITY_HEADERS,
        tuple(
            (
                str(p.get("priority")),
                f"{percent(p.get('target'), 0)} in {duration(p.get('resolve_within_s') or 0)}",
                *(str(p.get(k, 0)) for k in ("opened", "resolved", "within_target")),
                *(str(p.get(k, 0)) for k in ("breached", "pending")),
                percent(p.get("achieved")),
                MET.get(p.get("target_met"), "—"),
                _seconds(p.get("mean_to_resolve_s")),
                _seconds(p.get("p95_to_resolve_s")),
            )
            for p in body.get("priorities", [])
        ),
    )
    shown = [s for s in body.get("sites", []) if s.get("monitored")]
    overall = body.get("overall")
    sites = Table(
        "Site availability",
        ("Site", "Users", "24/7", "Business hours", "Down", "Unknown", *PRIORITIES),
        tuple(_site_row(s) for s in [*shown, *([overall] if overall else [])]),
    )
    majors = Table(
        "Major incidents",
        ("#", "Priority", "Title", "Opened", "Resolved", "Duration", "Outcome"),
        tuple(
            (
                str(m.get("id")),
                str(m.get("priority")),
                str(m.get("title")),
                local_time(m.get("opened_at"), tz),
                local_time(m.get("resolved_at"), tz),
                _seconds(m.get("duration_s")),
                str(m.get("outcome")),
            )
            for m in body.get("major_incidents", [])
        ),
    )
    return [priorities, sites, majors]


def _site_row(site: Mapping[str, Any]) -> tuple[str, ...]:
    seconds = site.get("seconds") or {}
    counts = site.get("incidents") or {}
    return (
        str(site.get("name")),
        str(site.get("users")),
        percent(site.get("availability")),
        percent(site.get("business_hours_availability")),
        _seconds(seconds.get("down")),
        _seconds(seconds.get("unknown")),
        *(str(counts.get(p, 0)) for p in PRIORITIES),
    )


def percent(share: object, decimals: int = 2) -> str:
    """Return a share 0..1 as a percentage; "—" when there is none."""
    return f"{100 * share:.{decimals}f}%" if isinstance(share, int | float) else "—"


def _seconds(value: object) -> str:
    return duration(value) if isinstance(value, int | float) else "—"


def month_days(text: str | None, tz: ZoneInfo) -> tuple[str, date, date]:
    """Return (YYYY-MM, its first day, its last day); this month without `text`."""
    if not text:
        today = datetime.now(tz).date()
        text = f"{today.year:04d}-{today.month:02d}"
    match = MONTH.fullmatch(text)
    if match is None or not 1 <= int(match[2]) <= 12 or not 1970 <= int(match[1]) <= 9998:
        raise PageError(400, "Bad month", f"month: {text!r} is not YYYY-MM")
    year, month = int(match[1]), int(match[2])
    first = date(year, month, 1)
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return text, first, last


async def _build(request: web.Request, first: date, last: date) -> report.Report:
    """Build the month's report in the expensive-read pool, as the API's report is built."""
    inventory, store, now = (
        request.app[CONFIG].inventory,
        request.app[STORE],
        request.app[CLOCK].now(),
    )
    start, end = report.period_bounds(first, last, inventory.timezone)
    return await expensive(
        request, functools.partial(report.build_report, store, inventory, start, end, now)
    )


@guard()
async def reports_page(request: web.Request, session: Session) -> web.StreamResponse:
    tz = ZoneInfo(request.app[CONFIG].inventory.timezone)
    month, first, last = month_days(request.query.get("month"), tz)
    built = await _build(request, first, last)
    body = report.report_json(built)
    volume = body.get("volume", {})
    return render(
        request,
        "reports.html",
        session,
        month=month,
        first=first.isoformat(),
        last=last.isoformat(),
        as_of=body.get("period", {}).get("as_of"),
        partial=built.as_of < built.end,
        opened=volume.get("opened", 0),
        open_at_end=volume.get("open_at_end", 0),
        json_url=f"{REPORT_API}?{urlencode({'from': first, 'to': last})}",
        csv_url=f"/reports/sla.csv?{urlencode({'month': month})}",
        tables=report_tables(body, tz),
    )


@guard()
async def sla_csv(request: web.Request, session: Session) -> web.StreamResponse:
    tz = ZoneInfo(request.app[CONFIG].inventory.timezone)
    month, first, last = month_days(request.query.get("month"), tz)
    built = await _build(request, first, last)
    return web.Response(
        text=report.report_csv(built),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="sla-{month}.csv"'},
    )
