"""Replays a recorded intensity trace (CSV) as if it were a live provider.

For demos, the simulator and tests. The default trace is the GB 2024 national series
(``carbonaware.data.GB_2024``; "Carbon Intensity API, NESO", CC BY 4.0).

With ``shift_to_now`` the trace's year is mapped onto the present: real time ``t`` reads the
trace at ``t - shift`` where ``shift`` is a whole number of weeks, chosen (once, at first
use) so that *now* lands on the trace instant nearest to the same date in the trace's year.
Weekday and time of day are therefore preserved, which keeps the daily and weekly shape of
demand. Past the end of the trace the mapping wraps around by a whole number of weeks, and a
period missing from the trace (GB 2024 lacks 29 February) is read from the same weekday and
time one week earlier. Traces shorter than a week wrap by whole days (time of day kept).

Without ``shift_to_now`` the trace is read at the real time; periods it lacks are omitted
and ``current`` fails outside it.

Periods that have started give the actual column (``is_forecast=False``): the replayed
grid reports what happened in them, and ``current`` and ``forecast`` agree on the period
covering now (a run priced from ``forecast`` sees the intensity ``current`` showed at its
release). Periods still ahead give the forecast column, or the actuals when the trace has
none (``is_forecast=True``). With ``vintages`` (forecasts as they were issued) a period ahead
gives the forecast issued last before the trace instant of now that covers it, so the
replay's forecast is as far from the actuals as a real one published then was; the column
(or the actuals) only where no issue covers the period.
``index`` is the trace's own band column when it has one.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import ProviderDataError, ProviderRequestError, UnknownRegionError
from carbonaware.providers.base import Clock, as_utc, utc_now
from carbonaware.providers.tracefile import Trace, TraceVintages

NAME = "trace"
WEEK = timedelta(days=7)
DAY = timedelta(days=1)
MAX_POINTS = 100_000


def _same_instant_in_year(moment: datetime, year: int) -> datetime:
    try:
        return moment.replace(year=year)
    except ValueError:  # 29 February in a year without one
        return moment.replace(year=year, day=28)


class TraceProvider:
    """A :class:`Trace` served through the provider interface."""

    def __init__(
        self,
        trace: Trace,
        *,
        name: str = NAME,
        shift_to_now: bool = True,
        now: Clock = utc_now,
        regions: Collection[str] | None = None,
        attribution: str | None = None,
        home_region: str | None = None,
        vintages: TraceVintages | None = None,
    ) -> None:
        """``regions``: region keys this trace answers for; None answers for any region.
        ``home_region``: where the data comes from (``GB``, ``DE``), when known: a trace that
        answers for any region says so for the others (:meth:`region_note`)."""
        if len(trace) < 2:
            raise ProviderDataError(name, f"trace {trace.name} has fewer than two periods")
        self._trace = trace
        self._name = name
        self._shift_to_now = shift_to_now
        self._now = now
        self._regions = {r.strip().upper() for r in regions} if regions is not None else None
        self.attribution = attribution
        self.home_region = home_region.strip().upper() if home_region else None
        self._position = {start: i for i, start in enumerate(trace.starts)}
        self._first = trace.starts[0]
        self._span = trace.starts[-1] + trace.step - self._first
        if self._span >= WEEK:
            self._unit = WEEK
        elif self._span >= DAY:
            self._unit = DAY
        else:
            self._unit = trace.step
        self._wrap = (self._span // self._unit) * self._unit
        self._shift: timedelta | None = None
        self._vintages = vintages

    @property
    def name(self) -> str:
        return self._name

    @property
    def trace(self) -> Trace:
        return self._trace

    def __repr__(self) -> str:
        return (
            f"TraceProvider(name={self._name!r}, trace={self._trace.name!r}, "
            f"shift_to_now={self._shift_to_now})"
        )

    async def aclose(self) -> None:
        return None

    @property
    def shift(self) -> timedelta:
        """Real time minus trace time before wrapping (a whole number of weeks), fixed at
        first use; zero without ``shift_to_now``."""
        if not self._shift_to_now:
            return timedelta(0)
        if self._shift is None:
            now = as_utc(self._now())
            target = _same_instant_in_year(now, self._first.year)
            if target < self._first:
                target = _same_instant_in_year(now, self._first.year + 1)
            self._shift = round((now - target) / self._unit) * self._unit
        return self._shift

    def trace_time(self, moment: datetime) -> datetime | None:
        """The trace instant that real time ``moment`` reads (None if not covered)."""
        located = self._locate(as_utc(moment))
        if located is None:
            return None
        index, real_start = located
        return self._trace.starts[index] + (as_utc(moment) - real_start)

    def _locate(self, moment: datetime) -> tuple[int, datetime] | None:
        """(row index, real start of the period covering ``moment``), or None."""
        step = self._trace.step
        if self._shift_to_now:
            trace_moment = self._first + (moment - self.shift - self._first) % self._wrap
        else:
            trace_moment = moment
            if not self._first <= trace_moment < self._first + self._span:
                return None
        offset = (trace_moment - self._first) % step
        aligned = trace_moment - offset
        index = self._position.get(aligned)
        if index is None and self._shift_to_now:
            index = self._fill(aligned)
        if index is None:
            return None
        return index, moment - offset

    def _fill(self, aligned: datetime) -> int | None:
        """A period missing from the trace: the same weekday and time in an earlier (or, at
        the very start, a later) week."""
        for weeks in range(1, int(self._wrap / self._unit) + 1):
            for candidate in (aligned - weeks * self._unit, aligned + weeks * self._unit):
                index = self._position.get(candidate)
                if index is not None:
                    return index
        return None

    def region_note(self, region: str, source: str | None = None) -> str | None:
        """Why values for ``region`` are not that region's own: this trace holds another
        region's data and stands in for every region (None: they are its own, or unknown)."""
        if self._regions is not None or self.home_region is None:
            return None
        country = region.strip().upper().split("-", 1)[0]
        if country == self.home_region:
            return None
        return (
            f"trace {self._trace.name} holds {self.home_region} data; its values stand in for "
            f"region {region!r}, which no configured provider knows"
        )

    def _check_region(self, region: str) -> None:
        if self._regions is not None and region.strip().upper() not in self._regions:
            known = ", ".join(sorted(self._regions))
            raise UnknownRegionError(
                self._name,
                f"trace {self._trace.name} has no data for region {region!r} (has {known})",
            )

    def _point(
        self, index: int, start: datetime, *, forecast: bool, known_at: datetime | None = None
    ) -> IntensityPoint:
        trace = self._trace
        issued = None
        if forecast and self._vintages is not None and known_at is not None:
            issued = self._vintages.value(trace.starts[index], known_at)
        if issued is not None:
            value = issued
        elif forecast and trace.forecast is not None:
            value = trace.forecast[index]
        else:
            value = trace.actual[index]
        return IntensityPoint(
            start=start,
            end=start + trace.step,
            intensity=value,
            source=self._name,
            is_forecast=forecast,
            index=trace.index[index] if trace.index is not None else None,
        )

    async def current(self, region: str) -> IntensityPoint:
        self._check_region(region)
        now = as_utc(self._now())
        located = self._locate(now)
        if located is None:
            last = self._first + self._span
            raise ProviderDataError(
                self._name,
                f"trace {self._trace.name} covers {self._first:%Y-%m-%d} to {last:%Y-%m-%d}, "
                f"not {now:%Y-%m-%d %H:%M}Z (enable trace_shift_to_now to replay it today)",
            )
        index, start = located
        return self._point(index, start, forecast=False)

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        self._check_region(region)
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        step = self._trace.step
        if math.ceil((end - start) / step) > MAX_POINTS:
            raise ProviderRequestError(
                self._name, f"range {start:%Y-%m-%d} to {end:%Y-%m-%d} is over {MAX_POINTS} periods"
            )
        now = as_utc(self._now())
        known_at = self.trace_time(now) if self._vintages is not None else None
        anchor = self._first + self.shift
        moment = start - (start - anchor) % step
        points = []
        while moment < end:
            located = self._locate(moment)
            if located is not None:
                index, period_start = located
                # Started periods report their actual, as current() does; only those ahead
                # are forecasts.
                ahead = period_start > now
                points.append(self._point(index, period_start, forecast=ahead, known_at=known_at))
            moment += step
        return points
