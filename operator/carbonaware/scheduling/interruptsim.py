"""What-if simulator for interruptible work: replay a trace, run or pause every job at every
tick as the operator would, and charge each job the ACTUAL intensity of the time it ran.

Jobs arrive as in the single-start simulator (the arrivals, forecast modes, warm-up and gap
handling of :mod:`~carbonaware.scheduling.replay`); a job of ``duration`` arriving at ``a``
must finish by ``a + window``. At every trace step (the tick) the policy
(:func:`~carbonaware.scheduling.interruptible.decide_interruptible_jobs`) decides for every
unfinished job, with the forecast as of that tick and the work each job has actually done.
A resumed job spends ``resume_overhead`` of run time before its work goes on; a job stops
as soon as its work is done. Compared on the same jobs, each charged actual intensity x run
time (overhead included):

- ``immediate``: run at once, without a pause (the baseline);
- ``oracle_single``: the best single start (perfect foresight);
- ``oracle_interruptible``: the best set of segments under the same rules (perfect
  foresight, :func:`~carbonaware.scheduling.interruptible.oracle_cost`);
- ``policy``: the interruptible policy stepped tick by tick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.scheduling.interruptible import (
    InterruptibleJob,
    RunState,
    Segment,
    decide_interruptible_jobs,
    oracle_cost,
)
from carbonaware.scheduling.replay import (
    ForecastSource,
    ProgressCallback,
    ReplayPlan,
    SimulationSettings,
)
from carbonaware.scheduling.simulate import FigureMeans
from carbonaware.scheduling.tracegrid import TraceGrid, TraceInput, window_means

HOUR = timedelta(hours=1)
FIGURES = ("immediate", "policy", "oracle_single", "oracle_interruptible")


@dataclass(frozen=True, slots=True)
class InterruptibleSettings:
    """The rules of interruptible work (``carbonaware simulate --interruptible``)."""

    min_run: timedelta = timedelta(hours=1)
    max_interruptions: int | None = None
    resume_overhead: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.min_run < timedelta(0) or self.resume_overhead < timedelta(0):
            raise ValueError("--min-run and --resume-overhead must not be negative")
        if self.max_interruptions is not None and self.max_interruptions < 0:
            raise ValueError("--max-interruptions must not be negative")

    def fields(self) -> dict[str, Any]:
        return {
            "min_run_hours": self.min_run / HOUR,
            "max_interruptions": self.max_interruptions,
            "resume_overhead_minutes": self.resume_overhead / timedelta(minutes=1),
        }


@dataclass(frozen=True, slots=True)
class InterruptibleOutcome:
    """One simulated job: its segments and each figure in gCO2e/kWh x hours of run time."""

    arrival: datetime
    latest_finish: datetime
    finish: datetime | None
    segments: tuple[Segment, ...]
    figures: dict[str, float]

    @property
    def interruptions(self) -> int:
        return max(0, len(self.segments) - 1)


@dataclass(frozen=True, slots=True)
class InterruptibleResult(FigureMeans):
    ORACLE: ClassVar[str] = "oracle_interruptible"

    settings: SimulationSettings
    rules: InterruptibleSettings
    jobs: int
    skipped: int
    deadline_misses: int
    means: dict[str, float]
    """Per figure: gCO2e/kWh per hour of work, averaged over jobs (overhead time counts as
    run time, so ``policy`` is what each hour of useful work cost)."""
    decisions: tuple[InterruptibleOutcome, ...]

    @property
    def interruptions(self) -> list[int]:
        return [outcome.interruptions for outcome in self.decisions]

    @property
    def shortest_inner_segment(self) -> timedelta | None:
        """The shortest segment that is not a job's last (None when no job paused)."""
        inner = [s.end - s.start for o in self.decisions for s in o.segments[:-1]]
        return min(inner) if inner else None

    @property
    def mean_finish_delay(self) -> timedelta:
        """Mean of finish - (arrival + duration): how much later than at once jobs end."""
        finished = [o for o in self.decisions if o.finish is not None]
        if not finished:
            return timedelta(0)
        duration = self.settings.duration
        total = sum(
            (o.finish - o.arrival - duration for o in finished if o.finish is not None),
            timedelta(0),
        )
        return total / len(finished)

    def summary(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (durations in hours, shares as fractions)."""
        settings = self.settings
        interruptions = self.interruptions
        shortest = self.shortest_inner_segment
        return {
            "policy": settings.policy.value,
            "forecast": settings.forecast.value,
            "interruptible": True,
            **settings.job_fields(),
            **self.rules.fields(),
            "jobs": self.jobs,
            "skipped": self.skipped,
            "deadline_misses": self.deadline_misses,
            "misses": self.deadline_misses,
            "mean_intensity": dict(self.means),
            "savings": self.savings,
            "savings_pct": _pct(self.savings),
            "oracle_single_pct": _pct(self.saving_of("oracle_single")),
            "oracle_interruptible_pct": _pct(self.saving_of("oracle_interruptible")),
            "captured_share": self.captured_share,
            "mean_interruptions": (
                sum(interruptions) / len(interruptions) if interruptions else math.nan
            ),
            "max_interruptions_seen": max(interruptions, default=0),
            "shortest_inner_segment_hours": shortest / HOUR if shortest is not None else None,
            "mean_finish_delay_hours": self.mean_finish_delay / HOUR,
        }


def _pct(value: float) -> float:
    return value if math.isnan(value) else round(100.0 * value, 2)


@dataclass(slots=True)
class _Job:
    """A job in the replay: what it has done so far and what it has emitted."""

    arrival: int
    deadline: int
    remaining: timedelta
    overhead_left: timedelta = timedelta(0)
    state: RunState = RunState.WAITING
    running_for: timedelta = timedelta(0)
    interruptions: int = 0
    segment_start: datetime | None = None
    segments: list[Segment] = field(default_factory=list)
    emitted: float = 0.0
    finish: datetime | None = None

    def request(self, rules: InterruptibleSettings, deadline: datetime) -> InterruptibleJob:
        return InterruptibleJob(
            remaining=self.remaining + self.overhead_left,
            deadline=deadline,
            min_run=rules.min_run,
            max_interruptions=rules.max_interruptions,
            interruptions=self.interruptions,
            resume_overhead=rules.resume_overhead,
            state=self.state,
            running_for=self.running_for,
        )

    def advance(
        self, run: bool, now: datetime, step: timedelta, intensity: float, overhead: timedelta
    ) -> None:
        """Run or stay idle for one tick; a run is charged the slot's actual intensity."""
        if not run:
            if self.state is RunState.RUNNING:
                assert self.segment_start is not None
                self.segments.append(Segment(self.segment_start, now))
                self.state = RunState.PAUSED
                self.interruptions += 1
            return
        if self.state is not RunState.RUNNING:
            if self.state is RunState.PAUSED:
                self.overhead_left = overhead
            self.state = RunState.RUNNING
            self.running_for = timedelta(0)
            self.segment_start = now
        spent = min(self.overhead_left, step)
        self.overhead_left -= spent
        work = min(self.remaining, step - spent)
        self.remaining -= work
        used = spent + work
        self.running_for += used
        self.emitted += intensity * (used / HOUR)
        if self.remaining <= timedelta(0) and self.overhead_left <= timedelta(0):
            assert self.segment_start is not None
            self.finish = now + used
            self.segments.append(Segment(self.segment_start, self.finish))


def simulate_interruptible(
    trace: TraceInput,
    settings: SimulationSettings,
    rules: InterruptibleSettings,
    *,
    progress: ProgressCallback | None = None,
) -> InterruptibleResult:
    """Run the simulation described in the module docstring. Raises ValueError for
    settings the trace cannot support, as :func:`~carbonaware.scheduling.simulate` does."""
    if settings.policy is not SchedulePolicy.FORECAST:
        raise ValueError("interruptible work is planned by policy Forecast")
    grid = TraceGrid.make(trace)
    plan = ReplayPlan.make([grid], [settings.forecast], settings)
    jobs = _replay(grid, plan, settings, rules, progress)
    return _score(grid, plan, settings, rules, jobs)


def _replay(
    grid: TraceGrid,
    plan: ReplayPlan,
    settings: SimulationSettings,
    rules: InterruptibleSettings,
    progress: ProgressCallback | None,
) -> list[_Job]:
    step = plan.step
    size = plan.size
    window_slots = plan.latest_offset + plan.duration_slots
    source = ForecastSource(grid, settings, settings.forecast, plan.horizon_slots, plan.day_slots)
    arrivals = plan.arrivals
    jobs: list[_Job] = []
    active: list[_Job] = []
    next_arrival = 0
    first_tick = arrivals[0] if arrivals else size
    total_ticks = max(0, (arrivals[-1] + window_slots if arrivals else 0) - first_tick)
    report_every = max(1, total_ticks // 200)
    tick = first_tick
    while tick < size and (active or next_arrival < len(arrivals)):
        if not active and arrivals[next_arrival] > tick:
            tick = arrivals[next_arrival]
        while next_arrival < len(arrivals) and arrivals[next_arrival] == tick:
            job = _Job(tick, tick + window_slots, settings.duration)
            jobs.append(job)
            active.append(job)
            next_arrival += 1
        now = grid.time_of(tick)
        view = source.view(tick, now)
        requests = [job.request(rules, grid.time_of(job.deadline)) for job in active]
        decisions = decide_interruptible_jobs(requests, view, now, step, with_segments=False)
        intensity = grid.actual[tick]
        for job, decision in zip(active, decisions, strict=True):
            job.advance(decision.run, now, step, intensity, rules.resume_overhead)
        active = [job for job in active if job.finish is None]
        if progress is not None and (tick - first_tick) % report_every == 0:
            progress(min(tick - first_tick, total_ticks), total_ticks)
        tick += 1
    if progress is not None:
        progress(total_ticks, total_ticks)
    return jobs


def _score(
    grid: TraceGrid,
    plan: ReplayPlan,
    settings: SimulationSettings,
    rules: InterruptibleSettings,
    jobs: Sequence[_Job],
) -> InterruptibleResult:
    step = plan.step
    slots = plan.duration_slots
    window_slots = plan.latest_offset + slots
    hours_per_slot = step / HOUR
    run_sums = [mean * slots * hours_per_slot for mean in window_means(grid.actual, slots)]
    outcomes: list[InterruptibleOutcome] = []
    misses = 0
    for job in jobs:
        latest_finish = grid.time_of(job.deadline)
        if job.finish is None or job.finish > latest_finish:
            misses += 1
        window = grid.actual[job.arrival : job.arrival + window_slots]
        figures = {
            "immediate": run_sums[job.arrival],
            "policy": job.emitted,
            "oracle_single": min(run_sums[job.arrival : job.arrival + plan.latest_offset + 1]),
            "oracle_interruptible": oracle_cost(
                window,
                step,
                settings.duration,
                min_run=rules.min_run,
                max_interruptions=rules.max_interruptions,
                resume_overhead=rules.resume_overhead,
            ),
        }
        outcomes.append(
            InterruptibleOutcome(
                arrival=grid.time_of(job.arrival),
                latest_finish=latest_finish,
                finish=job.finish,
                segments=tuple(job.segments),
                figures=figures,
            )
        )
    count = len(outcomes)
    work_hours = settings.duration / HOUR
    means = {
        figure: math.fsum(o.figures[figure] for o in outcomes) / (count * work_hours)
        if count
        else math.nan
        for figure in FIGURES
    }
    return InterruptibleResult(
        settings=settings,
        rules=rules,
        jobs=count,
        skipped=plan.skipped,
        deadline_misses=misses,
        means=means,
        decisions=tuple(outcomes),
    )
