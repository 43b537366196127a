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

The tick loop and the forecast modes are in :mod:`~carbonaware.scheduling.replay`, shared
with the simulation of several regions (:mod:`~carbonaware.scheduling.regions`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from carbonaware.api.conditions import Reason
from carbonaware.scheduling.replay import (
    ForecastMode,
    ProgressCallback,
    ReplayPlan,
    SimulationSettings,
    replay,
)
from carbonaware.scheduling.tracegrid import TraceGrid, TraceInput, iso_utc, window_means

__all__ = [
    "ForecastMode",
    "JobOutcome",
    "ProgressCallback",
    "SimulationResult",
    "SimulationSettings",
    "TraceInput",
    "captured",
    "iso_utc",
    "saving",
    "simulate",
]


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
        return saving(self.policy_mean, self.immediate_mean)

    @property
    def oracle_savings(self) -> float:
        return saving(self.oracle_mean, self.immediate_mean)

    @property
    def one_shot_savings(self) -> float:
        return saving(self.one_shot_mean, self.immediate_mean)

    @property
    def captured_share(self) -> float:
        """(immediate - policy) / (immediate - oracle): the share of the possible saving."""
        return captured(self.policy_mean, self.immediate_mean, self.oracle_mean)

    @property
    def one_shot_captured_share(self) -> float:
        return captured(self.one_shot_mean, self.immediate_mean, self.oracle_mean)

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (durations in hours, shares as fractions)."""
        settings = self.settings
        return {
            "policy": settings.policy.value,
            "forecast": settings.forecast.value,
            **settings.job_fields(),
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


def saving(value: float, immediate: float) -> float:
    """1 - value / immediate (``nan`` when there is nothing to compare with)."""
    return 1.0 - value / immediate if immediate else math.nan


def captured(value: float, immediate: float, oracle: float) -> float:
    """(immediate - value) / (immediate - oracle): the share of the possible saving."""
    possible = immediate - oracle
    return (immediate - value) / possible if possible > 0 else math.nan


class FigureMeans:
    """Savings of a result whose ``means`` holds each figure (gCO2e/kWh) by name, with
    ``immediate``, ``policy`` and the oracle named ``ORACLE``."""

    __slots__ = ()
    ORACLE: ClassVar[str] = "oracle"
    means: dict[str, float]

    def saving_of(self, figure: str) -> float:
        """A figure's saving against ``immediate`` (each job at once; in the first region, for
        several regions): 1 - figure / immediate."""
        return saving(self.means[figure], self.means["immediate"])

    @property
    def savings(self) -> float:
        return self.saving_of("policy")

    @property
    def captured_share(self) -> float:
        """(immediate - policy) / (immediate - oracle): the share of the possible saving."""
        means = self.means
        return captured(means["policy"], means["immediate"], means[self.ORACLE])


def simulate(
    trace: TraceInput,
    settings: SimulationSettings,
    *,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Run the simulation described in the module docstring. Raises ValueError for
    settings the trace cannot support (steps that do not divide, no forecast column...)."""
    grid = TraceGrid.make(trace)
    plan = ReplayPlan.make([grid], [settings.forecast], settings)
    placements = replay(plan, settings, progress=progress)
    run_means = window_means(grid.actual, plan.duration_slots)
    last_start = plan.size - plan.duration_slots
    outcomes: list[JobOutcome] = []
    misses = 0
    reasons: Counter[str] = Counter()
    delay_slots = 0
    for placed in placements:
        if placed.start > placed.latest:
            misses += 1
        reasons[placed.reason.value] += 1
        delay_slots += placed.start - placed.arrival
        outcomes.append(
            JobOutcome(
                arrival=grid.time_of(placed.arrival),
                latest_start=grid.time_of(placed.latest),
                start=grid.time_of(placed.start),
                reason=placed.reason,
                immediate=run_means[placed.arrival],
                policy=run_means[min(placed.start, last_start)],
                oracle=min(run_means[placed.arrival : placed.latest + 1]),
                one_shot=run_means[placed.one_shot_start],
            )
        )
    count = len(outcomes)

    def mean_of(values: Sequence[float]) -> float:
        return math.fsum(values) / count if count else math.nan

    return SimulationResult(
        settings=settings,
        jobs=count,
        skipped=plan.skipped,
        deadline_misses=misses,
        mean_delay=(plan.step * delay_slots) / count if count else timedelta(0),
        immediate_mean=mean_of([o.immediate for o in outcomes]),
        policy_mean=mean_of([o.policy for o in outcomes]),
        oracle_mean=mean_of([o.oracle for o in outcomes]),
        one_shot_mean=mean_of([o.one_shot for o in outcomes]),
        reasons=dict(reasons),
        decisions=tuple(outcomes),
    )
