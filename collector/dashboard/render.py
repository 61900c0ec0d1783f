"""Templates and the headers every dashboard response carries.

jinja2 autoescapes every value; templates never mark data safe. Times are shown in the
organisation's time zone; durations in the same short form the page's script uses when it
ticks them ("3m 05s", "2h 13m", "4d 2h").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web

from collector.appkeys import CLOCK, CONFIG, ELECTION
from collector.dashboard.sessions import CSRF_FIELD, Session
from collector.times import local_time, unix

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("collector.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Scripts and styles come from our own /static only; no inline script, no other host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
STATUS_LABELS = {
    "up": "up",
    "degraded": "degraded",
    "down": "down",
    "unknown": "unknown",
    "maintenance": "maintenance",
    "unmonitored": "not monitored",
    "unreachable": "unreachable",
}


def duration(seconds: float) -> str:
    """Return a duration in the dashboard's short form."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def elapsed(value: str | None, now: float) -> str:
    """Return how long before `now` an RFC 3339 time was, in the short form."""
    return duration(now - unix(value)) if value else ""


def due(value: str | None, now: float) -> str:
    """Return "due in 3h 05m" or "overdue by 12m 30s" for an SLA due time, as of `now`."""
    if not value:
        return ""
    left = unix(value) - now
    return f"due in {duration(left)}" if left >= 0 else f"overdue by {duration(-left)}"


def render(
    request: web.Request,
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """Render a page with what every page needs: the organisation, the user, the CSRF token."""
    inventory, now = request.app[CONFIG].inventory, request.app[CLOCK].now()
    election = request.app[ELECTION]
    tz = ZoneInfo(inventory.timezone)
    body = ENVIRONMENT.get_template(template).render(
        organisation=inventory.organisation,
        login=session.login if session else None,
        csrf=session.csrf if session else "",
        csrf_field=CSRF_FIELD,
        path=request.path,
        when=lambda value: local_time(value, tz),
        duration=duration,
        elapsed=lambda value: elapsed(value, now),
        due=lambda value: due(value, now),
        status_label=lambda status: STATUS_LABELS.get(status, status),
        replica=election.name,
        leader=election.leader,
        **context,
    )
    # A lone surrogate that an older version let into the database cannot be encoded: it is
    # shown as "?" rather than failing the whole page.
    encoded = body.encode("utf-8", "replace")
    response = web.Response(body=encoded, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(headers or {})
    return response


def error_page(
    request: web.Request, session: Session | None, status: int, title: str, message: str
) -> web.Response:
    """Return a page that says what went wrong, with the status it deserves."""
    return render(request, "error.html", session, status=status, title=title, message=message)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Add the browser protections to the dashboard's pages, stream and static files."""
    if request.path.startswith("/api/"):
        return
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
    elif request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-cache")  # revalidate: no stale scripts
