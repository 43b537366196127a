"""Which period of a recurring job is due: CronJob's rules with a window before each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from carbonaware.scheduling.cron import (
    MAX_MISSED_COUNTED,
    CronSchedule,
    due_period,
    next_period,
)

HOUR = timedelta(hours=1)
T0 = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def six_hourly(**window: timedelta | None) -> CronSchedule:
    return CronSchedule("0 */6 * * *", UTC, **window)  # type: ignore[arg-type]


def test_nominal_times_in_utc() -> None:
    schedule = six_hourly()
    assert schedule.next_nominal(T0) == T0 + 6 * HOUR
    assert schedule.last_nominal(T0) == T0  # "at or before"
    assert schedule.last_nominal(T0 + 5 * HOUR) == T0
    assert schedule.next_nominal(T0 + 5 * HOUR).tzinfo == UTC


def test_a_period_is_due_once_its_window_opens() -> None:
    schedule = six_hourly(before=2 * HOUR, after=2 * HOUR)
    created = T0 + timedelta(minutes=5)
    # 03:59: the 06:00 window opens at 04:00.
    assert due_period(schedule, created, T0 + 4 * HOUR - timedelta(minutes=1)) is None
    due = due_period(schedule, created, T0 + 4 * HOUR)
    assert due is not None
    assert (due.nominal, due.opened, due.missed, due.late) == (
        T0 + 6 * HOUR,
        T0 + 4 * HOUR,
        0,
        False,
    )
    # Once handled, nothing is due until the 12:00 window opens at 10:00.
    assert due_period(schedule, due.nominal, T0 + 9 * HOUR) is None
    assert due_period(schedule, due.nominal, T0 + 10 * HOUR).nominal == T0 + 12 * HOUR  # type: ignore[union-attr]
    assert schedule.window(T0 + 6 * HOUR) == (T0 + 4 * HOUR, T0 + 8 * HOUR)


def test_a_cron_job_created_inside_a_window_runs_that_period_from_its_creation() -> None:
    schedule = six_hourly(before=2 * HOUR)
    created = T0 + 5 * HOUR  # the 06:00 window opened at 04:00
    due = due_period(schedule, created, created)
    assert due is not None
    assert (due.nominal, due.opened) == (T0 + 6 * HOUR, created)


def test_after_downtime_only_the_latest_period_runs_and_the_others_are_counted() -> None:
    schedule = six_hourly(before=HOUR)
    last = T0 + 6 * HOUR
    due = due_period(schedule, last, T0 + 2 * 24 * HOUR + 30 * timedelta(minutes=1))
    assert due is not None
    assert due.nominal == T0 + 2 * 24 * HOUR
    assert due.missed == 6  # 12:00, 18:00, then four on the second day before 00:00 of day 3
    assert not due.late


def test_missed_periods_are_counted_up_to_cronjobs_limit() -> None:
    schedule = CronSchedule("* * * * *", UTC)
    due = due_period(schedule, T0, T0 + 10 * 24 * HOUR)
    assert due is not None
    assert due.missed == MAX_MISSED_COUNTED


@pytest.mark.parametrize(("minutes_late", "late"), [(29, False), (31, True)])
def test_the_starting_deadline_counts_from_the_window_opening(
    minutes_late: int, late: bool
) -> None:
    schedule = six_hourly(before=2 * HOUR, starting_deadline=timedelta(minutes=30))
    now = T0 + 4 * HOUR + timedelta(minutes=minutes_late)  # the 06:00 window opened at 04:00
    due = due_period(schedule, T0, now)
    assert due is not None
    assert due.late is late


def test_schedules_follow_their_time_zone_across_daylight_saving() -> None:
    london = ZoneInfo("Europe/London")
    schedule = CronSchedule("0 2 * * *", london)
    # 02:00 London is 02:00 UTC in winter and 01:00 UTC in summer.
    winter = schedule.next_nominal(datetime(2026, 1, 10, 12, tzinfo=UTC))
    summer = schedule.next_nominal(datetime(2026, 7, 10, 12, tzinfo=UTC))
    assert winter == datetime(2026, 1, 11, 2, tzinfo=UTC)
    assert summer == datetime(2026, 7, 11, 1, tzinfo=UTC)
    assert winter.tzinfo == UTC


def test_next_period_says_when_its_window_opens() -> None:
    schedule = six_hourly(before=90 * timedelta(minutes=1))
    assert next_period(schedule, T0) == (T0 + 6 * HOUR, T0 + 4.5 * HOUR)
