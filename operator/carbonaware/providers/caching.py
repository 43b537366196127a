"""One provider behind one cache: :class:`CachingProvider`.

- **Single flight**: concurrent callers asking for the same (region, kind) await one
  in-flight upstream fetch, so a refresh costs one request per (provider, region, kind)
  whatever the number of jobs.
- **TTL**: a value is served from memory for ``ttl_seconds`` (and a ``current`` value only
  while its period still covers now).
- **Forecast window**: a forecast is fetched for a fixed window, from the start of the
  current half hour to ``forecast_horizon`` ahead, and every request starting inside that
  window is cut from it (requests reaching further get what the window holds: no source we
  use forecasts further than 72 h). Requests starting before the window (history, e.g. for
  the SCI of a finished run) are fetched and cached per exact range.
- **Error backoff**: after a failure the provider is not asked again for
  ``error_backoff_seconds`` (or the upstream's ``Retry-After`` if longer); callers get the
  remembered error at once, so a dead upstream does not slow every call by its timeout.
- **Stale-while-error**: the last good value, up to ``stale_max_age_seconds`` old, stays
  available; it is returned with ``IntensityPoint.stale = True``.
- **Status**: the last error and last success per provider (:meth:`CachingProvider.status`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from carbonaware.providers.base import (
    Clock,
    Outcome,
    Provider,
    RequestHook,
    as_utc,
    floor_time,
    normalise_points,
    outcome_of,
    point_covering,
    utc_now,
)

T = TypeVar("T")
WINDOW_ALIGNMENT = timedelta(minutes=30)
DEFAULT_HORIZON = timedelta(hours=48)
_Key = tuple[str, str, datetime | None, datetime | None]
# Failures that say the whole upstream is unusable right now, not just one region.
_PROVIDER_WIDE = (ProviderUnavailableError, ProviderRateLimitedError, ProviderAuthError)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """What the cache knows about one provider's health (for metrics and status)."""

    name: str
    last_success_time: datetime | None
    last_error: ProviderError | None
    last_error_time: datetime | None
    consecutive_failures: int
    backoff_until: datetime | None


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    fetched_at: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(slots=True)
class _Failure:
    error: ProviderError
    until: datetime


class CachingProvider:
    """One provider behind single-flight fetches, a TTL cache and error backoff."""

    def __init__(
        self,
        provider: Provider,
        *,
        ttl_seconds: float = 300.0,
        stale_max_age_seconds: float = 3 * 3600.0,
        error_backoff_seconds: float = 30.0,
        forecast_horizon: timedelta = DEFAULT_HORIZON,
        max_range_entries: int = 256,
        serve_stale: bool = True,
        clock: Clock = utc_now,
        on_fetch: RequestHook | None = None,
    ) -> None:
        self.provider = provider
        self._ttl = timedelta(seconds=ttl_seconds)
        self._stale_max_age = timedelta(seconds=stale_max_age_seconds)
        self._error_backoff = timedelta(seconds=error_backoff_seconds)
        self._horizon = forecast_horizon
        self._max_range_entries = max_range_entries
        self._serve_stale = serve_stale
        self._clock = clock
        self._on_fetch = on_fetch
        self._current: dict[str, _Entry[IntensityPoint]] = {}
        self._windows: dict[str, _Entry[list[IntensityPoint]]] = {}
        self._ranges: OrderedDict[_Key, _Entry[list[IntensityPoint]]] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Future[Any]] = {}
        self._key_failures: dict[_Key, _Failure] = {}
        self._provider_failure: _Failure | None = None
        self._last_success: datetime | None = None
        self._last_error: ProviderError | None = None
        self._last_error_time: datetime | None = None
        self._consecutive_failures = 0
        self.fetches = 0
        """Upstream fetches started (cache misses), for tests and status."""

    @property
    def name(self) -> str:
        return self.provider.name

    def __repr__(self) -> str:
        return f"CachingProvider({self.provider!r})"

    async def aclose(self) -> None:
        await self.provider.aclose()

    def status(self) -> ProviderStatus:
        failure = self._provider_failure
        now = self._clock()
        return ProviderStatus(
            name=self.name,
            last_success_time=self._last_success,
            last_error=self._last_error,
            last_error_time=self._last_error_time,
            consecutive_failures=self._consecutive_failures,
            backoff_until=failure.until if failure is not None and failure.until > now else None,
        )

    # ------------------------------------------------------------------ current

    async def current(self, region: str) -> IntensityPoint:
        now = self._clock()
        entry = self._current.get(region)
        if entry is not None and self._fresh(entry, now) and entry.value.covers(now):
            return entry.value
        key: _Key = ("current", region, None, None)

        async def fetch() -> IntensityPoint:
            value = await self.provider.current(region)
            self._current[region] = _Entry(value, self._clock())
            return value

        try:
            return await self._single_flight(key, fetch)
        except ProviderError:
            if self._serve_stale and (stale := self.stale_current(region)) is not None:
                self._report(Outcome.STALE)
                return stale
            raise

    def stale_current(self, region: str) -> IntensityPoint | None:
        """The best remembered value for now, at most ``stale_max_age`` old, marked stale:
        the current value if its period still covers now, else the cached forecast period
        covering now, else the last current value."""
        now = self._clock()
        entry = self._current.get(region)
        usable = (
            entry if entry is not None and now - entry.fetched_at <= self._stale_max_age else None
        )
        if usable is not None and usable.value.covers(now):
            return dataclasses.replace(usable.value, stale=True)
        window = self._windows.get(region)
        if window is not None and now - window.fetched_at <= self._stale_max_age:
            point = point_covering(window.value, now)
            if point is not None:
                return dataclasses.replace(point, stale=True)
        if usable is not None:
            return dataclasses.replace(usable.value, stale=True)
        return None

    # ------------------------------------------------------------------ forecast

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        now = self._clock()
        window = self._windows.get(region)
        if window is not None and self._fresh(window, now) and self._in_window(window, start):
            return normalise_points(window.value, start=start, end=end)
        window_start = floor_time(now, WINDOW_ALIGNMENT)
        try:
            if window_start <= start < window_start + self._horizon:
                window = await self._fetch_window(region, window_start)
                if self._in_window(window, start):
                    return normalise_points(window.value, start=start, end=end)
            return await self._fetch_range(region, start, end, now)
        except ProviderError:
            if self._serve_stale and (stale := self.stale_forecast(region, start, end)) is not None:
                self._report(Outcome.STALE)
                return stale
            raise

    def stale_forecast(
        self, region: str, start: datetime, end: datetime
    ) -> list[IntensityPoint] | None:
        """Remembered points overlapping ``[start, end)``, at most ``stale_max_age`` old,
        marked stale (an exact-range entry first, then the forecast window)."""
        start, end = as_utc(start), as_utc(end)
        now = self._clock()
        for entry in (self._ranges.get(("range", region, start, end)), self._windows.get(region)):
            if entry is None or now - entry.fetched_at > self._stale_max_age:
                continue
            points = normalise_points(entry.value, start=start, end=end)
            if points:
                return [dataclasses.replace(point, stale=True) for point in points]
        return None

    async def _fetch_window(
        self, region: str, window_start: datetime
    ) -> _Entry[list[IntensityPoint]]:
        key: _Key = ("forecast", region, None, None)

        async def fetch() -> _Entry[list[IntensityPoint]]:
            window_end = window_start + self._horizon
            points = await self.provider.forecast(region, window_start, window_end)
            entry = _Entry(points, self._clock(), window_start, window_end)
            self._windows[region] = entry
            return entry

        return await self._single_flight(key, fetch)

    async def _fetch_range(
        self, region: str, start: datetime, end: datetime, now: datetime
    ) -> list[IntensityPoint]:
        key: _Key = ("range", region, start, end)
        entry = self._ranges.get(key)
        if entry is not None and self._fresh(entry, now):
            self._ranges.move_to_end(key)
            return entry.value

        async def fetch() -> list[IntensityPoint]:
            points = await self.provider.forecast(region, start, end)
            self._ranges[key] = _Entry(points, self._clock())
            self._ranges.move_to_end(key)
            while len(self._ranges) > self._max_range_entries:
                self._ranges.popitem(last=False)
            return points

        return await self._single_flight(key, fetch)

    # ------------------------------------------------------------------ machinery

    def _fresh(self, entry: _Entry[T], now: datetime) -> bool:
        return now - entry.fetched_at < self._ttl

    @staticmethod
    def _in_window(entry: _Entry[list[IntensityPoint]], start: datetime) -> bool:
        if entry.window_start is None or entry.window_end is None:
            return False
        return entry.window_start <= start < entry.window_end

    async def _single_flight(self, key: _Key, fetch: Callable[[], Awaitable[T]]) -> T:
        """Run ``fetch`` once for all concurrent callers with the same key."""
        task: asyncio.Future[T] | None = self._inflight.get(key)
        if task is None:
            blocked = self._blocked(key)
            if blocked is not None:
                raise blocked
            task = asyncio.ensure_future(self._run(key, fetch))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one caller being cancelled must not cancel the fetch the others await.
        return await asyncio.shield(task)

    def _forget(self, key: _Key, done: asyncio.Future[Any]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so an unawaited failure is never reported as lost

    async def _run(self, key: _Key, fetch: Callable[[], Awaitable[T]]) -> T:
        self.fetches += 1
        try:
            value = await fetch()
        except ProviderError as error:
            self._record_failure(key, error)
            raise
        self._record_success(key)
        return value

    def _blocked(self, key: _Key) -> ProviderError | None:
        now = self._clock()
        for failure in (self._provider_failure, self._key_failures.get(key)):
            if failure is not None and now < failure.until:
                error = failure.error
                return type(error)(
                    error.provider,
                    f"{error.problem} (not asked again until {failure.until:%H:%M:%S}Z)",
                    status_code=error.status_code,
                    retry_after=(failure.until - now).total_seconds(),
                )
        return None

    def _record_failure(self, key: _Key, error: ProviderError) -> None:
        now = self._clock()
        backoff = self._error_backoff
        if error.retry_after is not None:
            backoff = max(backoff, timedelta(seconds=error.retry_after))
        failure = _Failure(error, now + backoff)
        if isinstance(error, _PROVIDER_WIDE):
            self._provider_failure = failure
        else:
            self._key_failures[key] = failure
        self._last_error = error
        self._last_error_time = now
        self._consecutive_failures += 1
        self._report(outcome_of(error))

    def _record_success(self, key: _Key) -> None:
        self._provider_failure = None
        self._key_failures.pop(key, None)
        self._last_success = self._clock()
        self._consecutive_failures = 0
        self._report(Outcome.OK)

    def _report(self, outcome: Outcome) -> None:
        if self._on_fetch is not None:
            self._on_fetch(self.name, outcome.value)
