"""Interruptible work: at every tick, run or pause a long job so that it runs in the cleanest
hours of its window and still finishes by its deadline.

At each tick the policy plans the job's remaining run time (work still to do, plus the
overhead of each resume) as a set of segments between now and the deadline, with the lowest
expected intensity the forecast allows, and the job runs this tick if the plan runs now.
The plan is exact on the forecast's grid (:mod:`~carbonaware.scheduling.segments`): every
segment but the last runs at least ``min_run``; pauses stay within ``max_interruptions``;
each resume costs ``resume_overhead`` of extra run time. It is redone at every tick from the
work actually done, so a plan made on yesterday's forecast is revised as the forecast
improves.

Invariants that hold whatever the forecast says (property tests in
``tests/unit/scheduling/test_interruptible.py``):

- the deadline guard: once the run time still needed if the job stayed idle for one more
  tick (remaining work, plus a resume's overhead unless it has never run) no longer fits
  before the deadline, the job runs, and from then on it runs to the end;
- a running segment is never paused before it has run ``min_run``, nor before a resume's
  overhead is spent (:attr:`InterruptibleJob.min_segment`);
- a job never pauses more than ``max_interruptions`` times.

Beyond the forecast's horizon the plan assumes the mean of the known forecast (plus the
largest risk penalty), as :meth:`ForecastView.best_window` does for a single window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from carbonaware.scheduling.interruptjob import (
    InterruptibleDecision,
    InterruptibleJob,
    RunReason,
    RunState,
    Segment,
)
from carbonaware.scheduling.interruptplan import Planner, oracle_cost, planning_rules
from carbonaware.scheduling.view import ForecastView

__all__ = [
    "InterruptibleDecision",
    "InterruptibleJob",
    "RunReason",
    "RunState",
    "Segment",
    "decide_interruptible",
    "decide_interruptible_jobs",
    "oracle_cost",
    "planning_rules",
]


def decide_interruptible(
    job: InterruptibleJob, view: ForecastView | None, now: datetime, tick: timedelta
) -> InterruptibleDecision:
    """Decide for one job at ``now``; the next decision happens at ``now + tick``."""
    return decide_interruptible_jobs([job], view, now, tick)[0]


def decide_interruptible_jobs(
    jobs: Sequence[InterruptibleJob],
    view: ForecastView | None,
    now: datetime,
    tick: timedelta,
    *,
    with_segments: bool = True,
) -> list[InterruptibleDecision]:
    """Decide for every job of a region at ``now``, sharing the work between them: one
    sweep of the planner per start state and job shape answers every job, whatever its
    deadline and remaining work. ``with_segments=False`` skips the plans (the simulator
    needs only the decisions)."""
    if tick <= timedelta(0):
        raise ValueError("tick must be positive")
    # A forecast without one known value is no forecast.
    usable = view if view is not None and any(v == v for v in view.values) else None
    decisions: list[InterruptibleDecision | None] = [None] * len(jobs)
    groups: dict[tuple[timedelta, timedelta, bool], list[int]] = {}
    for index, job in enumerate(jobs):
        early = _decided_without_plan(job, usable, now, tick, with_segments)
        if early is not None and not (with_segments and early.reason is RunReason.MINIMUM_RUN):
            decisions[index] = early
            continue
        key = (job.min_run, job.resume_overhead, job.max_interruptions is not None)
        groups.setdefault(key, []).append(index)
    for indexes in groups.values():
        assert usable is not None  # jobs without a forecast were decided above
        planner = Planner(usable, now, jobs[indexes[0]])
        for index, decision in zip(
            indexes, planner.decide([jobs[i] for i in indexes], with_segments), strict=True
        ):
            decisions[index] = decision
    return [decision for decision in decisions if decision is not None]


def _decided_without_plan(
    job: InterruptibleJob,
    view: ForecastView | None,
    now: datetime,
    tick: timedelta,
    with_segments: bool,
) -> InterruptibleDecision | None:
    """Decisions that no forecast can change: done, the deadline guard, no forecast
    (``view`` None), and a running job that may not pause (whose plan, when asked for, the
    planner makes). Their one segment and its mean only when asked for."""
    latest = job.latest_resume

    def decided(
        run: bool, reason: RunReason, start: datetime, end: datetime
    ) -> InterruptibleDecision:
        if not with_segments:
            return InterruptibleDecision(run, reason, (), None, latest)
        return InterruptibleDecision(
            run, reason, (Segment(start, end),), _window_mean(view, start, end), latest
        )

    if job.remaining <= timedelta(0):
        return InterruptibleDecision(False, RunReason.COMPLETE, (), None, latest)
    if now + tick > latest:
        needed = job.remaining if job.state is RunState.RUNNING else job.need_if_idle
        return decided(True, RunReason.DEADLINE_REACHED, now, now + needed)
    if view is None:
        if job.state is RunState.RUNNING:
            return decided(True, RunReason.FORECAST_UNAVAILABLE, now, now + job.remaining)
        return decided(False, RunReason.FORECAST_UNAVAILABLE, latest, job.deadline)
    if job.state is RunState.RUNNING and job.pauses_left == 0:
        return decided(True, RunReason.NO_INTERRUPTIONS_LEFT, now, now + job.remaining)
    if job.state is RunState.RUNNING and job.running_for < job.min_segment:
        return InterruptibleDecision(True, RunReason.MINIMUM_RUN, (), None, latest)
    return None


def _window_mean(view: ForecastView | None, start: datetime, end: datetime) -> float | None:
    """The forecast's time-weighted mean over [start, end), from its known slots."""
    if view is None or end <= start:
        return None
    total = 0.0
    seconds = 0.0
    for slot, value in enumerate(view.values):
        slot_start = max(start, view.origin + slot * view.step)
        slot_end = min(end, view.origin + (slot + 1) * view.step)
        if slot_end > slot_start and not math.isnan(value):
            length = (slot_end - slot_start).total_seconds()
            total += value * length
            seconds += length
    return total / seconds if seconds else None
