"""Per-region intensity snapshots: one provider fetch per region per refresh.

The refresh loop refreshes every region that has held work; handlers that need a value
between ticks (a new job's first decision) read the snapshot, fetching only a region nobody
asked for yet. The provider chain's cache makes concurrent asks for one region a single
upstream request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import ProviderDataError, ProviderError
from carbonaware.metrics import Metrics
from carbonaware.providers.base import Provider
from carbonaware.scheduling.correction import DEFAULT_CORRECTION, ForecastCorrection, corrected_view
from carbonaware.scheduling.liveblend import LiveBlend, describe_skill
from carbonaware.scheduling.series import slots_per_day
from carbonaware.scheduling.skill import bucket_label
from carbonaware.scheduling.view import ForecastView

logger = logging.getLogger(__name__)

FORECAST_HORIZON = timedelta(hours=48)
FORECAST_MIN_SPAN = timedelta(hours=24)
# The provider cache notes when it asks again after a failure; the note changes with every
# back-off round, so it is left out of the problem shown in conditions and logged once.
BACKOFF_NOTE = re.compile(r" \(not asked again until [^)]*\)")
# A "current" period the upstream still serves this long after it ended is old data.
CURRENT_MAX_LAG = timedelta(minutes=30)


def describe_problems(errors: Iterable[ProviderError]) -> str | None:
    """Why a region has no data, each distinct problem once (current and forecast often
    fail alike, e.g. for an unknown region)."""
    texts = dict.fromkeys(BACKOFF_NOTE.sub("", str(error)) for error in errors)
    return "; ".join(texts) or None


def checked_current(
    current: IntensityPoint | None, forecast: Iterable[IntensityPoint], now: datetime
) -> tuple[IntensityPoint | None, ProviderDataError | None]:
    """The provider's current period, unless an upstream served an old period as current
    (not the chain's own stale-while-error values, which say so): then the forecast's
    period covering ``now`` if there is one, and the problem."""
    if current is None or current.stale or now - current.end <= CURRENT_MAX_LAG:
        return current, None
    problem = ProviderDataError(
        current.source,
        f"the current period it gave ended at {current.end:%Y-%m-%d %H:%M}Z, "
        f"{(now - current.end) / timedelta(hours=1):.1f} h ago: old data, not used",
    )
    return next((p for p in forecast if p.covers(now)), None), problem


@dataclass(frozen=True)
class RegionSnapshot:
    """What is known about one region at ``taken``: the current period, the forecast (with
    its precomputed view shared by every job in the region) and the last error, if any."""

    region: str
    taken: datetime
    current: IntensityPoint | None
    forecast: tuple[IntensityPoint, ...]
    view: ForecastView | None
    error: str | None
    warning: str | None = None
    """Why the values are not the region's own (an unknown region served by a provider
    that stands in for any region): a Warning Event and the condition message say so."""

    @property
    def source(self) -> str | None:
        if self.current is not None:
            return self.current.source
        return self.forecast[0].source if self.forecast else None


class ForecastMemory:
    """What one region's provider published and measured, as the operator saw it.

    For each period: the last forecast seen before it ended (the short-lead forecast) and the
    actual once known. After two days of pairs the policy's forecast correction
    (:mod:`carbonaware.scheduling.correction`: timing alignment, time-of-day bias, short-lead
    error regression, uncertainty) is fitted once a day and applied to every tick's view, as
    in the simulator.
    With ``blend``, the corrected forecast is then blended with the operator's own forecasters
    by their recent skill (:class:`~carbonaware.scheduling.liveblend.LiveBlend`). Kept in
    memory: after a restart the operator plans on the plain forecast for two days.
    """

    KEEP = timedelta(days=DEFAULT_CORRECTION.fit_days + 1)
    REFIT = timedelta(days=1)

    def __init__(self, *, blend: bool = False) -> None:
        self.blending = blend
        self.blend: LiveBlend | None = None
        self.published: dict[datetime, IntensityPoint] = {}
        self.actual: dict[datetime, IntensityPoint] = {}
        self.correction: ForecastCorrection | None = None
        self.fitted_at: datetime | None = None
        self.history_at: datetime | None = None

    def wants_history(self, now: datetime) -> bool:
        return self.history_at is None or now - self.history_at >= self.REFIT

    def record(
        self, current: IntensityPoint | None, forecast: Iterable[IntensityPoint], now: datetime
    ) -> None:
        for point in forecast:
            if point.is_forecast and point.end > now and not point.stale:
                self.published[point.start] = point
            elif not point.is_forecast and point.end <= now:
                self.actual[point.start] = point
        if current is not None and not current.is_forecast and not current.stale:
            self.actual[current.start] = current
        horizon = now - self.KEEP
        for table in (self.published, self.actual):
            for start in [s for s in table if s < horizon]:
                del table[start]

    def view(self, forecast: list[IntensityPoint], now: datetime) -> ForecastView | None:
        if self.fitted_at is None or now - self.fitted_at >= self.REFIT:
            ended = [p for p in self.published.values() if p.end <= now]
            self.correction = ForecastCorrection.fit_points(ended, list(self.actual.values()), now)
            self.fitted_at = now
        if self.correction is None:
            view = ForecastView.build(forecast, now)
        else:
            past = [p for p in self.published.values() if p.end <= now]
            view = corrected_view(
                [*past, *forecast], list(self.actual.values()), now, self.correction
            )
        if view is None or not self.blending:
            return view
        if self.blend is None or self.blend.step != view.step:
            if slots_per_day(view.step) is None:
                return view
            self.blend = LiveBlend(view.step, FORECAST_HORIZON)
        self.blend.record_actuals(self.actual.values(), now)
        return self.blend.view(view, now)


class RegionIntensity:
    """Snapshots by region, refreshed as a batch once per tick."""

    def __init__(self, provider: Provider, metrics: Metrics, *, blend: bool = False) -> None:
        self.provider = provider
        self.metrics = metrics
        self.blend = blend
        self._snapshots: dict[str, RegionSnapshot] = {}
        self._memory: dict[str, ForecastMemory] = {}
        self._skill_logged: dict[str, tuple[int | None, datetime | None]] = {}
        self._taking: dict[str, asyncio.Future[RegionSnapshot]] = {}

    def get(self, region: str) -> RegionSnapshot | None:
        return self._snapshots.get(region)

    async def snapshot(
        self, region: str, now: datetime, max_age: timedelta | None = None
    ) -> RegionSnapshot:
        """The latest snapshot of ``region``, taken now if there is none or it is older than
        ``max_age``: the loop refreshes only regions with held work, so a region's last
        snapshot may be hours old when a new job arrives. Concurrent callers share one."""
        known = self._snapshots.get(region)
        if known is not None and (max_age is None or now - known.taken < max_age):
            return known
        taking = self._taking.get(region)
        if taking is None:
            taking = asyncio.ensure_future(self._refresh_one(region, now))
            self._taking[region] = taking
            taking.add_done_callback(lambda _: self._taking.pop(region, None))
        return await asyncio.shield(taking)

    async def refresh(self, regions: Iterable[str], now: datetime) -> dict[str, RegionSnapshot]:
        wanted = sorted(set(regions))
        snapshots = await asyncio.gather(*(self._refresh_one(r, now) for r in wanted))
        return dict(zip(wanted, snapshots, strict=True))

    async def _refresh_one(self, region: str, now: datetime) -> RegionSnapshot:
        errors: list[ProviderError] = []
        current: IntensityPoint | None = None
        forecast: list[IntensityPoint] = []
        try:
            current = await self.provider.current(region)
        except ProviderError as exc:
            errors.append(exc)
        try:
            forecast = await self.provider.forecast(region, now, now + FORECAST_HORIZON)
        except ProviderError as exc:
            errors.append(exc)
        current, old_current = checked_current(current, forecast, now)
        if old_current is not None:
            errors.append(old_current)
        memory = self._memory.setdefault(region, ForecastMemory(blend=self.blend))
        if memory.wants_history(now):
            try:  # measured actuals of the past two weeks, once a day, for the correction
                memory.record(
                    None, await self.provider.forecast(region, now - memory.KEEP, now), now
                )
            except ProviderError as exc:
                logger.info("no intensity history for region %s: %s", region, exc)
            memory.history_at = now
        memory.record(current, forecast, now)
        view = memory.view(forecast, now) if forecast else None
        snapshot = RegionSnapshot(
            region=region,
            taken=now,
            current=current,
            forecast=tuple(forecast),
            view=view,
            error=describe_problems(errors),
        )
        note = getattr(self.provider, "region_note", None)
        if snapshot.source is not None and callable(note):
            snapshot = dataclasses.replace(snapshot, warning=note(region, snapshot.source))
        previous = self._snapshots.get(region)
        if errors and (previous is None or previous.error != snapshot.error):
            # once per distinct problem, not once per tick (an unknown region never heals)
            logger.warning("intensity for region %s: %s", region, snapshot.error)
        if snapshot.warning and (previous is None or previous.warning != snapshot.warning):
            logger.warning("intensity for region %s: %s", region, snapshot.warning)
        self._snapshots[region] = snapshot
        self._export(snapshot, now)
        if memory.blend is not None:
            self._report_skill(region, memory.blend, now)
        return snapshot

    def _report_skill(self, region: str, blend: LiveBlend, now: datetime) -> None:
        """The sources' recent skill and weights as metrics each time the blend keeps a
        forecast, and in the log once a day."""
        issued, logged = self._skill_logged.get(region, (None, None))
        if blend.issued_at == issued:
            return
        for skill in blend.skill():
            if skill.mae == skill.mae:
                self.metrics.forecast_mae.labels(region, skill.source, skill.bucket).set(skill.mae)
        for bucket, weights in enumerate(blend.weights()):
            for source, weight in weights.items():
                self.metrics.forecast_weight.labels(region, source, bucket_label(bucket)).set(
                    weight
                )
        if logged is None or now - logged >= timedelta(days=1):
            logger.info(
                "forecast for region %s: %s; recent MAE by lead (g): %s",
                region, blend.trusted(), describe_skill(blend.skill()),
            )  # fmt: skip
            logged = now
        self._skill_logged[region] = (blend.issued_at, logged)

    def _export(self, snapshot: RegionSnapshot, now: datetime) -> None:
        if snapshot.current is not None:
            self.metrics.grid_intensity.labels(snapshot.region, snapshot.current.source).set(
                snapshot.current.intensity
            )
        upcoming = [p for p in snapshot.forecast if now <= p.end <= now + FORECAST_MIN_SPAN]
        if upcoming:
            lowest = min(upcoming, key=lambda p: p.intensity)
            self.metrics.grid_intensity_forecast_min.labels(snapshot.region, lowest.source).set(
                lowest.intensity
            )
