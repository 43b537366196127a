"""Where as well as when: replay several regions' traces side by side and measure a policy
that places each job in a region as well as at a start.

The jobs, the ticks and what is known at each tick are those of the single-region simulator
(:mod:`~carbonaware.scheduling.replay`, the same loop); at every tick the policy sees every
region's forecast and :func:`~carbonaware.scheduling.placement.decide_region` chooses. A job
is charged the ACTUAL mean intensity of the region and slots it runs in. The baseline is the
first region at once (the job's home). Compared on the same jobs:

- ``policy``: where and when, re-planned at every tick;
- ``one_shot``: the best (region, start) of the forecasts at arrival, never revised;
- ``first_region_policy``: the same policy in the first region alone (when only);
- ``first_region_oracle``: the best start in the first region (when only, perfect foresight);
- ``best_region_now``: the region with the lowest actual mean, at arrival (where only,
  perfect foresight);
- ``oracle``: the best (region, start) pair (perfect foresight).

Arrivals whose window touches a gap in any region's trace are skipped and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.scheduling.replay import (
    ForecastMode,
    Placement,
    ProgressCallback,
    ReplayPlan,
    SimulationSettings,
    replay,
)
from carbonaware.scheduling.simulate import FigureMeans, captured
from carbonaware.scheduling.tracegrid import TraceInput, align_traces, window_means

# The figures every job is scored on, in the order they are reported.
FIGURES = (
    "immediate",
    "policy",
    "one_shot",
    "first_region_policy",
    "first_region_oracle",
    "best_region_now",
    "oracle",
)


@dataclass(frozen=True, slots=True)
class RegionTrace:
    """One region's trace; ``forecast`` overrides the settings' forecast mode for it."""

    name: str
    trace: TraceInput
    forecast: ForecastMode | None = None


@dataclass(frozen=True, slots=True)
class RegionJobOutcome:
    """One simulated job: where and when it started, and the actual mean intensity over the
    run (gCO2e/kWh) for each figure of :data:`FIGURES`."""

    arrival: datetime
    latest_start: datetime
    start: datetime
    region: str
    reason: Reason
    means: dict[str, float]


@dataclass(frozen=True, slots=True)
class RegionsResult(FigureMeans):
    settings: SimulationSettings
    regions: tuple[str, ...]
    forecasts: tuple[ForecastMode, ...]
    jobs: int
    skipped: int
    deadline_misses: int
    first_region_deadline_misses: int
    mean_delay: timedelta
    means: dict[str, float]
    """Mean over the jobs of each figure of :data:`FIGURES` (gCO2e/kWh)."""
    jobs_by_region: dict[str, int]
    reasons: dict[str, int]
    decisions: tuple[RegionJobOutcome, ...]

    @property
    def oracle_savings(self) -> float:
        return self.saving_of("oracle")

    @property
    def forecast_label(self) -> str:
        """The forecast mode of every region, or ``mixed``."""
        modes = set(self.forecasts)
        return self.forecasts[0].value if len(modes) == 1 else "mixed"

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict, with the keys of the single-region summary
        where they mean the same (durations in hours, shares as fractions)."""
        settings = self.settings
        means = self.means
        return {
            "policy": settings.policy.value,
            "forecast": self.forecast_label,
            "forecasts": {
                name: mode.value for name, mode in zip(self.regions, self.forecasts, strict=True)
            },
            "regions": list(self.regions),
            "baseline": f"{self.regions[0]} at once",
            **settings.job_fields(),
            "jobs": self.jobs,
            "skipped": self.skipped,
            "deadline_misses": self.deadline_misses,
            "first_region_deadline_misses": self.first_region_deadline_misses,
            "mean_delay_hours": self.mean_delay / timedelta(hours=1),
            "jobs_by_region": dict(self.jobs_by_region),
            "mean_intensity": dict(means),
            "savings": self.savings,
            # The same two figures under the names the where-and-when contract gives them.
            "savings_pct": round(self.savings * 100.0, 2),
            "misses": self.deadline_misses,
            "one_shot_savings": self.saving_of("one_shot"),
            "first_region_savings": self.saving_of("first_region_policy"),
            "first_region_oracle_savings": self.saving_of("first_region_oracle"),
            "best_region_now_savings": self.saving_of("best_region_now"),
            "oracle_savings": self.oracle_savings,
            "captured_share": self.captured_share,
            "one_shot_captured_share": captured(
                means["one_shot"], means["immediate"], means["oracle"]
            ),
            "reasons": dict(self.reasons),
        }


def simulate_regions(
    regions: Sequence[RegionTrace],
    settings: SimulationSettings,
    *,
    progress: ProgressCallback | None = None,
) -> RegionsResult:
    """Run the simulation described in the module docstring. Raises ValueError when the
    traces are not on the same grid (:func:`align_traces`) or cannot support the settings."""
    grids = align_traces([(region.name, region.trace) for region in regions])
    names = tuple(region.name for region in regions)
    modes = tuple(region.forecast or settings.forecast for region in regions)
    if settings.policy is SchedulePolicy.THRESHOLD and len(grids) > 1:
        raise ValueError("choosing a region needs policy Forecast or Immediate, not Threshold")
    plan = ReplayPlan.make(grids, modes, settings, names)
    phases = 2 if len(grids) > 1 else 1
    placements = replay(plan, settings, progress=_phase(progress, 0, phases))
    alone = placements
    if phases > 1:
        alone = replay(plan.first_region_only(), settings, progress=_phase(progress, 1, phases))
    run_means = [window_means(grid.actual, plan.duration_slots) for grid in grids]
    home_grid = grids[0]
    last_start = plan.size - plan.duration_slots
    outcomes = tuple(
        RegionJobOutcome(
            arrival=home_grid.time_of(placed.arrival),
            latest_start=home_grid.time_of(placed.latest),
            start=home_grid.time_of(placed.start),
            region=names[placed.region],
            reason=placed.reason,
            means=_figures(placed, home, run_means, last_start),
        )
        for placed, home in zip(placements, alone, strict=True)
    )
    count = len(outcomes)
    by_region = Counter(outcome.region for outcome in outcomes)
    delay_slots = sum(placed.start - placed.arrival for placed in placements)
    return RegionsResult(
        settings=settings,
        regions=names,
        forecasts=modes,
        jobs=count,
        skipped=plan.skipped,
        deadline_misses=sum(1 for placed in placements if placed.start > placed.latest),
        first_region_deadline_misses=sum(1 for placed in alone if placed.start > placed.latest),
        mean_delay=(plan.step * delay_slots) / count if count else timedelta(0),
        means={
            figure: math.fsum(o.means[figure] for o in outcomes) / count if count else math.nan
            for figure in FIGURES
        },
        jobs_by_region={name: by_region.get(name, 0) for name in names},
        reasons=dict(Counter(placed.reason.value for placed in placements)),
        decisions=outcomes,
    )


def _figures(
    placed: Placement,
    home: Placement,
    run_means: Sequence[Sequence[float]],
    last_start: int,
) -> dict[str, float]:
    """The actual mean of each figure for one job; ``home`` is its placement by the same
    policy in the first region alone."""
    window = slice(placed.arrival, placed.latest + 1)
    first = run_means[0]
    return {
        "immediate": first[placed.arrival],
        "policy": run_means[placed.region][min(placed.start, last_start)],
        "one_shot": run_means[placed.one_shot_region][placed.one_shot_start],
        "first_region_policy": first[min(home.start, last_start)],
        "first_region_oracle": min(first[window]),
        "best_region_now": min(means[placed.arrival] for means in run_means),
        "oracle": min(min(means[window]) for means in run_means),
    }


def _phase(progress: ProgressCallback | None, phase: int, phases: int) -> ProgressCallback | None:
    """Progress of one of several replays, reported as part of the whole."""
    if progress is None:
        return None
    report = progress

    def scaled(done: int, total: int) -> None:
        report(phase * total + done, phases * total)

    return scaled
