"""Which period of a recurring job is due: nominal times from a cron schedule, each opening a
window ``before`` ahead of it.

batch/v1 CronJob's rules, with the window's opening in place of the scheduled time: a period
is due once its window has opened; after downtime only the most recent due period runs (the
ones before it are counted as missed); with a starting deadline, a period whose window opened
longer ago than that is missed too. Pure: the handlers bring the clock and the objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from croniter import croniter

# batch/v1 CronJob stops counting missed schedules at 100.
MAX_MISSED_COUNTED = 100
_JUST_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A cron expression in a time zone, and the window around each nominal time."""

    expression: str
    zone: tzinfo
    before: timedelta = timedelta(0)
    after: timedelta = timedelta(0)
    starting_deadline: timedelta | None = None

    def next_nominal(self, moment: datetime) -> datetime:
        """The first nominal time strictly after ``moment`` (UTC)."""
        found: datetime = croniter(self.expression, moment.astimezone(self.zone)).get_next(datetime)
        return found.astimezone(moment.tzinfo)

    def last_nominal(self, moment: datetime) -> datetime:
        """The last nominal time at or before ``moment`` (UTC)."""
        start = (moment + _JUST_AFTER).astimezone(self.zone)
        found: datetime = croniter(self.expression, start).get_prev(datetime)
        return found.astimezone(moment.tzinfo)

    def window(self, nominal: datetime) -> tuple[datetime, datetime]:
        """When the run for ``nominal`` may start: from ``before`` ahead to ``after`` past."""
        return nominal - self.before, nominal + self.after


@dataclass(frozen=True, slots=True)
class DuePeriod:
    """The period to act on now.

    ``late``: its window opened longer ago than the starting deadline, so it is missed, not
    run. ``missed``: due periods before it that will not run (at most 100 are counted)."""

    nominal: datetime
    opened: datetime
    missed: int
    late: bool


def due_period(schedule: CronSchedule, since: datetime, now: datetime) -> DuePeriod | None:
    """The most recent period after ``since`` (the last one handled, or the cron job's
    creation) whose window has opened by ``now``; None when there is none."""
    latest = schedule.last_nominal(now + schedule.before)
    if latest <= since:
        return None
    # A cron job created inside a period's window runs that period from its creation.
    opened = max(schedule.window(latest)[0], since)
    missed = 0
    earlier = latest
    while missed < MAX_MISSED_COUNTED:
        earlier = schedule.last_nominal(earlier - _JUST_AFTER)
        if earlier <= since:
            break
        missed += 1
    late = schedule.starting_deadline is not None and now - opened > schedule.starting_deadline
    return DuePeriod(latest, opened, missed, late)


def next_period(schedule: CronSchedule, since: datetime) -> tuple[datetime, datetime]:
    """The nominal time after ``since`` and when its window opens."""
    nominal = schedule.next_nominal(since)
    return nominal, schedule.window(nominal)[0]
