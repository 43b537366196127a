"""SlotSeries: points on a regular grid, gaps kept unknown."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityIndex
from carbonaware.scheduling import SlotSeries
from carbonaware.scheduling.series import slot_of_day, slots_per_day

from .helpers import HALF_HOUR, T0, points

HOUR = timedelta(hours=1)


def test_points_in_any_order_with_a_gap() -> None:
    given = points([1, 2, 3, 4], indexes=[IntensityIndex.LOW] * 4)
    series = SlotSeries.from_points([given[3], given[0], given[1]])
    assert series is not None
    assert series.start == T0
    assert series.step == HALF_HOUR
    assert series.values[:2] == (1.0, 2.0)
    assert math.isnan(series.values[2])
    assert series.values[3] == 4.0
    assert series.indexes is not None
    assert series.indexes[0] is IntensityIndex.LOW
    assert [p.intensity for p in series.to_points(source="s", is_forecast=True)] == [1, 2, 4]


def test_longer_points_fill_every_slot_they_cover() -> None:
    hourly = points([10, 20], step=HOUR)
    half = points([5], start=T0 + 2 * HOUR)
    series = SlotSeries.from_points([*hourly, *half])
    assert series is not None
    assert series.step == HALF_HOUR
    assert series.values == (10.0, 10.0, 20.0, 20.0, 5.0)


def test_unusable_values_are_unknown_and_empty_input_is_none() -> None:
    series = SlotSeries.from_points(points([1, -5, math.inf]))
    assert series is not None
    assert series.values[0] == 1.0
    assert math.isnan(series.values[1])
    assert math.isnan(series.values[2])
    assert SlotSeries.from_points([]) is None


def test_window_pads_outside_the_series() -> None:
    series = SlotSeries(start=T0, step=HALF_HOUR, values=(1.0, 2.0))
    window = series.window(-1, 4)
    assert math.isnan(window[0])
    assert window[1:3] == [1.0, 2.0]
    assert math.isnan(window[3])
    assert series.slot_at(T0 + timedelta(minutes=59)) == 1


def test_day_arithmetic() -> None:
    assert slots_per_day(HALF_HOUR) == 48
    assert slots_per_day(timedelta(minutes=7)) is None
    assert slot_of_day(datetime(2024, 1, 1, 5, 30, tzinfo=UTC), HALF_HOUR) == 11
