"""The one interface every grid-intensity source implements, and helpers they share.

A provider answers two questions for a region key it understands:

- ``current(region)``: the period covering now.
- ``forecast(region, start, end)``: every period overlapping ``[start, end)``, sorted by
  start, one point per start, all times in UTC. Past periods carry actuals where the source
  has them (``is_forecast=False``), current and future periods carry forecasts.

Every point's ``source`` is the provider's ``name``; ``index`` is the provider's own band
(UK Carbon Intensity ``index``, WattTime's percentile) and is never derived from grams here.
Failures are always a :class:`carbonaware.errors.ProviderError` subclass.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRequestError,
    ProviderUnavailableError,
    UnknownRegionError,
)

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime. Injected so tests and the simulator
control time."""

RequestHook = Callable[[str, str], None]
"""``hook(provider_name, outcome)``: called once per upstream request or fetch with one of the
:class:`Outcome` values. Used by the operator's metrics; it must not raise."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@runtime_checkable
class Provider(Protocol):
    """A grid-intensity source. See the module docstring for the contract."""

    @property
    def name(self) -> str:
        """Short, stable name used as every point's ``source`` and as a metrics label."""
        ...

    async def current(self, region: str) -> IntensityPoint:
        """The period covering now."""
        ...

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Periods overlapping ``[start, end)``: sorted, de-duplicated, UTC."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


class Outcome(enum.StrEnum):
    """Low-cardinality outcome labels for provider requests (metrics, status)."""

    OK = "ok"
    STALE = "stale"
    AUTH_ERROR = "auth_error"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    BAD_DATA = "bad_data"
    UNKNOWN_REGION = "unknown_region"
    REJECTED = "rejected"


def outcome_of(error: ProviderError) -> Outcome:
    """The outcome label for a failure."""
    if isinstance(error, UnknownRegionError):
        return Outcome.UNKNOWN_REGION
    if isinstance(error, ProviderAuthError):
        return Outcome.AUTH_ERROR
    if isinstance(error, ProviderRateLimitedError):
        return Outcome.RATE_LIMITED
    if isinstance(error, ProviderUnavailableError):
        return Outcome.UNAVAILABLE
    if isinstance(error, ProviderDataError):
        return Outcome.BAD_DATA
    if isinstance(error, ProviderRequestError):
        return Outcome.REJECTED
    return Outcome.UNAVAILABLE


def as_utc(moment: datetime) -> datetime:
    """Normalise to an aware UTC datetime; naive values are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_time(moment: datetime, step: timedelta) -> datetime:
    """Round down to a multiple of ``step`` counted from the Unix epoch (UTC)."""
    moment = as_utc(moment)
    return moment - (moment - EPOCH) % step


def normalise_points(
    points: Iterable[IntensityPoint],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[IntensityPoint]:
    """Sort by start, keep one point per start (a later item wins: callers list the more
    authoritative values last), keep those overlapping ``[start, end)``, all in UTC."""
    window_start = as_utc(start) if start is not None else None
    window_end = as_utc(end) if end is not None else None
    by_start: dict[datetime, IntensityPoint] = {}
    for point in points:
        point_start, point_end = as_utc(point.start), as_utc(point.end)
        if window_start is not None and point_end <= window_start:
            continue
        if window_end is not None and point_start >= window_end:
            continue
        if point_start != point.start or point_end != point.end:
            point = IntensityPoint(
                start=point_start,
                end=point_end,
                intensity=point.intensity,
                source=point.source,
                is_forecast=point.is_forecast,
                index=point.index,
                stale=point.stale,
            )
        by_start[point_start] = point
    return [by_start[key] for key in sorted(by_start)]


def point_covering(points: list[IntensityPoint], moment: datetime) -> IntensityPoint | None:
    """The point whose period contains ``moment``, if any."""
    for point in points:
        if point.covers(moment):
            return point
    return None


def resample_mean(points: list[IntensityPoint], period: timedelta) -> list[IntensityPoint]:
    """Merge short periods (e.g. WattTime's 5 minutes) into ``period`` buckets aligned to
    the epoch, each the duration-weighted mean of the values inside it.

    A bucket is a forecast if any of its parts is; an index survives only when every part
    has the same one.
    """
    buckets: dict[datetime, list[IntensityPoint]] = {}
    for point in points:
        buckets.setdefault(floor_time(point.start, period), []).append(point)
    merged: list[IntensityPoint] = []
    for bucket_start in sorted(buckets):
        parts = buckets[bucket_start]
        weights = [max(part.duration.total_seconds(), 1e-9) for part in parts]
        mean = sum(p.intensity * w for p, w in zip(parts, weights, strict=True)) / sum(weights)
        indexes = {part.index for part in parts}
        merged.append(
            IntensityPoint(
                start=bucket_start,
                end=bucket_start + period,
                intensity=mean,
                source=parts[0].source,
                is_forecast=any(part.is_forecast for part in parts),
                index=indexes.pop() if len(indexes) == 1 else None,
            )
        )
    return merged
