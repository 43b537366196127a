"""What-if simulator: replay a grid-intensity trace and run the policy as the operator would.

At every arrival a job of ``duration`` arrives with latest start ``arrival + window -
duration``. At every trace step (the tick) the policy decides for each held job with only
what would be known at that moment: actuals of slots that have ended, and the forecast as
of now. A released job is charged the ACTUAL mean intensity of the slots it runs in.

Compared on the same jobs:

- ``immediate``: every job starts at arrival;
- ``oracle``: the start with the lowest actual mean in the job's window (perfect foresight);
- ``one-shot``: the forecast's best start at arrival, never revised (a baseline for the
  value of re-planning);
- ``policy``: the chosen policy stepped tick by tick.

Forecast modes: ``column`` (the trace's own forecast column, treated as the forecast known
now for every future slot; corrected with :mod:`~carbonaware.scheduling.correction` unless
disabled), ``perfect`` (the actuals), ``naive`` (seasonal-naive from actuals) and ``own``
(the profile forecaster from actuals). Arrivals whose window touches a gap in the trace are
skipped and counted.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.scheduling.correction import CorrectionSettings, ForecastCorrection
from carbonaware.scheduling.forecaster import (
    ProfileSettings,
    profile_values,
    seasonal_naive_values,
)
from carbonaware.scheduling.policy import JobRequest, decide
from carbonaware.scheduling.series import NAN, slot_of_day, slots_per_day
from carbonaware.scheduling.view import ForecastView

ProgressCallback = Callable[[int, int], None]


class ForecastMode(enum.StrEnum):
    COLUMN = "column"
    PERFECT = "perfect"
    NAIVE = "naive"
    OWN = "own"


@dataclass(frozen=True, slots=True)
class TraceInput:
    """A trace as parallel columns (``carbonaware.providers.tracefile.Trace`` fits)."""

    starts: Sequence[datetime]
    step: timedelta
    actual: Sequence[float]
    forecast: Sequence[float] | None = None
    index: Sequence[IntensityIndex | None] | None = None


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


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """One simulated job; intensities are the actual means over the run (gCO2e/kWh)."""

    arrival: datetime
    latest_start: datetime
    start: datetime
    reason: Reason
    immediate: float
    policy: float
    oracle: float
    one_shot: float


@dataclass(frozen=True, slots=True)
class SimulationResult:
    settings: SimulationSettings
    jobs: int
    skipped: int
    deadline_misses: int
    mean_delay: timedelta
    immediate_mean: float
    policy_mean: float
    oracle_mean: float
    one_shot_mean: float
    reasons: dict[str, int]
    decisions: tuple[JobOutcome, ...]

    @property
    def savings(self) -> float:
        """Policy's saving against starting at once: 1 - policy / immediate."""
        return _saving(self.policy_mean, self.immediate_mean)

    @property
    def oracle_savings(self) -> float:
        return _saving(self.oracle_mean, self.immediate_mean)

    @property
    def one_shot_savings(self) -> float:
        return _saving(self.one_shot_mean, self.immediate_mean)

    @property
    def captured_share(self) -> float:
        """(immediate - policy) / (immediate - oracle): the share of the possible saving."""
        return _captured(self.policy_mean, self.immediate_mean, self.oracle_mean)

    @property
    def one_shot_captured_share(self) -> float:
        return _captured(self.one_shot_mean, self.immediate_mean, self.oracle_mean)

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (durations in hours, shares as fractions)."""
        settings = self.settings
        return {
            "policy": settings.policy.value,
            "forecast": settings.forecast.value,
            "duration_hours": settings.duration / timedelta(hours=1),
            "window_hours": settings.window / timedelta(hours=1),
            "arrival_every_minutes": settings.arrival_every / timedelta(minutes=1),
            "max_intensity": settings.max_intensity,
            "max_index": settings.max_index.api_name if settings.max_index is not None else None,
            "jobs": self.jobs,
            "skipped": self.skipped,
            "deadline_misses": self.deadline_misses,
            "mean_delay_hours": self.mean_delay / timedelta(hours=1),
            "mean_intensity": {
                "immediate": self.immediate_mean,
                "policy": self.policy_mean,
                "oracle": self.oracle_mean,
                "one_shot": self.one_shot_mean,
            },
            "savings": self.savings,
            "oracle_savings": self.oracle_savings,
            "one_shot_savings": self.one_shot_savings,
            "captured_share": self.captured_share,
            "one_shot_captured_share": self.one_shot_captured_share,
            "reasons": dict(self.reasons),
        }


def _saving(value: float, immediate: float) -> float:
    return 1.0 - value / immediate if immediate else math.nan


def _captured(value: float, immediate: float, oracle: float) -> float:
    possible = immediate - oracle
    return (immediate - value) / possible if possible > 0 else math.nan


@dataclass(slots=True)
class _Held:
    request: JobRequest
    arrival: int
    latest: int
    one_shot: int


def simulate(
    trace: TraceInput,
    settings: SimulationSettings,
    *,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Run the simulation described in the module docstring. Raises ValueError for
    settings the trace cannot support (steps that do not divide, no forecast column...)."""
    grid = _Grid.make(trace)
    step = grid.step
    duration_slots = _whole_slots(settings.duration, step, "duration")
    window_slots = _whole_slots(settings.window, step, "window")
    arrival_slots = _whole_slots(settings.arrival_every, step, "arrival interval")
    if duration_slots > window_slots:
        raise ValueError("the window must be at least as long as the duration")
    if settings.forecast is ForecastMode.COLUMN and grid.forecast is None:
        raise ValueError("forecast mode 'column' needs a trace with a forecast column")
    day_slots = slots_per_day(step)
    if settings.forecast in (ForecastMode.NAIVE, ForecastMode.OWN) and day_slots is None:
        raise ValueError("forecast modes 'naive' and 'own' need a trace step that divides a day")
    horizon_slots = max(1, math.ceil(settings.horizon / step))
    warmup_slots = math.ceil(settings.warmup / step)
    latest_offset = window_slots - duration_slots
    size = len(grid.actual)
    actual = grid.actual
    run_means = _window_means(actual, duration_slots)
    unknown_before = _unknown_prefix(actual)

    arrivals: list[int] = []
    skipped = 0
    for arrival in range(warmup_slots, size - window_slots + 1, arrival_slots):
        if unknown_before[arrival + window_slots] != unknown_before[arrival]:
            skipped += 1
        else:
            arrivals.append(arrival)

    forecaster = _ForecastSource(grid, settings, horizon_slots, day_slots)
    times = [grid.start + i * step for i in range(size + 1)]
    starts: dict[int, tuple[int, Reason]] = {}
    one_shot: dict[int, int] = {}
    held: list[_Held] = []
    next_arrival = 0
    first_tick = arrivals[0] if arrivals else size
    last_tick = arrivals[-1] + latest_offset if arrivals else -1
    total_ticks = max(0, last_tick - first_tick + 1)
    report_every = max(1, total_ticks // 200)
    tick = first_tick
    while tick <= last_tick:
        if not held and next_arrival < len(arrivals) and arrivals[next_arrival] > tick:
            tick = arrivals[next_arrival]
        now = times[tick]
        view = forecaster.view(tick, now)
        current = _current_point(grid, tick, times)
        while next_arrival < len(arrivals) and arrivals[next_arrival] == tick:
            arrival = arrivals[next_arrival]
            next_arrival += 1
            latest = arrival + latest_offset
            request = JobRequest(
                policy=settings.policy,
                created=now,
                latest_start=times[latest],
                expected_duration=settings.duration,
                max_intensity=settings.max_intensity,
                max_index=settings.max_index,
            )
            planned_slot = latest - arrival
            if view is not None:
                planned = view.best_window(duration_slots, latest_offset)
                if planned is not None:
                    planned_slot = planned.slot
            one_shot[arrival] = arrival + planned_slot
            held.append(_Held(request, arrival, latest, arrival + planned_slot))
        still_held: list[_Held] = []
        for job in held:
            decision = decide(job.request, view, current, now, step)
            if decision.release:
                starts[job.arrival] = (tick, decision.reason)
            else:
                still_held.append(job)
        held = still_held
        if progress is not None and (tick - first_tick) % report_every == 0:
            progress(tick - first_tick, total_ticks)
        tick += 1
    if progress is not None:
        progress(total_ticks, total_ticks)

    outcomes: list[JobOutcome] = []
    misses = 0
    reasons: Counter[str] = Counter()
    delay_slots = 0
    for arrival in arrivals:
        latest = arrival + latest_offset
        start, reason = starts.get(arrival, (latest + 1, Reason.DEADLINE_REACHED))
        if start > latest:
            misses += 1
        start_slot = min(start, size - duration_slots)
        reasons[reason.value] += 1
        delay_slots += start - arrival
        outcomes.append(
            JobOutcome(
                arrival=times[arrival],
                latest_start=times[latest],
                start=times[start],
                reason=reason,
                immediate=run_means[arrival],
                policy=run_means[start_slot],
                oracle=min(run_means[arrival : latest + 1]),
                one_shot=run_means[one_shot[arrival]],
            )
        )
    count = len(outcomes)

    def mean_of(values: Sequence[float]) -> float:
        return math.fsum(values) / count if count else math.nan

    return SimulationResult(
        settings=settings,
        jobs=count,
        skipped=skipped,
        deadline_misses=misses,
        mean_delay=(step * delay_slots) / count if count else timedelta(0),
        immediate_mean=mean_of([o.immediate for o in outcomes]),
        policy_mean=mean_of([o.policy for o in outcomes]),
        oracle_mean=mean_of([o.oracle for o in outcomes]),
        one_shot_mean=mean_of([o.one_shot for o in outcomes]),
        reasons=dict(reasons),
        decisions=tuple(outcomes),
    )


# ---------------------------------------------------------------------------- internals


def _whole_slots(length: timedelta, step: timedelta, what: str) -> int:
    if length <= timedelta(0) or length % step:
        raise ValueError(f"the {what} must be a positive whole number of trace steps ({step})")
    return length // step


def _window_means(values: Sequence[float], slots: int) -> list[float]:
    """Mean over ``values[i : i+slots]`` for each i (``nan`` where any value is unknown)."""
    unknown = _unknown_prefix(values)
    out: list[float] = []
    clean_sums = [0.0]
    total = 0.0
    for value in values:
        total += 0.0 if value != value else value
        clean_sums.append(total)
    for start in range(len(values) - slots + 1):
        end = start + slots
        if unknown[end] != unknown[start]:
            out.append(NAN)
        else:
            out.append((clean_sums[end] - clean_sums[start]) / slots)
    return out


def _unknown_prefix(values: Sequence[float]) -> list[int]:
    counts = [0]
    missing = 0
    for value in values:
        if value != value:
            missing += 1
        counts.append(missing)
    return counts


def _current_point(grid: _Grid, tick: int, times: Sequence[datetime]) -> IntensityPoint | None:
    """The latest actual: the slot that ended at ``tick`` (the current one is not known)."""
    if tick < 1:
        return None
    value = grid.actual[tick - 1]
    if value != value:
        return None
    return IntensityPoint(
        start=times[tick - 1],
        end=times[tick],
        intensity=value,
        source="trace",
        is_forecast=False,
        index=grid.index[tick - 1] if grid.index is not None else None,
    )


@dataclass(frozen=True, slots=True)
class _Grid:
    """The trace on a regular grid; slots missing from the trace are ``nan``."""

    start: datetime
    step: timedelta
    actual: list[float]
    forecast: list[float] | None
    index: list[IntensityIndex | None] | None

    @classmethod
    def make(cls, trace: TraceInput) -> _Grid:
        if len(trace.starts) < 2:
            raise ValueError("a trace needs at least two rows")
        if len(trace.actual) != len(trace.starts):
            raise ValueError("the actual column must have one value per row")
        step = trace.step
        first = trace.starts[0]
        size = (trace.starts[-1] - first) // step + 1
        actual = [NAN] * size
        forecast = [NAN] * size if trace.forecast is not None else None
        index: list[IntensityIndex | None] | None = (
            [None] * size if trace.index is not None else None
        )
        for row, moment in enumerate(trace.starts):
            offset = moment - first
            if offset % step:
                raise ValueError(f"trace row at {moment.isoformat()} is off the {step} grid")
            slot = offset // step
            actual[slot] = float(trace.actual[row])
            if forecast is not None and trace.forecast is not None:
                forecast[slot] = float(trace.forecast[row])
            if index is not None and trace.index is not None:
                index[slot] = trace.index[row]
        return cls(start=first, step=step, actual=actual, forecast=forecast, index=index)


class _ForecastSource:
    """The forecast the policy may see at a tick, for each mode. Only the past is read from
    the actuals: the forecasters get a copy that ends at the current slot."""

    def __init__(
        self,
        grid: _Grid,
        settings: SimulationSettings,
        horizon_slots: int,
        day_slots: int | None,
    ) -> None:
        self.grid = grid
        self.settings = settings
        self.horizon = horizon_slots
        self.day_slots = day_slots
        self.day_offset = slot_of_day(grid.start, grid.step) if day_slots else 0
        history_days = max(settings.profile.history_days, settings.correction.fit_days) + 2
        self.keep = history_days * day_slots if day_slots else 0
        self.refit_slots = max(1, math.ceil(settings.refit_every / grid.step))
        self.correction: ForecastCorrection | None = None
        self.fitted_at: int | None = None

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
            source=self.settings.forecast.value,
        )

    def _values(self, tick: int) -> tuple[list[float], list[float] | None]:
        grid = self.grid
        mode = self.settings.forecast
        end = tick + self.horizon
        if mode is ForecastMode.PERFECT:
            return grid.actual[tick:end], None
        base = max(0, tick - self.keep)
        known = grid.actual[base:tick]  # what has been measured by now
        now_slot = tick - base
        if mode is ForecastMode.COLUMN:
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


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as ``--decisions-out`` writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
