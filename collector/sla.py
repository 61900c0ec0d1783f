"""The SLA clock: working time between instants, in an inventory's business hours.

An SLA budget runs only while the council is at work: on its working weekdays, between the
wall-clock start and end of the working day, and not on public holidays. Each local year is
turned once into a sorted table of working intervals (as Unix instants, so a DST change is
already accounted for) with running totals, and every question after that is a binary search;
no call walks time minute by minute or even day by day once the year is built.

Working time is real elapsed time inside the wall-clock hours: on the rare day a DST change
falls inside business hours, that day holds an hour more or less. A budget's whole days are
nominal working days (`end - start` of the wall clock), because that is what `2d` promises.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sitewatch.config.model import BusinessHours, SlaTarget

MAX_IDLE_YEARS = 5  # `add` gives up after this many years in a row without a working moment


@dataclass(frozen=True, slots=True)
class _Year:
    """One local year's working intervals, as parallel sorted columns."""

    starts: tuple[float, ...]
    ends: tuple[float, ...]
    before: tuple[float, ...]  # working seconds in the year before each interval starts
    through: tuple[float, ...]  # working seconds in the year up to each interval's end

    @property
    def total(self) -> float:
        """Return the year's working seconds."""
        return self.through[-1] if self.through else 0.0

    def worked(self, instant: float) -> float:
        """Return the working seconds of the year before `instant`."""
        i = bisect_right(self.starts, instant) - 1
        if i < 0:
            return 0.0
        return self.before[i] + min(instant, self.ends[i]) - self.starts[i]

    def instant(self, start: float, offset: float, work: float) -> float | None:
        """Return when `work` seconds after `start` (`offset` into the year) run out, if they do.

        None says the year ends first. The clamps keep float rounding from stepping outside
        the working interval or back before `start`, which adding a tiny `work` to a large
        `offset` would otherwise do.
        """
        first = bisect_right(self.through, offset)
        wanted = offset + work
        if first == len(self.through) or wanted > self.through[-1]:
            return None
        i = bisect_left(self.through, wanted, lo=first)
        return min(
            max(self.starts[i] + (wanted - self.before[i]), self.starts[i], start), self.ends[i]
        )


class WorkingCalendar:
    """Working time in one time zone's business hours, with a year-by-year cache."""

    __slots__ = ("_day", "_hours", "_span", "_years", "_zone")

    def __init__(self, hours: BusinessHours, timezone: str) -> None:
        self._hours = hours
        self._zone = ZoneInfo(timezone)
        anchor = date(2000, 1, 3)  # any date: a nominal day is wall-clock length, no zone
        self._day = (
            datetime.combine(anchor, hours.end) - datetime.combine(anchor, hours.start)
        ).total_seconds()
        self._years: dict[int, _Year] = {}
        self._span = (0.0, 0.0, 0)  # (from, until, year): instants surely in the year asked last

    def budget(self, resolve_within: timedelta) -> float:
        """Return the working seconds of an SLA budget: whole days are whole working days."""
        if resolve_within < timedelta(0):
            raise ValueError(f"negative SLA budget {resolve_within}")
        rest = resolve_within - timedelta(days=resolve_within.days)
        return resolve_within.days * self._day + rest.total_seconds()

    def add(self, start: float, working_seconds: float) -> float:
        """Return the instant when `working_seconds` of working time have passed after `start`."""
        if working_seconds < 0:
            raise ValueError(f"negative working time {working_seconds}")
        if working_seconds == 0:
            return start
        number = self._local_year(start)
        year = self._year(number)
        offset, remaining, idle = year.worked(start), working_seconds, 0
        while (due := year.instant(start, offset, remaining)) is None:
            gained = year.total - offset
            idle = 0 if gained > 0 else idle + 1
            if idle >= MAX_IDLE_YEARS:
                raise ValueError(
                    f"no working time in the {MAX_IDLE_YEARS} years to {number}: "
                    "check the business days and holidays"
                )
            remaining -= gained
            number += 1
            year, offset = self._year(number), 0.0
        return due

    def between(self, start: float, end: float) -> float:
        """Return the working seconds in [start, end)."""
        if end <= start:
            return 0.0
        first, last = self._local_year(start), self._local_year(end)
        worked = self._year(last).worked(end) - self._year(first).worked(start)
        for number in range(first, last):
            worked += self._year(number).total
        return worked

    def due_at(self, opened: float, target: SlaTarget) -> float:
        """Return when an incident opened at `opened` breaches `target`."""
        return self.add(opened, self.budget(target.resolve_within))

    def percent_used(self, opened: float, target: SlaTarget, now: float) -> float:
        """Return how much of `target`'s budget an incident opened at `opened` has used."""
        return 100.0 * self.between(opened, now) / self.budget(target.resolve_within)

    def _local_year(self, instant: float) -> int:
        """Return the local year of `instant`; the last year's span answers without a zone
        conversion (a month's report asks about every row of the status log, twice)."""
        begins, ends, number = self._span
        if begins <= instant < ends:
            return number
        number = datetime.fromtimestamp(instant, UTC).astimezone(self._zone).year
        if MINYEAR < number < MAXYEAR:  # a day inside each new year's midnight, whatever the
            zone = self._zone  # zone's offsets did that night
            begins = datetime(number, 1, 1, tzinfo=zone).timestamp() + 86_400
            ends = datetime(number + 1, 1, 1, tzinfo=zone).timestamp() - 86_400
            self._span = (begins, ends, number)
        return number

    def _year(self, number: int) -> _Year:
        year = self._years.get(number)
        if year is None:
            year = self._years[number] = self._build(number)
        return year

    def _build(self, number: int) -> _Year:
        hours, zone = self._hours, self._zone
        closed = _holidays(hours.holidays, number)
        starts: list[float] = []
        ends: list[float] = []
        before: list[float] = []
        through: list[float] = []
        total = 0.0
        first = date(number, 1, 1).toordinal()
        for ordinal in range(first, date(number, 12, 31).toordinal() + 1):
            day = date.fromordinal(ordinal)
            if day.weekday() not in hours.days or day in closed:
                continue
            opens = datetime.combine(day, hours.start, tzinfo=zone).timestamp()
            shuts = datetime.combine(day, hours.end, tzinfo=zone).timestamp()
            if shuts <= opens:
                continue  # a DST gap swallowed the whole working day
            starts.append(opens)
            ends.append(shuts)
            before.append(total)
            total += shuts - opens
            through.append(total)
        return _Year(tuple(starts), tuple(ends), tuple(before), tuple(through))


def _holidays(country: str | None, year: int) -> frozenset[date]:
    """Return the country's public holidays in `year` (none for no country)."""
    if country is None:
        return frozenset()
    import holidays  # noqa: PLC0415 -- 4 MB the agent, which keeps no SLA clock, need not load

    return frozenset(holidays.country_holidays(country, years=year).keys())
