"""decide(): every policy's reasons, and the invariant that no job starts after its latest start."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.api.carbonawarejob import IndexLevel, Schedule, SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.scheduling import Decision, ForecastView, JobRequest, decide
from carbonaware.scheduling.policy import decision_horizon

from .helpers import HALF_HOUR, T0, view

TICK = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def job(
    policy: SchedulePolicy = SchedulePolicy.FORECAST,
    *,
    latest: datetime = T0 + 4 * HOUR,
    duration: timedelta = HOUR,
    max_intensity: float | None = None,
    max_index: IntensityIndex | None = None,
) -> JobRequest:
    return JobRequest(
        policy=policy,
        created=T0,
        latest_start=latest,
        expected_duration=duration,
        max_intensity=max_intensity,
        max_index=max_index,
    )


def now_point(value: float, index: IntensityIndex | None = None) -> IntensityPoint:
    return IntensityPoint(
        start=T0 - HALF_HOUR, end=T0, intensity=value, source="test", is_forecast=False, index=index
    )


# ----------------------------------------------------------------------------- Forecast


def test_forecast_holds_for_the_lowest_window_and_says_when() -> None:
    decision = decide(job(), view([200, 200, 90, 80, 200, 200]), now_point(210), T0, TICK)
    assert not decision.release
    assert decision.reason is Reason.WAITING_FOR_LOWER_INTENSITY
    assert decision.planned_start == T0 + 2 * HALF_HOUR
    assert decision.planned_window_mean == 85.0
    assert decision.mean_now == 200.0
    assert "2024-03-04T01:00:00Z" in decision.message
    assert "85 gCO2e/kWh" in decision.message


def test_forecast_releases_when_the_planned_start_is_within_this_tick() -> None:
    decision = decide(job(), view([80, 90, 200, 200]), now_point(85), T0, TICK)
    assert decision.release
    assert decision.reason is Reason.LOW_CARBON_WINDOW
    assert decision.planned_start == T0
    assert decision.planned_window_mean == 85.0


def test_forecast_releases_a_tick_early_rather_than_late() -> None:
    # Best window starts at the next slot boundary, 30 s away; the next tick is 60 s away.
    now = T0 + HALF_HOUR - timedelta(seconds=30)
    v = ForecastView(now=now, origin=T0, step=HALF_HOUR, values=[300, 10, 10, 300, 300])
    decision = decide(job(), v, None, now, TICK)
    assert decision.release
    assert decision.reason is Reason.LOW_CARBON_WINDOW


def test_forecast_ignores_windows_starting_after_the_latest_start() -> None:
    decision = decide(job(latest=T0 + HALF_HOUR), view([100, 120, 130, 10, 10]), None, T0, TICK)
    assert decision.release is True
    assert decision.planned_window_mean == 110.0


def test_forecast_without_any_data_holds_then_releases_as_provider_unavailable() -> None:
    held = decide(job(), None, None, T0, TICK)
    assert not held.release
    assert held.reason is Reason.FORECAST_UNAVAILABLE
    assert held.planned_start == T0 + 4 * HOUR
    last = decide(job(), None, None, T0 + 4 * HOUR - timedelta(seconds=30), TICK)
    assert last.release
    assert last.reason is Reason.PROVIDER_UNAVAILABLE


def test_forecast_with_only_a_current_value_releases_at_the_latest_start() -> None:
    held = decide(job(), None, now_point(100), T0, TICK)
    assert not held.release
    assert held.reason is Reason.FORECAST_UNAVAILABLE
    last = decide(job(), None, now_point(100), T0 + 4 * HOUR, TICK)
    assert last.release
    assert last.reason is Reason.DEADLINE_REACHED


def test_forecast_with_an_all_unknown_view_is_unavailable() -> None:
    decision = decide(job(), view([math.nan] * 10), None, T0, TICK)
    assert not decision.release
    assert decision.reason is Reason.FORECAST_UNAVAILABLE


def test_a_job_found_after_its_latest_start_is_released_at_once() -> None:
    late = T0 + 5 * HOUR
    decision = decide(job(), view([1, 2, 3], now=late), None, late, TICK)
    assert decision.release
    assert decision.reason is Reason.DEADLINE_REACHED
    assert decision.planned_start == late


# ----------------------------------------------------------------------------- Threshold


def test_threshold_met_by_intensity() -> None:
    request = job(SchedulePolicy.THRESHOLD, max_intensity=100)
    assert decide(request, None, now_point(100), T0, TICK).reason is Reason.THRESHOLD_MET
    held = decide(request, view([150, 150, 90]), now_point(101), T0, TICK)
    assert not held.release
    assert held.reason is Reason.WAITING_FOR_THRESHOLD
    assert held.planned_start == T0 + 2 * HALF_HOUR
    assert "at most 100" in held.message


def test_threshold_met_by_index_at_or_below() -> None:
    request = job(SchedulePolicy.THRESHOLD, max_index=IntensityIndex.LOW)
    very_low = now_point(300, IntensityIndex.VERY_LOW)
    moderate = now_point(30, IntensityIndex.MODERATE)
    assert decide(request, None, very_low, T0, TICK).release
    assert not decide(request, None, moderate, T0, TICK).release
    # A provider without an index never meets an index threshold; the deadline still holds.
    no_index = now_point(10)
    assert not decide(request, None, no_index, T0, TICK).release
    assert decide(request, None, no_index, T0 + 4 * HOUR, TICK).reason is Reason.DEADLINE_REACHED


def test_threshold_without_current_value() -> None:
    request = job(SchedulePolicy.THRESHOLD, max_intensity=100)
    held = decide(request, view([50, 50]), None, T0, TICK)
    assert not held.release
    assert held.reason is Reason.FORECAST_UNAVAILABLE
    assert decide(request, None, None, T0 + 4 * HOUR, TICK).reason is Reason.PROVIDER_UNAVAILABLE


# ----------------------------------------------------------------------------- Immediate


def test_immediate_releases_at_once_whatever_the_data() -> None:
    for v, current in ((None, None), (view([500, 1]), now_point(500))):
        decision = decide(job(SchedulePolicy.IMMEDIATE), v, current, T0, TICK)
        assert decision.release
        assert decision.reason is Reason.IMMEDIATE
        assert decision.planned_start == T0


def test_job_request_from_schedule_uses_the_earlier_bound() -> None:
    schedule = Schedule(
        policy=SchedulePolicy.THRESHOLD,
        max_delay_seconds=7200,
        deadline_time=T0 + 10 * HOUR,
        expected_duration_seconds=1800,
        max_index=IndexLevel.LOW,
    )
    request = JobRequest.from_schedule(schedule, T0, priority=3)
    assert request.latest_start == T0 + 2 * HOUR
    assert request.expected_duration == HALF_HOUR
    assert request.max_index is IntensityIndex.LOW
    assert request.priority == 3


# ----------------------------------------------------------------------------- properties

values = st.floats(min_value=0, max_value=1000, allow_nan=False) | st.just(math.nan)
indexes = st.none() | st.sampled_from(list(IntensityIndex))


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[JobRequest, ForecastView | None, IntensityPoint | None, datetime, timedelta]:
    policy = draw(st.sampled_from(list(SchedulePolicy)))
    now = T0 + timedelta(seconds=draw(st.integers(0, 48 * 3600)))
    latest = now + timedelta(seconds=draw(st.integers(-7200, 48 * 3600)))
    duration = timedelta(seconds=draw(st.integers(1, 12 * 3600)))
    tick = timedelta(seconds=draw(st.integers(1, 7200)))
    step = draw(st.sampled_from([HALF_HOUR, HOUR, timedelta(minutes=5)]))
    origin = T0 + ((now - T0) // step) * step
    v = None
    if draw(st.booleans()):
        data = draw(st.lists(values, max_size=120))
        if data:
            risk = draw(st.none() | st.just([r * 0.1 for r in range(len(data))]))
            v = ForecastView(now=now, origin=origin, step=step, values=data, risk=risk)
    current = None
    if draw(st.booleans()):
        current = IntensityPoint(
            start=origin - step,
            end=origin,
            intensity=draw(st.floats(0, 1000)),
            source="test",
            is_forecast=False,
            index=draw(indexes),
        )
    threshold = policy is SchedulePolicy.THRESHOLD
    request = JobRequest(
        policy=policy,
        created=now,
        latest_start=latest,
        expected_duration=duration,
        max_intensity=draw(st.none() | st.floats(0, 1000)) if threshold else None,
        max_index=draw(indexes) if threshold else None,
    )
    return request, v, current, now, tick


@given(situations())
@settings(max_examples=400)
def test_a_held_job_can_still_start_by_its_latest_start(
    situation: tuple[JobRequest, ForecastView | None, IntensityPoint | None, datetime, timedelta],
) -> None:
    request, v, current, now, tick = situation
    decision = decide(request, v, current, now, tick)
    if decision.release:
        assert decision.planned_start == now
    else:
        # Holding is only allowed when the next tick is still not past the latest start.
        assert now + tick <= request.latest_start
        assert now < decision.planned_start <= request.latest_start or (
            decision.planned_start == request.latest_start
        )
    assert isinstance(decision.message, str)
    assert decision.message


@st.composite
def tick_runs(
    draw: st.DrawFn,
) -> tuple[JobRequest, list[tuple[ForecastView | None, IntensityPoint | None]], timedelta]:
    policy = draw(st.sampled_from(list(SchedulePolicy)))
    tick = timedelta(minutes=draw(st.sampled_from([1, 7, 30, 45])))
    window = timedelta(minutes=draw(st.integers(0, 24 * 60)))
    threshold = policy is SchedulePolicy.THRESHOLD
    request = JobRequest(
        policy=policy,
        created=T0,
        latest_start=T0 + window,
        expected_duration=timedelta(minutes=draw(st.integers(1, 240))),
        max_intensity=draw(st.none() | st.floats(0, 300)) if threshold else None,
        max_index=draw(indexes) if threshold else None,
    )
    ticks = window // tick + 2
    data = []
    for i in range(ticks):
        now = T0 + i * tick
        origin = T0 + ((now - T0) // HALF_HOUR) * HALF_HOUR
        v = None
        if draw(st.booleans()):
            forecast = draw(st.lists(values, min_size=1, max_size=60))
            v = ForecastView(now=now, origin=origin, step=HALF_HOUR, values=forecast)
        current = None
        if draw(st.booleans()):
            current = IntensityPoint(
                start=origin - HALF_HOUR,
                end=origin,
                intensity=draw(st.floats(0, 1000)),
                source="t",
                is_forecast=False,
                index=draw(indexes),
            )
        data.append((v, current))
    return request, data, tick


@given(tick_runs())
@settings(max_examples=300)
def test_stepping_tick_by_tick_never_starts_after_the_latest_start(
    run: tuple[JobRequest, list[tuple[ForecastView | None, IntensityPoint | None]], timedelta],
) -> None:
    request, data, tick = run
    released: Decision | None = None
    released_at = None
    for i, (v, current) in enumerate(data):
        now = T0 + i * tick
        decision = decide(request, v, current, now, tick)
        if decision.release:
            released, released_at = decision, now
            break
    assert released is not None, "the job was never released"
    assert released_at is not None
    assert released_at <= request.latest_start
    if request.policy is SchedulePolicy.IMMEDIATE:
        assert released_at == request.created


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=60), st.integers(0, 100))
def test_immediate_has_zero_delay(forecast: list[float], offset_minutes: int) -> None:
    now = T0 + timedelta(minutes=offset_minutes)
    origin = T0 + ((now - T0) // HALF_HOUR) * HALF_HOUR
    v = ForecastView(now=now, origin=origin, step=HALF_HOUR, values=forecast)
    request = JobRequest(
        policy=SchedulePolicy.IMMEDIATE,
        created=now,
        latest_start=now + 24 * HOUR,
        expected_duration=HOUR,
    )
    decision = decide(request, v, None, now, TICK)
    assert decision.release
    assert decision.planned_start == now


# ----------------------------------------------------------------------------- a live loop


@st.composite
def jittered_runs(
    draw: st.DrawFn,
) -> tuple[
    JobRequest, list[tuple[timedelta, ForecastView | None, IntensityPoint | None]], timedelta
]:
    """A job, and the ticks a live loop makes for it: each comes after a random gap of up to
    twice the configured tick (a slow API server, a tick that overran), not tick by tick."""
    request, data, tick = draw(tick_runs())
    gaps = draw(
        st.lists(
            st.floats(0.05, 2.0).map(lambda f: tick * f),
            min_size=len(data),
            max_size=len(data),
        )
    )
    return request, [(gap, v, c) for gap, (v, c) in zip(gaps, data, strict=True)], tick


@given(jittered_runs())
@settings(max_examples=400)
def test_a_loop_with_jittered_ticks_never_starts_after_the_latest_start(
    run: tuple[
        JobRequest, list[tuple[timedelta, ForecastView | None, IntensityPoint | None]], timedelta
    ],
) -> None:
    """The operator decides with decision_horizon(tick, gaps seen): whatever the data, no job
    is released after its latest start while the gaps stay within twice the tick."""
    request, ticks, tick = run
    now = T0
    seen: list[timedelta] = []
    for gap, v, current in ticks:
        decision = decide(request, v, current, now, decision_horizon(tick, seen[-20:]))
        if decision.release:
            assert now <= request.latest_start
            return
        assert now + gap <= request.latest_start or now + decision_horizon(tick, seen) > (
            request.latest_start
        ), "held although the next tick may come after the latest start"
        now += gap
        seen.append(gap)
    # Out of drawn ticks: regular ticks until the job goes, which must still be on time.
    while True:
        decision = decide(request, None, None, now, decision_horizon(tick, seen[-20:]))
        if decision.release:
            assert now <= request.latest_start
            return
        now += tick
        seen.append(tick)


def test_the_horizon_grows_with_slow_ticks() -> None:
    assert decision_horizon(TICK) == 2 * TICK
    assert decision_horizon(TICK, [TICK, 3 * TICK]) == 4.5 * TICK
    assert decision_horizon(TICK, [TICK / 2]) == 2 * TICK
