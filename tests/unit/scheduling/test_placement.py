"""decide_region(): where as well as when, and the latest start kept in every region."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling import (
    ForecastView,
    JobRequest,
    Place,
    best_region_window,
    decide,
    decide_region,
    rank_places,
)

from .helpers import HALF_HOUR, T0, view

TICK = HALF_HOUR
HOUR = timedelta(hours=1)


def job(policy: SchedulePolicy = SchedulePolicy.FORECAST, *, slots: int = 4) -> JobRequest:
    return JobRequest(
        policy=policy, created=T0, latest_start=T0 + slots * HALF_HOUR, expected_duration=HOUR
    )


def measured(value: float) -> IntensityPoint:
    return IntensityPoint(
        start=T0 - HALF_HOUR, end=T0, intensity=value, source="test", is_forecast=False
    )


def test_the_job_waits_for_the_cleanest_window_of_any_region() -> None:
    home = view([300, 300, 200, 200, 300, 300])
    away = view([250, 250, 250, 90, 80, 250])
    choice = decide_region(job(), [home, away], [measured(300), measured(250)], T0, TICK)
    assert choice.region == 1
    assert not choice.decision.release
    assert choice.decision.reason is Reason.WAITING_FOR_LOWER_INTENSITY
    assert choice.decision.planned_start == T0 + 3 * HALF_HOUR
    assert choice.decision.planned_window_mean == 85.0


def test_the_job_goes_now_where_starting_now_is_best() -> None:
    home = view([300, 300, 200, 200, 300])
    away = view([50, 60, 250, 250, 250])
    choice = decide_region(job(), [home, away], [None, None], T0, TICK)
    assert choice.region == 1
    assert choice.decision.release
    assert choice.decision.reason is Reason.LOW_CARBON_WINDOW


def test_ties_go_to_the_first_region_and_missing_forecasts_do_not_compete() -> None:
    same = [100.0, 100, 100, 100, 100]
    assert decide_region(job(), [view(same), view(same)], [None, None], T0, TICK).region == 0
    choice = decide_region(job(), [None, view(same)], [measured(10), None], T0, TICK)
    assert choice.region == 1
    plan = best_region_window(job(), [None, None])
    assert plan is None
    # No forecast anywhere: the home region's decision (held for data, released by the deadline).
    blind = decide_region(job(), [None, None], [None, None], T0, TICK)
    assert blind.region == 0
    assert blind.decision.reason is Reason.FORECAST_UNAVAILABLE


def test_one_region_is_exactly_decide() -> None:
    v = view([200, 150, 90, 80, 200])
    current = measured(210)
    assert decide_region(job(), [v], [current], T0, TICK).decision == decide(
        job(), v, current, T0, TICK
    )


def test_immediate_goes_at_once_where_a_run_now_is_cleanest() -> None:
    choice = decide_region(
        job(SchedulePolicy.IMMEDIATE),
        [view([300, 300, 10]), None, view([200, 220, 400])],
        [measured(300), measured(100), measured(200)],
        T0,
        TICK,
    )
    # The region without a forecast is judged by its latest value (100), the others by the
    # expected mean of a 1 h run starting now (300 and 210).
    assert choice.region == 1
    assert choice.decision.release
    assert choice.decision.reason is Reason.IMMEDIATE


def test_threshold_takes_a_single_region() -> None:
    threshold = JobRequest(
        policy=SchedulePolicy.THRESHOLD,
        created=T0,
        latest_start=T0 + HOUR,
        expected_duration=HOUR,
        max_intensity=100,
    )
    with pytest.raises(ValueError, match="Threshold takes a single region"):
        decide_region(threshold, [view([1.0, 2]), view([1.0, 2])], [None, None], T0, TICK)
    with pytest.raises(ValueError, match="one view and one current value"):
        decide_region(job(), [view([1.0, 2])], [None, None], T0, TICK)


forecast_values = st.lists(st.floats(0, 800) | st.just(math.nan), min_size=0, max_size=12)


@given(
    st.lists(forecast_values, min_size=2, max_size=4),
    st.integers(0, 8),
    st.integers(0, 10),
    st.sampled_from([SchedulePolicy.FORECAST, SchedulePolicy.IMMEDIATE]),
)
@settings(max_examples=200, deadline=None)
def test_never_held_past_the_latest_start_in_any_region(
    forecasts: list[list[float]], latest_slots: int, elapsed_slots: int, policy: SchedulePolicy
) -> None:
    now = T0 + elapsed_slots * HALF_HOUR
    request = JobRequest(
        policy=policy,
        created=T0,
        latest_start=T0 + latest_slots * HALF_HOUR,
        expected_duration=HOUR,
    )
    views = [
        ForecastView(now=now, origin=now, step=HALF_HOUR, values=values) if values else None
        for values in forecasts
    ]
    choice = decide_region(request, views, [None] * len(views), now, TICK)
    assert 0 <= choice.region < len(views)
    if now + TICK > request.latest_start:
        assert choice.decision.release
    if not choice.decision.release:
        assert choice.decision.planned_start <= request.latest_start


# --------------------------------------------------------------------------- rank_places


def test_places_rank_by_expected_grams_so_an_efficient_machine_can_beat_a_cleaner_grid() -> None:
    dirty, clean = view([300] * 6), view([200] * 6)
    efficient = Place("efficient", 0, energy_kwh=0.1, embodied_grams=1.0)  # 31 g
    hungry = Place("hungry", 1, energy_kwh=0.2, embodied_grams=5.0)  # 45 g
    ranked = rank_places(job(), [hungry, efficient], [dirty, clean], [None, None], T0, TICK)
    assert [e.place.name for e in ranked] == ["efficient", "hungry"]
    assert ranked[0].intensity == 300.0
    assert ranked[0].grams == pytest.approx(31.0)
    assert ranked[1].grams == pytest.approx(45.0)


def test_without_every_machine_described_places_compare_by_intensity() -> None:
    dirty, clean = view([300] * 6), view([200] * 6)
    described = Place("described", 0, energy_kwh=0.001)
    unknown = Place("unknown", 1)
    ranked = rank_places(job(), [described, unknown], [dirty, clean], [None, None], T0, TICK)
    assert [e.place.name for e in ranked] == ["unknown", "described"]
    assert ranked[1].grams == pytest.approx(0.3)
    assert ranked[0].grams is None


def test_each_place_is_planned_on_its_own_window() -> None:
    home = view([300, 300, 200, 200, 300, 300])
    away = view([250, 250, 250, 90, 80, 250])
    ranked = rank_places(job(), [Place("home", 0), Place("away", 1)], [home, away], [None] * 2,
                         T0, TICK)  # fmt: skip
    best = ranked[0]
    assert best.place.name == "away"
    assert best.intensity == 85.0
    assert not best.decision.release
    assert best.decision.planned_start == T0 + 3 * HALF_HOUR


def test_a_threshold_job_goes_where_the_threshold_is_met_now() -> None:
    threshold = JobRequest(
        policy=SchedulePolicy.THRESHOLD, created=T0, latest_start=T0 + 8 * HALF_HOUR,
        expected_duration=HOUR, max_intensity=150.0,
    )  # fmt: skip
    waits = view([200, 40, 40, 40, 40, 40, 40, 40, 40, 40])  # cleanest later, not now
    meets = view([140] * 10)
    ranked = rank_places(threshold, [Place("waits", 0), Place("meets", 1)], [waits, meets],
                         [measured(200), measured(140)], T0, TICK)  # fmt: skip
    assert ranked[0].place.name == "meets"
    assert ranked[0].decision.release
    assert ranked[0].decision.reason is Reason.THRESHOLD_MET


def test_places_without_data_come_last_in_their_listed_order() -> None:
    places = [Place("a", 0), Place("b", 1), Place("c", 2)]
    ranked = rank_places(job(), places, [None, view([100] * 6), None], [None] * 3, T0, TICK)
    assert [e.place.name for e in ranked] == ["b", "a", "c"]
    assert ranked[1].intensity is None


@settings(max_examples=200)
@given(
    st.lists(
        st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 10),
)
def test_the_best_place_never_holds_past_the_latest_start(
    grids: list[list[float]], slots: int
) -> None:
    request = job(slots=slots)
    places = [Place(str(i), i, energy_kwh=1.0 + i) for i in range(len(grids))]
    views: list[ForecastView | None] = [view(values) for values in grids]
    best = rank_places(request, places, views, [None] * len(grids), T0, TICK)[0]
    if request.latest_start < T0 + TICK:
        assert best.decision.release
    if not best.decision.release:
        assert best.decision.planned_start <= request.latest_start
