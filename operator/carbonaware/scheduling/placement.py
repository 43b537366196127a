"""Where as well as when: the region and the start of one held job, from each region's forecast.

A job that may run in any of several regions is planned in each of them as the Forecast policy
plans it in one (:meth:`ForecastView.best_window`: the lowest-scoring window of its length that
starts by its latest start) and goes where that plan scores lowest; ties go to the earlier
region in the list (the first is the job's home). Whether it is released now is then
:func:`~carbonaware.scheduling.policy.decide` for that region, so every guarantee of the
single-region policy holds unchanged: never released after the latest start, released at the
last tick before it whatever the data says. Re-planned at every tick, a waiting job may change
region; it is released where the best (region, start) pair starts now.

Immediate jobs go at once to the region where a run starting now is expected to be cleanest.
Threshold compares one region's current value with a bound and ranks nothing across regions,
so it takes a single region.

The operator ranks places with :func:`rank_places`, where a place is a region plus the
machine a run there would use: the expected grams of the run (E x I + M with that machine's
energy and embodied share) decide, not the intensity alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.policy import Decision, JobRequest, decide
from carbonaware.scheduling.view import ForecastView, PlannedWindow


@dataclass(frozen=True, slots=True)
class RegionPlan:
    """The best window of one region (``region`` indexes the views it was chosen from)."""

    region: int
    window: PlannedWindow


@dataclass(frozen=True, slots=True)
class Place:
    """Somewhere a job may run: ``region`` indexes the views; ``energy_kwh`` (E) and
    ``embodied_grams`` (M) are the run's there, or None when the machine is not described."""

    name: str
    region: int
    energy_kwh: float | None = None
    embodied_grams: float = 0.0


@dataclass(frozen=True, slots=True)
class PlaceEstimate:
    """The policy's decision for a job at one place and what a run there is expected to emit:
    ``intensity`` is the mean over the planned run (None when nothing is known there)."""

    place: Place
    decision: Decision
    intensity: float | None
    grams: float | None


def rank_places(
    job: JobRequest,
    places: Sequence[Place],
    views: Sequence[ForecastView | None],
    currents: Sequence[IntensityPoint | None],
    now: datetime,
    tick: timedelta,
) -> list[PlaceEstimate]:
    """Every place, the one expected to emit least first.

    Each place is decided as if it were the only one (:func:`decide`, so each keeps every
    guarantee of the single-region policy); the run's expected intensity is the planned
    window's mean, else the mean of a run started now. Places compare by expected grams
    when every place's machine is described, else by intensity alone. A Threshold job
    ranks the places where its threshold is met now first. Places with no data come last;
    ties keep the listed order.
    """
    by_grams = all(place.energy_kwh is not None for place in places)
    estimates = []
    for place in places:
        decision = decide(job, views[place.region], currents[place.region], now, tick)
        intensity = decision.planned_window_mean
        if intensity is None:
            intensity = decision.mean_now
        grams = None
        if intensity is not None and place.energy_kwh is not None:
            grams = place.energy_kwh * intensity + place.embodied_grams
        estimates.append(PlaceEstimate(place, decision, intensity, grams))

    def key(item: tuple[int, PlaceEstimate]) -> tuple[bool, bool, float, int]:
        order, estimate = item
        threshold_waits = job.policy is SchedulePolicy.THRESHOLD and not estimate.decision.release
        value = estimate.grams if by_grams else estimate.intensity
        return (threshold_waits, value is None, value if value is not None else 0.0, order)

    return [estimate for _, estimate in sorted(enumerate(estimates), key=key)]


@dataclass(frozen=True, slots=True)
class RegionDecision:
    """The policy's decision for the region the job is placed in at this tick."""

    region: int
    decision: Decision


def best_region_window(job: JobRequest, views: Sequence[ForecastView | None]) -> RegionPlan | None:
    """The lowest-scoring (region, start) pair for ``job`` over every region's view.

    Each region's candidate is its own :meth:`ForecastView.best_window`; None when no region
    has a forecast for any start before the latest start.
    """
    best: RegionPlan | None = None
    for region, view in enumerate(views):
        if view is None:
            continue
        slots = view.slots_for(job.expected_duration)
        planned = view.best_window(slots, view.last_start_slot(job.latest_start))
        if planned is not None and (best is None or planned.score < best.window.score):
            best = RegionPlan(region=region, window=planned)
    return best


def decide_region(
    job: JobRequest,
    views: Sequence[ForecastView | None],
    currents: Sequence[IntensityPoint | None],
    now: datetime,
    tick: timedelta,
) -> RegionDecision:
    """Choose the region for ``job`` at ``now`` and decide there (module docstring).

    ``views[i]`` and ``currents[i]`` are region i's forecast and latest intensity, as
    :func:`~carbonaware.scheduling.policy.decide` takes them for one region. With one region
    this is exactly ``decide``. Raises ValueError for a Threshold job with several regions.
    """
    if not views or len(views) != len(currents):
        raise ValueError("one view and one current value per region are needed")
    region = 0
    if len(views) > 1:
        if job.policy is SchedulePolicy.THRESHOLD:
            raise ValueError("policy Threshold takes a single region")
        if job.policy is SchedulePolicy.IMMEDIATE:
            region = _cleanest_now(job, views, currents)
        else:
            plan = best_region_window(job, views)
            region = plan.region if plan is not None else 0
    return RegionDecision(
        region=region, decision=decide(job, views[region], currents[region], now, tick)
    )


def _cleanest_now(
    job: JobRequest,
    views: Sequence[ForecastView | None],
    currents: Sequence[IntensityPoint | None],
) -> int:
    """The region where a run starting now is expected cleanest (the first if none is known):
    the forecast's window mean, else the latest intensity."""
    best_region = 0
    best_value = math.inf
    for region, (view, current) in enumerate(zip(views, currents, strict=True)):
        value = view.mean_now(view.slots_for(job.expected_duration)) if view is not None else None
        if value is None and current is not None:
            value = current.intensity
        if value is not None and value < best_value:
            best_region = region
            best_value = value
    return best_region
