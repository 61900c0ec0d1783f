"""The dashboard's parts on their own: roles, the login limit, charts, reports, ordering.

Sessions, which live in the database, are tested in test_dashboard_sessions.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from collector.dashboard.auth import safe_next
from collector.dashboard.charts import BUCKETS, HEIGHT, link_charts, nice_ceiling, path
from collector.dashboard.limits import LoginLimiter
from collector.dashboard.render import duration
from collector.dashboard.reports import month_days, report_tables
from collector.dashboard.sessions import Login
from collector.dashboard.snapshot import SiteTile, availability_text, summary, worst_first
from collector.store import CENTRE, Stored
from probes.result import ProbeResult


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_roles_are_ordered() -> None:
    assert Login("x", "admin").may("operator")
    assert Login("x", "operator").may("operator")
    assert not Login("x", "viewer").may("operator")


def test_the_limiter_counts_per_address_and_per_name_within_its_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window=60.0, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1", "desk") == 0
        limiter.failed("10.0.0.1", "desk")
        clock.now += 1
    assert limiter.retry_after("10.0.0.1", "someone") == pytest.approx(57.0)  # the address
    # not the name everywhere: nobody can lock an operator out from another address
    assert limiter.retry_after("10.0.0.2", "DESK") == 0
    assert limiter.retry_after("10.0.0.2", "someone") == 0
    clock.now += 57.5
    assert limiter.retry_after("10.0.0.1", "desk") == 0  # the first failure left the window


def test_a_success_clears_the_names_failures_but_not_the_addresss() -> None:
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window=60.0, clock=clock)
    limiter.failed("10.0.0.1", "desk")
    limiter.failed("10.0.0.1", "desk")
    limiter.failed("10.0.0.1", "desk")  # the attempt that then succeeds, counted beforehand
    limiter.succeeded("10.0.0.1", "desk")
    assert limiter.retry_after("10.0.0.1", "desk") == 0
    limiter.failed("10.0.0.1", "other")
    assert limiter.retry_after("10.0.0.1", "other") > 0  # the address's two failures stay


def test_the_limiter_forgets_the_stalest_keys_beyond_its_capacity() -> None:
    limiter = LoginLimiter(max_failures=1, capacity=4, clock=Clock())
    for n in range(10):
        limiter.failed(f"10.0.0.{n}", f"user{n}")
    assert limiter.retry_after("10.0.0.9", "x") > 0
    assert limiter.retry_after("10.0.0.0", "x") == 0


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/incidents/3", "/incidents/3"),
        ("/incidents?status=all&priority=P1", "/incidents?status=all&priority=P1"),
        ("//attacker.example", "/"),
        ("/\\attacker.example", "/"),
        ("https://attacker.example", "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
        ("/caf\u00e9", "/"),
    ],
)
def test_login_goes_only_to_local_paths(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_durations_read_like_the_pages_script_writes_them() -> None:
    assert [duration(s) for s in (-5, 0, 59.9, 65, 3_600, 7_380, 90_000)] == [
        "0s",
        "0s",
        "59s",
        "1m 05s",
        "1h 00m",
        "2h 03m",
        "1d 1h",
    ]


def stored(source: str, ts: float, *, ok: bool, rtt: float | None, loss: float | None) -> Stored:
    when = datetime.fromtimestamp(ts, UTC)
    return Stored(source, 1, ProbeResult("l", "icmp", when, ok=ok, rtt_ms=rtt, loss=loss))


def test_charts_average_each_slice_and_leave_gaps() -> None:
    start, end = 0.0, float(BUCKETS)  # one second per slice
    rows = [
        stored("a-agent", 0.2, ok=True, rtt=10.0, loss=0.0),
        stored("a-agent", 0.7, ok=True, rtt=30.0, loss=0.5),
        stored("a-agent", 5.5, ok=False, rtt=None, loss=None),  # a failure: 100% loss
        stored(CENTRE, 1.5, ok=True, rtt=40.0, loss=0.0),
        stored(CENTRE, 500.0, ok=True, rtt=999.0, loss=0.0),  # outside the period
    ]
    rtt, loss = link_charts(rows, start, end, ZoneInfo("UTC"))
    assert rtt.top == "50 ms"
    agent, centre = rtt.series
    assert agent.path == f"M2.5 {HEIGHT - 20 / 50 * HEIGHT:.1f} h0.1"  # mean of 10 and 30
    assert centre.path.startswith("M7.5 ")
    loss_agent = loss.series[0].path.split(" ")
    assert loss_agent[0:2] == ["M2.5", f"{HEIGHT - 0.25 * HEIGHT:.1f}"]
    assert loss_agent[3:5] == ["M27.5", "0.0"]  # the failure, after a gap
    assert not rtt.empty
    assert link_charts([], start, end, ZoneInfo("UTC"))[0].empty


def test_paths_join_neighbours_and_break_at_gaps() -> None:
    assert path([1.0, 1.0, None, 0.0], 1.0) == "M75.0 0.0 h0.1 L225.0 0.0 M525.0 140.0 h0.1"
    assert path([None, None], 1.0) == ""
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 7, 12, 250)] == [1, 0.5, 1, 10, 20, 500]


def test_a_round_trip_too_small_for_a_power_of_ten_still_charts() -> None:
    """5e-324 ms (found by `make fuzz`): its power of ten underflowed to 0, then / 0 gave a 500."""
    assert nice_ceiling(5e-324) == 0.001
    start = 0.0
    rows = [stored("tesko-01", 10.0, ok=True, rtt=5e-324, loss=0.0)]
    rtt, _ = link_charts(rows, start, start + 600.0, ZoneInfo("UTC"))
    assert rtt.top == "0.001 ms"
    assert rtt.series[0].path.startswith("M")


def test_report_tables_format_the_reports_json() -> None:
    body = {
        "priorities": [
            {"priority": "P1", "target": 0.95, "resolve_within_s": 14_400, "opened": 3,
             "resolved": 2, "within_target": 1, "breached": 1, "pending": 1, "achieved": 0.5,
             "target_met": False, "mean_to_resolve_s": 5_400.0, "p95_to_resolve_s": None},
        ],
        "sites": [
            {"name": "Tesko", "users": 7, "monitored": True, "availability": 0.99912,
             "business_hours_availability": None, "seconds": {"down": 65.0, "unknown": 0.0},
             "incidents": {"P1": 1, "P2": 0, "P3": 2}},
            {"name": "Pound", "users": 0, "monitored": False},
        ],
        "overall": {"name": "All monitored sites", "users": 7, "availability": 0.99912},
        "major_incidents": [],
    }  # fmt: skip
    priorities, sites, majors = report_tables(body, ZoneInfo("UTC"))
    assert priorities.rows == (
        ("P1", "95% in 4h 00m", "3", "2", "1", "1", "1", "50.00%", "NO", "1h 30m", "—"),
    )
    assert sites.rows == (
        ("Tesko", "7", "99.91%", "—", "1m 05s", "0s", "1", "0", "2"),
        ("All monitored sites", "7", "99.91%", "—", "—", "—", "0", "0", "0"),
    )
    assert majors.rows == ()


def test_a_month_is_its_first_to_its_last_day() -> None:
    tz = ZoneInfo("Africa/Johannesburg")
    assert month_days("2024-12", tz) == ("2024-12", date(2024, 12, 1), date(2024, 12, 31))
    assert month_days("2024-02", tz)[1:] == (date(2024, 2, 1), date(2024, 2, 29))
    assert month_days(None, tz)[0] == datetime.now(tz).strftime("%Y-%m")


def tile(site: str, status: str, users: int) -> SiteTile:
    return {
        "id": site,
        "name": site.title(),
        "status": status,
        "status_since": None,
        "users": users,
        "agent_alive": None,
        "links": [],
        "availability": "—",
    }


def test_the_worst_sites_come_first_and_bigger_before_smaller() -> None:
    tiles = [
        tile("pound", "unmonitored", 0),
        tile("a", "up", 5),
        tile("b", "down", 3),
        tile("c", "maintenance", 9),
        tile("d", "down", 30),
        tile("e", "degraded", 1),
        tile("f", "unknown", 2),
    ]
    assert [t["id"] for t in sorted(tiles, key=worst_first)] == [
        "d",
        "b",
        "e",
        "f",
        "c",
        "a",
        "pound",
    ]
    assert (
        summary(tiles) == "2 down · 1 degraded · 1 unknown · 1 maintenance · 1 up · 1 unmonitored"
    )


def test_availability_is_shown_when_it_is_known() -> None:
    assert availability_text(None) == "—"
    assert availability_text({"24h": None, "7d": None, "30d": None}) == "—"
    assert (
        availability_text({"24h": 1.0, "7d": 0.99912, "30d": None})
        == "24h 100.00% · 7d 99.91% · 30d —"
    )
