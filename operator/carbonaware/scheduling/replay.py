"""The replay loop of the simulator: jobs arrive, the policy re-plans them at every tick.

At every arrival a job of ``duration`` arrives with latest start ``arrival + window -
duration``. At every trace step (the tick) the policy decides for each held job with only
what would be known at that moment: actuals of slots that have ended, and the forecast as of
now (:class:`ForecastSource`). The same loop runs one region or several read side by side;
with several, :func:`~carbonaware.scheduling.placement.decide_region` chooses where as well
as when, and with one it is exactly :func:`~carbonaware.scheduling.policy.decide`.

Forecast modes: ``column`` (the trace's own forecast column, treated as the forecast known
now for every future slot; corrected with :mod:`~carbonaware.scheduling.correction` unless
disabled), ``vintage`` (the forecast issued last before the step, from the trace's vintages,
corrected the same way), ``perfect`` (the actuals), ``naive`` (seasonal-naive from actuals),
``own`` (the profile forecaster from actuals) and ``blend`` (the provider's forecast, vintages
or column, with ``own`` and ``naive``, weighted by their recent skill:
:mod:`~carbonaware.scheduling.blendsource`). Arrivals whose window touches a gap in any trace are
skipped and counted.

Scoring the placements against actuals is left to the callers (:mod:`.simulate` for one
region, :mod:`.regions` for several).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityIndex
from carbonaware.scheduling.blendsource import PROVIDER, BlendedSource, Component
from carbonaware.scheduling.correction import CorrectionSettings, ForecastCorrection
from carbonaware.scheduling.forecaster import (
    ProfileSettings,
    profile_values,
    seasonal_naive_values,
)
from carbonaware.scheduling.placement import best_region_window, decide_region
from carbonaware.scheduling.policy import JobRequest
from carbonaware.scheduling.series import slot_of_day, slots_per_day
from carbonaware.scheduling.skill import SkillSettings
from carbonaware.scheduling.tracegrid import TraceGrid, unknown_prefix, whole_slots
from carbonaware.scheduling.view import ForecastView

ProgressCallback = Callable[[int, int], None]


class ForecastMode(enum.StrEnum):
    COLUMN = "column"
    PERFECT = "perfect"
    NAIVE = "naive"
    OWN = "own"
    VINTAGE = "vintage"
    BLEND = "blend"


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    policy: SchedulePolicy = SchedulePolicy.FORECAST
    forecast: ForecastMode = ForecastMode.COLUMN
    duration: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(hours=24)
    arrival_every: timedelta = timedelta(minutes=30)
    max_intensity: float | None = None
    max_index: IntensityIndex | None = None
    horizon: timedelta = timedelta(hours=48)
    warmup: timedelta = timedelta(days=1)
    correct_forecast: bool = True
    correction: CorrectionSettings = field(default_factory=CorrectionSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    refit_every: timedelta = timedelta(days=1)
    skill: SkillSettings = field(default_factory=SkillSettings)

    def job_fields(self) -> dict[str, Any]:
        """The job shape and the policy's bounds, as the JSON summaries report them."""
        max_index = self.max_index.api_name if self.max_index is not None else None
        return {
            "duration_hours": self.duration / timedelta(hours=1),
            "window_hours": self.window / timedelta(hours=1),
            "arrival_every_minutes": self.arrival_every / timedelta(minutes=1),
            "max_intensity": self.max_intensity,
            "max_index": max_index,
        }


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What one replay runs: the grids side by side (the first is the home region), each
    region's forecast mode, the job's shape in slots and the arrivals (slot indexes)."""

    grids: tuple[TraceGrid, ...]
    modes: tuple[ForecastMode, ...]
    duration_slots: int
    latest_offset: int
    horizon_slots: int
    day_slots: int | None
    arrivals: tuple[int, ...]
    skipped: int

    @property
    def step(self) -> timedelta:
        return self.grids[0].step

    @property
    def size(self) -> int:
        return len(self.grids[0].actual)

    @classmethod
    def make(
        cls,
        grids: Sequence[TraceGrid],
        modes: Sequence[ForecastMode],
        settings: SimulationSettings,
        names: Sequence[str] = (),
    ) -> ReplayPlan:
        """Check the settings against the grids (ValueError saying what does not fit, naming
        the region when ``names`` are given) and list the arrivals from the end of the
        warm-up whose whole window every grid knows."""
        if not grids or len(modes) != len(grids):
            raise ValueError("one forecast mode per trace is needed")
        first = grids[0]
        if any(
            (grid.start, grid.step, len(grid.actual))
            != (first.start, first.step, len(first.actual))
            for grid in grids
        ):
            raise ValueError("traces replayed together must be on the same grid")
        step = first.step
        duration_slots = whole_slots(settings.duration, step, "duration")
        window_slots = whole_slots(settings.window, step, "window")
        arrival_slots = whole_slots(settings.arrival_every, step, "arrival interval")
        if duration_slots > window_slots:
            raise ValueError("the window must be at least as long as the duration")
        day_slots = slots_per_day(step)
        for index, (grid, mode) in enumerate(zip(grids, modes, strict=True)):
            if mode is ForecastMode.COLUMN and grid.forecast is None:
                which = f"; {names[index]} has none" if names else ""
                raise ValueError(
                    f"forecast mode 'column' needs a trace with a forecast column{which}"
                )
            if mode is ForecastMode.VINTAGE and grid.vintages is None:
                which = f"; {names[index]} has none" if names else ""
                raise ValueError(f"forecast mode 'vintage' needs a trace with vintages{which}")
            own = (ForecastMode.NAIVE, ForecastMode.OWN, ForecastMode.BLEND)
            if mode in own and day_slots is None:
                raise ValueError(
                    "forecast modes 'naive', 'own' and 'blend' need a trace step that divides a day"
                )
        unknown = [unknown_prefix(grid.actual) for grid in grids]
        arrivals: list[int] = []
        skipped = 0
        size = len(first.actual)
        for arrival in range(
            math.ceil(settings.warmup / step), size - window_slots + 1, arrival_slots
        ):
            end = arrival + window_slots
            if any(counts[end] != counts[arrival] for counts in unknown):
                skipped += 1
            else:
                arrivals.append(arrival)
        return cls(
            grids=tuple(grids),
            modes=tuple(modes),
            duration_slots=duration_slots,
            latest_offset=window_slots - duration_slots,
            horizon_slots=max(1, math.ceil(settings.horizon / step)),
            day_slots=day_slots,
            arrivals=tuple(arrivals),
            skipped=skipped,
        )

    def first_region_only(self) -> ReplayPlan:
        """The same arrivals with the first region alone (the single-region comparison)."""
        return dataclasses.replace(self, grids=self.grids[:1], modes=self.modes[:1])


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and when one job started (slot indexes; ``region`` indexes the plan's grids).

    ``start`` is ``latest + 1`` for a job never released (a deadline miss). ``one_shot_*``
    is the best (region, start) of the forecast at arrival, never revised.
    """

    arrival: int
    latest: int
    start: int
    region: int
    reason: Reason
    one_shot_start: int
    one_shot_region: int


@dataclass(slots=True)
class _Held:
    request: JobRequest
    arrival: int
    latest: int


def replay(
    plan: ReplayPlan,
    settings: SimulationSettings,
    *,
    progress: ProgressCallback | None = None,
) -> list[Placement]:
    """Step the policy tick by tick over the plan's arrivals; one placement per arrival."""
    grids = plan.grids
    step = plan.step
    size = plan.size
    arrivals = plan.arrivals
    sources = [
        ForecastSource(grid, settings, mode, plan.horizon_slots, plan.day_slots)
        for grid, mode in zip(grids, plan.modes, strict=True)
    ]
    times = [grids[0].time_of(i) for i in range(size + 1)]
    starts: dict[int, tuple[int, int, Reason]] = {}
    one_shot: dict[int, tuple[int, int]] = {}
    held: list[_Held] = []
    next_arrival = 0
    first_tick = arrivals[0] if arrivals else size
    last_tick = arrivals[-1] + plan.latest_offset if arrivals else -1
    total_ticks = max(0, last_tick - first_tick + 1)
    report_every = max(1, total_ticks // 200)
    tick = first_tick
    while tick <= last_tick:
        if not held and next_arrival < len(arrivals) and arrivals[next_arrival] > tick:
            tick = arrivals[next_arrival]
        now = times[tick]
        views = [source.view(tick, now) for source in sources]
        currents = [grid.current_point(tick) for grid in grids]
        while next_arrival < len(arrivals) and arrivals[next_arrival] == tick:
            arrival = arrivals[next_arrival]
            next_arrival += 1
            latest = arrival + plan.latest_offset
            request = JobRequest(
                policy=settings.policy,
                created=now,
                latest_start=times[latest],
                expected_duration=settings.duration,
                max_intensity=settings.max_intensity,
                max_index=settings.max_index,
            )
            planned = best_region_window(request, views)
            one_shot[arrival] = (
                (arrival + planned.window.slot, planned.region) if planned else (latest, 0)
            )
            held.append(_Held(request, arrival, latest))
        still_held: list[_Held] = []
        for job in held:
            choice = decide_region(job.request, views, currents, now, step)
            if choice.decision.release:
                starts[job.arrival] = (tick, choice.region, choice.decision.reason)
            else:
                still_held.append(job)
        held = still_held
        if progress is not None and (tick - first_tick) % report_every == 0:
            progress(tick - first_tick, total_ticks)
        tick += 1
    if progress is not None:
        progress(total_ticks, total_ticks)
    placements: list[Placement] = []
    for arrival in arrivals:
        latest = arrival + plan.latest_offset
        start, region, reason = starts.get(arrival, (latest + 1, 0, Reason.DEADLINE_REACHED))
        one_shot_start, one_shot_region = one_shot[arrival]
        placements.append(
            Placement(
                arrival=arrival,
                latest=latest,
                start=start,
                region=region,
                reason=reason,
                one_shot_start=one_shot_start,
                one_shot_region=one_shot_region,
            )
        )
    return placements


def provider_mode(grid: TraceGrid) -> ForecastMode | None:
    """The mode that plans on the trace's own forecast: its vintages, else its column."""
    if grid.vintages is not None:
        return ForecastMode.VINTAGE
    return ForecastMode.COLUMN if grid.forecast is not None else None


class ForecastSource:
    """The forecast the policy may see at a tick in one region, for each mode. Only the past
    is read from the actuals: the forecasters get a copy that ends at the current slot."""

    def __init__(
        self,
        grid: TraceGrid,
        settings: SimulationSettings,
        mode: ForecastMode,
        horizon_slots: int,
        day_slots: int | None,
    ) -> None:
        self.grid = grid
        self.settings = settings
        self.mode = mode
        self.horizon = horizon_slots
        self.day_slots = day_slots
        self.day_offset = slot_of_day(grid.start, grid.step) if day_slots else 0
        history_days = max(settings.profile.history_days, settings.correction.fit_days) + 2
        self.keep = history_days * day_slots if day_slots else 0
        self.refit_slots = max(1, math.ceil(settings.refit_every / grid.step))
        self.correction: ForecastCorrection | None = None
        self.fitted_at: int | None = None
        self.blended: BlendedSource | None = None
        if mode is ForecastMode.BLEND:
            assert day_slots is not None
            self.blended = BlendedSource(
                self._components(),
                grid.actual,
                step=grid.step,
                horizon_slots=horizon_slots,
                day_slots=day_slots,
                settings=settings.skill,
            )

    def _components(self) -> dict[str, Component]:
        """The blend's sources: the provider's (vintages, else the column), own, naive."""
        provider = provider_mode(self.grid)
        modes = [m for m in (provider, ForecastMode.OWN, ForecastMode.NAIVE) if m is not None]
        return {
            (PROVIDER if m is provider else m.value): ForecastSource(
                self.grid, self.settings, m, self.horizon, self.day_slots
            )._values
            for m in modes
        }

    def view(self, tick: int, now: datetime) -> ForecastView | None:
        values, risk = self._values(tick)
        if not values:
            return None
        return ForecastView(
            now=now,
            origin=now,
            step=self.grid.step,
            values=values,
            risk=risk,
            source=self.mode.value,
        )

    def _values(self, tick: int) -> tuple[list[float], list[float] | None]:
        grid = self.grid
        mode = self.mode
        end = tick + self.horizon
        if mode is ForecastMode.PERFECT:
            return grid.actual[tick:end], None
        if self.blended is not None:
            return self.blended.values(tick)
        base = max(0, tick - self.keep)
        known = grid.actual[base:tick]  # what has been measured by now
        now_slot = tick - base
        if mode in (ForecastMode.COLUMN, ForecastMode.VINTAGE):
            if mode is ForecastMode.VINTAGE:
                forecast = grid.vintage_forecast(base, tick, end)
            else:
                assert grid.forecast is not None
                forecast = grid.forecast[base:end]
            if not self.settings.correct_forecast or self.day_slots is None:
                return forecast[now_slot:], None
            day_offset = (self.day_offset + base) % self.day_slots
            if self.fitted_at is None or tick - self.fitted_at >= self.refit_slots:
                self.correction = ForecastCorrection.fit(
                    forecast,
                    known,
                    now_slot,
                    day_slots=self.day_slots,
                    day_offset=day_offset,
                    settings=self.settings.correction,
                )
                self.fitted_at = tick
            if self.correction is None:
                return forecast[now_slot:], None
            corrected = self.correction.apply(
                forecast,
                known,
                now_slot,
                len(forecast) - now_slot,
                day_offset=day_offset,
                risk_weight=self.settings.correction.risk_weight,
            )
            return corrected.values, corrected.risk
        assert self.day_slots is not None
        count = min(self.horizon, len(grid.actual) - tick)
        if mode is ForecastMode.NAIVE:
            return seasonal_naive_values(known, now_slot, count, self.day_slots), None
        return (
            profile_values(
                known,
                now_slot,
                count,
                day_slots=self.day_slots,
                step=grid.step,
                settings=self.settings.profile,
            ),
            None,
        )
