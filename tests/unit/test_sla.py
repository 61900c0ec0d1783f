"""The SLA clock: budgets, due times across weekends, holidays and DST, and its invariants."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.sla import WorkingCalendar
from sitewatch.config.model import BusinessHours, SlaTarget

JOBURG = "Africa/Johannesburg"
AMSTERDAM = "Europe/Amsterdam"
WEEKDAYS = frozenset(range(5))
DEFAULT_HOURS = BusinessHours(days=WEEKDAYS, start=time(8), end=time(16, 30), holidays="ZA")
NO_HOLIDAYS = BusinessHours(days=WEEKDAYS, start=time(8), end=time(16, 30), holidays=None)
P1 = SlaTarget(resolve_within=timedelta(hours=4), target=0.95)
P2 = SlaTarget(resolve_within=timedelta(hours=8), target=0.95)
P3 = SlaTarget(resolve_within=timedelta(days=2), target=0.9)
HOUR = 3600.0

ZA = WorkingCalendar(DEFAULT_HOURS, JOBURG)
NL_HOURS = BusinessHours(days=WEEKDAYS, start=time(8), end=time(16, 30), holidays="NL")
NL = WorkingCalendar(NL_HOURS, AMSTERDAM)


def at(zone: str, moment: str) -> float:
    """Return the Unix time of a local wall-clock moment ("2026-11-27 16:00") in `zone`."""
    return datetime.fromisoformat(moment).replace(tzinfo=ZoneInfo(zone)).timestamp()


def local(zone: str, instant: float) -> datetime:
    """Return `instant` on `zone`'s wall clock."""
    return datetime.fromtimestamp(instant, UTC).astimezone(ZoneInfo(zone))


def shown(zone: str, instant: float) -> str:
    """Return `instant` as `zone`'s wall clock shows it, with the weekday, for readable asserts."""
    return f"{local(zone, instant):%a %Y-%m-%d %H:%M}"


def test_budget_counts_days_as_working_days() -> None:
    assert ZA.budget(timedelta(hours=4)) == 4 * HOUR
    assert ZA.budget(timedelta(days=2)) == 17 * HOUR
    assert ZA.budget(timedelta(days=1, hours=2)) == 10.5 * HOUR
    with pytest.raises(ValueError, match="negative"):
        ZA.budget(timedelta(hours=-1))


def test_p1_opened_friday_afternoon_is_due_monday_morning() -> None:
    opened = at(JOBURG, "2026-11-27 16:00")  # a Friday; Monday 30 November is no holiday
    assert shown(JOBURG, ZA.due_at(opened, P1)) == "Mon 2026-11-30 11:30"


def test_public_holiday_is_skipped() -> None:
    opened = at(JOBURG, "2026-12-15 15:00")  # the day before the Day of Reconciliation
    assert shown(JOBURG, ZA.due_at(opened, P1)) == "Thu 2026-12-17 10:30"


def test_christmas_and_the_weekend_are_skipped() -> None:
    opened = at(JOBURG, "2026-12-24 14:00")  # Christmas is a Friday, Day of Goodwill a Saturday
    assert shown(JOBURG, ZA.due_at(opened, P1)) == "Mon 2026-12-28 09:30"


def test_no_country_skips_no_holidays() -> None:
    calendar = WorkingCalendar(NO_HOLIDAYS, JOBURG)
    opened = at(JOBURG, "2026-12-15 15:00")
    assert shown(JOBURG, calendar.due_at(opened, P1)) == "Wed 2026-12-16 10:30"


def test_p3_is_two_working_days() -> None:
    opened = at(JOBURG, "2026-11-24 10:00")
    assert shown(JOBURG, ZA.due_at(opened, P3)) == "Thu 2026-11-26 10:00"


def test_p2_spans_into_the_next_day() -> None:
    opened = at(JOBURG, "2026-11-24 12:00")
    assert shown(JOBURG, ZA.due_at(opened, P2)) == "Wed 2026-11-25 11:30"


def test_budget_ending_at_close_of_day_is_due_that_evening() -> None:
    opened = at(JOBURG, "2026-11-24 12:30")
    assert shown(JOBURG, ZA.due_at(opened, P1)) == "Tue 2026-11-24 16:30"


def test_saturday_clock_starts_monday_morning() -> None:
    opened = at(JOBURG, "2026-11-28 10:00")
    assert shown(JOBURG, ZA.due_at(opened, P1)) == "Mon 2026-11-30 12:00"
    assert ZA.between(opened, at(JOBURG, "2026-11-30 08:00")) == 0
    assert ZA.between(opened, at(JOBURG, "2026-11-30 08:01")) == 60


def test_zero_work_is_now_and_negative_work_is_refused() -> None:
    opened = at(JOBURG, "2026-11-28 10:00")
    assert ZA.add(opened, 0) == opened
    with pytest.raises(ValueError, match="negative"):
        ZA.add(opened, -1)


def test_between_is_empty_backwards() -> None:
    start = at(JOBURG, "2026-11-24 10:00")
    assert ZA.between(start, start) == 0
    assert ZA.between(start, start - HOUR) == 0


def test_between_spans_years() -> None:
    start, end = at(JOBURG, "2025-12-31 16:00"), at(JOBURG, "2027-01-04 08:30")
    year_2026 = ZA.between(at(JOBURG, "2026-01-01 00:00"), at(JOBURG, "2027-01-01 00:00"))
    assert ZA.between(start, end) == pytest.approx(0.5 * HOUR + year_2026 + 0.5 * HOUR)
    working_days = sum(
        1
        for n in range(365)
        if (day := date(2026, 1, 1) + timedelta(days=n)).weekday() < 5
        and day not in holidays.country_holidays("ZA", years=2026)
    )
    assert year_2026 == working_days * 8.5 * HOUR


def test_dst_change_over_a_weekend_keeps_wall_clock_hours() -> None:
    calendar = WorkingCalendar(NO_HOLIDAYS, AMSTERDAM)
    spring = at(AMSTERDAM, "2026-03-27 15:00")  # clocks go forward on Sunday 29 March
    assert shown(AMSTERDAM, calendar.due_at(spring, P1)) == "Mon 2026-03-30 10:30"
    autumn = at(AMSTERDAM, "2026-10-23 15:00")  # and back on Sunday 25 October
    assert shown(AMSTERDAM, calendar.due_at(autumn, P1)) == "Mon 2026-10-26 10:30"
    friday, monday = at(AMSTERDAM, "2026-03-27 08:00"), at(AMSTERDAM, "2026-03-30 16:30")
    assert calendar.between(friday, monday) == 17 * HOUR


def test_dst_change_inside_working_hours_counts_real_time() -> None:
    night = BusinessHours(days=frozenset(range(7)), start=time(1), end=time(4), holidays=None)
    calendar = WorkingCalendar(night, AMSTERDAM)
    short = calendar.between(at(AMSTERDAM, "2026-03-29 00:00"), at(AMSTERDAM, "2026-03-30 00:00"))
    long = calendar.between(at(AMSTERDAM, "2026-10-25 00:00"), at(AMSTERDAM, "2026-10-26 00:00"))
    assert (short, long) == (2 * HOUR, 4 * HOUR)


def test_calendar_without_working_days_fails_clearly() -> None:
    never = BusinessHours(days=frozenset(), start=time(8), end=time(16, 30), holidays=None)
    calendar = WorkingCalendar(never, JOBURG)
    opened = at(JOBURG, "2026-11-27 16:00")
    with pytest.raises(ValueError, match="no working time"):
        calendar.add(opened, HOUR)
    assert calendar.between(opened, opened + 365 * 86400) == 0


@pytest.mark.parametrize(
    ("now", "percent"),
    [
        ("2026-11-27 15:00", 0.0),  # before it was opened
        ("2026-11-27 16:30", 12.5),
        ("2026-11-29 12:00", 12.5),  # the weekend does not count
        ("2026-11-30 09:00", 37.5),
        ("2026-11-30 11:30", 100.0),
        ("2026-11-30 13:30", 150.0),
    ],
)
def test_percent_used(now: str, percent: float) -> None:
    opened = at(JOBURG, "2026-11-27 16:00")
    assert ZA.percent_used(opened, P1, at(JOBURG, now)) == pytest.approx(percent)


def test_p3_percent_used_after_one_working_day() -> None:
    opened = at(JOBURG, "2026-11-24 10:00")
    assert ZA.percent_used(opened, P3, at(JOBURG, "2026-11-25 10:00")) == pytest.approx(50.0)


def test_importing_the_clock_does_not_load_holidays() -> None:
    code = "import sys, collector.sla; sys.exit('holidays' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


CALENDARS = st.sampled_from([(ZA, DEFAULT_HOURS, JOBURG), (NL, NL_HOURS, AMSTERDAM)])
STARTS = st.floats(
    min_value=at(JOBURG, "2024-01-01 00:00"), max_value=at(JOBURG, "2029-01-01 00:00")
)
WORK = st.floats(min_value=0, max_value=100 * HOUR)


@settings(max_examples=200)
@given(calendar=CALENDARS, start=STARTS, work=WORK)
def test_between_undoes_add(
    calendar: tuple[WorkingCalendar, BusinessHours, str], start: float, work: float
) -> None:
    clock = calendar[0]
    due = clock.add(start, work)
    assert due >= start
    assert clock.between(start, due) == pytest.approx(work, abs=1e-6)


@settings(max_examples=200)
@given(calendar=CALENDARS, start=STARTS, work=st.lists(WORK, min_size=2, max_size=2))
def test_add_is_monotonic(
    calendar: tuple[WorkingCalendar, BusinessHours, str], start: float, work: list[float]
) -> None:
    less, more = sorted(work)
    assert calendar[0].add(start, less) <= calendar[0].add(start, more)


@settings(max_examples=200)
@given(calendar=CALENDARS, start=STARTS, work=WORK.filter(lambda w: w > 0))
def test_add_lands_on_working_time(
    calendar: tuple[WorkingCalendar, BusinessHours, str], start: float, work: float
) -> None:
    clock, hours, zone = calendar
    due = local(zone, clock.add(start, work))
    assert hours.holidays is not None
    assert due.weekday() in hours.days
    assert due.date() not in holidays.country_holidays(hours.holidays, years=due.year)
    assert hours.start <= due.time() <= hours.end
