"""Interruptible work: the policy ticked through forecasts that are wrong in a new way at
every tick must still finish every job by its deadline, within its pauses, never cutting a
segment short; and on examples it plans what a person would."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.scheduling import ForecastView
from carbonaware.scheduling.interruptible import (
    InterruptibleDecision,
    InterruptibleJob,
    RunReason,
    RunState,
    Segment,
    decide_interruptible,
    decide_interruptible_jobs,
    oracle_cost,
)

from .helpers import HALF_HOUR, T0, view

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@dataclass
class Ticked:
    """What happened to one job ticked through to its end."""

    finish: datetime | None = None
    segments: list[Segment] = field(default_factory=list)
    interruptions: int = 0
    emitted: float = 0.0


def tick_through(
    actual: list[float],
    job: InterruptibleJob,
    *,
    step: timedelta,
    tick: timedelta,
    start: datetime,
    noise: float = 0.0,
    horizon: int | None = None,
    outage: float = 0.0,
    seed: int = 0,
) -> Ticked:
    """Run the policy at every tick from ``start``, as an operator would: each tick a fresh
    forecast (the actuals plus new noise, cut to ``horizon`` slots, sometimes missing), the
    job's real state, and the overhead spent before work on every resume."""
    rng = random.Random(seed)
    out = Ticked()
    remaining = job.remaining
    overhead_left = timedelta(0)
    state = RunState.WAITING
    running_for = timedelta(0)
    began: datetime | None = None
    now = start
    while now < job.deadline + 10 * step:
        slot = (now - T0) // step
        values = [v + rng.gauss(0.0, noise) for v in actual[slot : slot + (horizon or len(actual))]]
        forecast = None
        if values and rng.random() >= outage:
            forecast = ForecastView(now=now, origin=T0 + slot * step, step=step, values=values)
        asked = InterruptibleJob(
            remaining=remaining + overhead_left,
            deadline=job.deadline,
            min_run=job.min_run,
            max_interruptions=job.max_interruptions,
            interruptions=out.interruptions,
            resume_overhead=job.resume_overhead,
            state=state,
            running_for=running_for,
        )
        decision = decide_interruptible(asked, forecast, now, tick)
        if decision.run:
            if state is not RunState.RUNNING:
                overhead_left = job.resume_overhead if state is RunState.PAUSED else timedelta(0)
                state, running_for, began = RunState.RUNNING, timedelta(0), now
            spent = min(overhead_left, tick)
            overhead_left -= spent
            work = min(remaining, tick - spent)
            remaining -= work
            running_for += spent + work
            out.emitted += actual[slot] * ((spent + work) / HOUR)
            if remaining <= timedelta(0) and overhead_left <= timedelta(0):
                assert began is not None
                out.finish = now + spent + work
                out.segments.append(Segment(began, out.finish))
                return out
        elif state is RunState.RUNNING:
            assert began is not None
            out.segments.append(Segment(began, now))
            out.interruptions += 1
            state = RunState.PAUSED
        now += tick
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    step = draw(st.sampled_from([HALF_HOUR, HOUR]))
    per_step = draw(st.sampled_from([1, 2, 3]))
    work = draw(st.integers(10, 300)) * MINUTE
    slack = draw(st.integers(0, 360)) * MINUTE
    offset = draw(st.integers(0, per_step - 1)) * (step / per_step)
    start = T0 + 2 * step + offset
    job = InterruptibleJob(
        remaining=work,
        deadline=start + work + slack,
        min_run=draw(st.sampled_from([0, 30, 60, 90])) * MINUTE,
        max_interruptions=draw(st.sampled_from([None, None, 0, 1, 3])),
        resume_overhead=draw(st.sampled_from([0, 0, 5, 40])) * MINUTE,
    )
    slots = (work + slack) // step + 16
    return {
        "actual": [float(draw(st.integers(0, 500))) for _ in range(slots)],
        "job": job,
        "step": step,
        "tick": step / per_step,
        "start": start,
        "noise": float(draw(st.sampled_from([0, 20, 80]))),
        "horizon": draw(st.sampled_from([None, 3, 12])),
        "outage": draw(st.sampled_from([0.0, 0.2, 1.0])),
        "seed": draw(st.integers(0, 1000)),
    }


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_never_late_never_over_the_pauses_never_a_short_segment(
    scenario: dict[str, object],
) -> None:
    job = scenario["job"]
    assert isinstance(job, InterruptibleJob)
    ticked = tick_through(**scenario)  # type: ignore[arg-type]
    assert ticked.finish is not None
    assert ticked.finish <= job.deadline
    if job.max_interruptions is not None:
        assert ticked.interruptions <= job.max_interruptions
    assert ticked.interruptions == len(ticked.segments) - 1
    for segment in ticked.segments[:-1]:
        assert segment.end - segment.start >= job.min_run
    run_time = sum((s.end - s.start for s in ticked.segments), timedelta(0))
    assert run_time == job.remaining + ticked.interruptions * job.resume_overhead


def test_the_plan_runs_in_the_cleanest_slots_in_runs_of_at_least_the_minimum() -> None:
    values = [300, 300, 100, 100, 300, 300, 50, 50, 50, 300, 300, 300]
    job = InterruptibleJob(remaining=2.5 * HOUR, deadline=T0 + 6 * HOUR, min_run=HOUR)
    decision = decide_interruptible(job, view(values), T0, HALF_HOUR)
    assert not decision.run
    assert decision.reason is RunReason.WAITING_FOR_LOWER_INTENSITY
    assert decision.segments == (
        Segment(T0 + HOUR, T0 + 2 * HOUR),
        Segment(T0 + 3 * HOUR, T0 + 4.5 * HOUR),
    )
    assert decision.expected_mean == pytest.approx((2 * 100 + 3 * 50) / 5)
    # Half-hour runs are allowed: the single cheapest half hour comes in too.
    short = decide_interruptible(
        InterruptibleJob(remaining=HOUR, deadline=T0 + 6 * HOUR, min_run=HALF_HOUR),
        view([300, 60, 300, 300, 50, 300, 70, 300]),
        T0,
        HALF_HOUR,
    )
    assert short.segments == (
        Segment(T0 + HALF_HOUR, T0 + HOUR),
        Segment(T0 + 2 * HOUR, T0 + 2.5 * HOUR),
    )


def test_each_resume_costs_its_overhead_in_the_plan() -> None:
    values = [300, 300, 100, 100, 300, 300, 50, 50, 50, 300, 300, 300]
    job = InterruptibleJob(
        remaining=2.5 * HOUR,
        deadline=T0 + 6 * HOUR,
        min_run=HOUR,
        resume_overhead=5 * MINUTE,
        state=RunState.PAUSED,
        interruptions=1,
    )
    decision = decide_interruptible(job, view(values), T0, HALF_HOUR)
    # Two resumes: 2.5 h of work and 10 min of overhead, in the same clean slots.
    assert decision.segments == (
        Segment(T0 + HOUR, T0 + 2 * HOUR),
        Segment(T0 + 3 * HOUR, T0 + 4 * HOUR + 40 * MINUTE),
    )
    # One pause left: the plan may not pause twice more, so it takes one run.
    limited = decide_interruptible(
        InterruptibleJob(
            remaining=2.5 * HOUR,
            deadline=T0 + 6 * HOUR,
            min_run=HOUR,
            max_interruptions=1,
            state=RunState.RUNNING,
            running_for=HOUR,
        ),
        view(values),
        T0,
        HALF_HOUR,
    )
    assert len(limited.segments) <= 2


def test_the_deadline_guard_is_exact_to_the_tick() -> None:
    falling = [float(500 - 10 * i) for i in range(24)]
    tick = 10 * MINUTE
    for state, overhead in ((RunState.WAITING, timedelta(0)), (RunState.PAUSED, HALF_HOUR)):
        job = InterruptibleJob(
            remaining=3 * HOUR,
            deadline=T0 + 8 * HOUR,
            resume_overhead=HALF_HOUR,
            state=state,
            interruptions=1 if state is RunState.PAUSED else 0,
        )
        latest = T0 + 5 * HOUR - overhead
        assert job.latest_resume == latest
        # The next tick comes exactly at the latest resume: the end is cleaner, it waits.
        waiting = latest - tick
        before = decide_interruptible(job, forecast_at(falling, waiting), waiting, tick)
        assert not before.run
        assert before.segments == (Segment(latest, job.deadline),)
        # A minute later the next tick would be late: it runs, to the end.
        later = waiting + MINUTE
        forced = decide_interruptible(job, forecast_at(falling, later), later, tick)
        assert forced.run
        assert forced.reason is RunReason.DEADLINE_REACHED
        assert forced.segments == (Segment(later, later + 3 * HOUR + overhead),)


def forecast_at(values: list[float], now: datetime) -> ForecastView:
    origin = T0 + ((now - T0) // HALF_HOUR) * HALF_HOUR
    return ForecastView(now=now, origin=origin, step=HALF_HOUR, values=values)


def test_a_job_waits_for_the_cleaner_end_and_finishes_exactly_at_the_deadline() -> None:
    falling = [float(500 - 10 * i) for i in range(40)]
    job = InterruptibleJob(remaining=3 * HOUR, deadline=T0 + 2 * HOUR + 8 * HOUR, min_run=HOUR)
    ticked = tick_through(falling, job, step=HALF_HOUR, tick=HALF_HOUR, start=T0 + 2 * HOUR)
    assert ticked.segments == [Segment(job.deadline - 3 * HOUR, job.deadline)]


def test_a_running_job_keeps_running_until_its_minimum_or_without_pauses_left() -> None:
    dirty_now = [500.0, 500.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    young = InterruptibleJob(
        remaining=2 * HOUR,
        deadline=T0 + 4 * HOUR,
        min_run=HOUR,
        state=RunState.RUNNING,
        running_for=HALF_HOUR,
    )
    decision = decide_interruptible(young, view(dirty_now), T0, HALF_HOUR)
    assert decision.run
    assert decision.reason is RunReason.MINIMUM_RUN
    grown = decide_interruptible(
        InterruptibleJob(**{**vars_of(young), "running_for": HOUR}), view(dirty_now), T0, HALF_HOUR
    )
    assert not grown.run  # the minimum is done: it pauses for the clean hours
    no_pause = decide_interruptible(
        InterruptibleJob(**{**vars_of(young), "running_for": HOUR, "max_interruptions": 2,
                            "interruptions": 2}),
        view(dirty_now),
        T0,
        HALF_HOUR,
    )  # fmt: skip
    assert no_pause.run
    assert no_pause.reason is RunReason.NO_INTERRUPTIONS_LEFT
    assert no_pause.segments == (Segment(T0, T0 + 2 * HOUR),)


def test_without_a_forecast_it_waits_until_the_guard_and_keeps_running_once_started() -> None:
    waiting = InterruptibleJob(remaining=HOUR, deadline=T0 + 5 * HOUR)
    held = decide_interruptible(waiting, None, T0, HALF_HOUR)
    assert not held.run
    assert held.reason is RunReason.FORECAST_UNAVAILABLE
    assert held.segments == (Segment(T0 + 4 * HOUR, T0 + 5 * HOUR),)
    unknown = view([math.nan] * 6)
    running = InterruptibleJob(
        remaining=HOUR, deadline=T0 + 5 * HOUR, state=RunState.RUNNING, running_for=HOUR
    )
    kept = decide_interruptible(running, unknown, T0, HALF_HOUR)
    assert kept.run
    assert kept.reason is RunReason.FORECAST_UNAVAILABLE


def test_a_finished_job_stays_idle() -> None:
    done = decide_interruptible(
        InterruptibleJob(remaining=timedelta(0), deadline=T0 + HOUR), view([1.0]), T0, HALF_HOUR
    )
    assert not done.run
    assert done.reason is RunReason.COMPLETE


def test_flat_forecasts_run_now() -> None:
    job = InterruptibleJob(remaining=HOUR, deadline=T0 + 6 * HOUR, min_run=HOUR)
    decision = decide_interruptible(job, view([100.0] * 12), T0, HALF_HOUR)
    assert decision.run
    assert decision.segments == (Segment(T0, T0 + HOUR),)


def test_unknown_slots_and_the_time_past_the_forecast_count_as_its_mean() -> None:
    # Known: 200 then 100; the rest of the window is unknown and planned at their mean (150).
    job = InterruptibleJob(remaining=HOUR, deadline=T0 + 4 * HOUR)
    decision = decide_interruptible(job, view([200.0, 100.0]), T0, HALF_HOUR)
    assert not decision.run
    assert decision.segments[0].start == T0 + HALF_HOUR
    assert decision.expected_mean == pytest.approx(125.0)


def test_deciding_together_is_deciding_one_by_one() -> None:
    rng = random.Random(7)
    values = [float(rng.randint(50, 400)) for _ in range(96)]
    now = T0 + 10 * MINUTE
    forecast = ForecastView(now=now, origin=T0, step=HALF_HOUR, values=values)
    jobs = [
        InterruptibleJob(
            remaining=rng.randint(1, 30) * 17 * MINUTE,
            deadline=now + rng.randint(10, 60) * HOUR,
            min_run=rng.choice([0, 30, 60]) * MINUTE,
            max_interruptions=rng.choice([None, 1, 4]),
            interruptions=rng.choice([0, 1]),
            resume_overhead=rng.choice([0, 5]) * MINUTE,
            state=rng.choice(list(RunState)),
            running_for=rng.randint(0, 3) * HALF_HOUR,
        )
        for _ in range(25)
    ]
    together = decide_interruptible_jobs(jobs, forecast, now, MINUTE)
    alone: list[InterruptibleDecision] = [
        decide_interruptible(job, forecast, now, MINUTE) for job in jobs
    ]
    assert together == alone
    quick = decide_interruptible_jobs(jobs, forecast, now, MINUTE, with_segments=False)
    assert [d.run for d in quick] == [d.run for d in alone]


def test_the_oracle_is_the_best_set_of_segments_and_beats_any_single_start() -> None:
    actual = [300.0, 100.0, 100.0, 300.0, 300.0, 50.0, 50.0, 300.0]
    best = oracle_cost(actual, HALF_HOUR, 2 * HOUR, min_run=HOUR)
    assert best == pytest.approx((100 + 100 + 50 + 50) * 0.5)
    # Runs of 90 minutes at least: the pair of 100s must stretch to a dirty slot.
    stretched = oracle_cost(actual, HALF_HOUR, 2 * HOUR, min_run=90 * MINUTE)
    assert stretched == pytest.approx((100 + 100 + 300 + 50) * 0.5)
    single = min(sum(actual[i : i + 4]) * 0.5 for i in range(5))
    assert best <= stretched <= single
    assert oracle_cost(actual, HALF_HOUR, 2 * HOUR, min_run=HOUR, max_interruptions=0) == single


def test_invalid_jobs_are_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        InterruptibleJob(remaining=HOUR, deadline=T0, min_run=-HOUR)
    with pytest.raises(ValueError, match="max_interruptions"):
        InterruptibleJob(remaining=HOUR, deadline=T0, max_interruptions=-1)
    with pytest.raises(ValueError, match="tick"):
        decide_interruptible(InterruptibleJob(remaining=HOUR, deadline=T0), None, T0, MINUTE * 0)


def vars_of(job: InterruptibleJob) -> dict[str, object]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}


def test_a_resumed_run_is_never_paused_before_its_overhead_is_spent() -> None:
    """Found by the property above: with no minimum run, a resume whose overhead is longer
    than a tick was paused mid-overhead and paid it again at the next resume."""
    job = InterruptibleJob(
        remaining=16 * MINUTE,
        deadline=T0 + 4 * HOUR,
        resume_overhead=40 * MINUTE,
        interruptions=1,
        state=RunState.RUNNING,
        running_for=15 * MINUTE,
    )
    assert job.min_segment == 40 * MINUTE
    # Dirty now, clean later: a plan would pause, but the overhead is not spent yet.
    decision = decide_interruptible(job, view([500, 500] + [0] * 10), T0, 15 * MINUTE)
    assert decision.run
    assert decision.reason is RunReason.MINIMUM_RUN
    assert dataclasses.replace(job, running_for=40 * MINUTE).may_pause
