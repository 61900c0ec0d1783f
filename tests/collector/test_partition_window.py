"""The days that get a partition of their own (PostgreSQL): the one window ingest and
`sitewatch migrate` both use, from retention's reach to a day ahead."""

from __future__ import annotations

from collector.store.partitions import DAY, day_of, near_days

NOW = 1_800_000_000.0 + 13 * 3_600  # 2027-01-15 21:00 UTC (1_800_000_000 is 08:00 that day)
TODAY = day_of(NOW)
RETENTION = 30 * DAY


def test_the_window_runs_from_a_day_before_retention_s_reach_to_tomorrow() -> None:
    oldest = day_of(NOW - RETENTION - DAY)
    days = {oldest - DAY, oldest, TODAY - DAY, TODAY, TODAY + DAY, TODAY + 2 * DAY}
    assert near_days(days, NOW, RETENTION) == {oldest, TODAY - DAY, TODAY, TODAY + DAY}


def test_a_clock_gone_wrong_gets_no_day_of_its_own() -> None:
    wild = [day_of(4_102_444_800.0), day_of(0.0)]  # 2100, and 1970
    assert near_days(wild, NOW, RETENTION) == set()


def test_a_longer_retention_reaches_further_back() -> None:
    long_ago = TODAY - 60 * DAY
    assert near_days([long_ago], NOW, RETENTION) == set()
    assert near_days([long_ago], NOW, 90 * DAY) == {long_ago}
