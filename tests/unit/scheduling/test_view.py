"""ForecastView: window means, the best start, unknown slots and the partial-window fallback."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from carbonaware.scheduling import ForecastView

from .helpers import HALF_HOUR, T0, points, view


def test_window_means_and_best_start_up_to_each_slot() -> None:
    table = view([5, 3, 4, 1, 2]).table(2)
    assert table.means == (4.0, 3.5, 2.5, 1.5)
    assert table.best_upto == (0, 1, 2, 3)


def test_ties_go_to_the_earliest_start() -> None:
    table = view([2, 1, 1, 2, 1, 1]).table(2)
    assert table.best_upto[-1] == 1


def test_unknown_slots_exclude_their_windows() -> None:
    table = view([1, math.nan, 3, 4]).table(2)
    assert math.isnan(table.means[0])
    assert math.isnan(table.means[1])
    assert table.means[2] == 3.5
    assert table.best_upto == (-1, -1, 2)


def test_risk_penalises_the_windows_it_applies_to() -> None:
    plain = ForecastView(now=T0, origin=T0, step=HALF_HOUR, values=[10, 9])
    risky = ForecastView(now=T0, origin=T0, step=HALF_HOUR, values=[10, 9], risk=[0, 2])
    assert plain.best_window(1, 1).slot == 1  # type: ignore[union-attr]
    assert risky.best_window(1, 1).slot == 0  # type: ignore[union-attr]
    # The reported mean is the expected intensity, without the penalty.
    assert risky.table(1).means == (10.0, 9.0)


def test_best_window_respects_the_last_start_slot() -> None:
    v = view([9, 8, 7, 1])
    assert v.best_window(1, 2).slot == 2  # type: ignore[union-attr]
    assert v.best_window(1, 3).slot == 3  # type: ignore[union-attr]
    assert v.best_window(1, -1) is None


def test_a_run_longer_than_the_forecast_uses_the_known_part() -> None:
    v = view([50, 10])
    planned = v.best_window(4, 1)
    assert planned is not None
    assert not planned.covered
    # Start 1 knows 10 and fills three slots with the forecast's mean 30: (10 + 90) / 4 = 25;
    # start 0 knows 50 and 10 and fills two slots: (60 + 60) / 4 = 30.
    assert planned.slot == 1
    assert planned.mean == pytest.approx(25.0)


def test_start_of_slot_zero_is_now_even_mid_slot() -> None:
    now = T0 + timedelta(minutes=10)
    v = ForecastView(now=now, origin=T0, step=HALF_HOUR, values=[1, 2, 3])
    assert v.start_of(0) == now
    assert v.start_of(2) == T0 + 2 * HALF_HOUR
    assert v.last_start_slot(T0 + timedelta(minutes=65)) == 2
    assert v.last_start_slot(now - timedelta(seconds=1)) == -1


def test_build_from_points_starts_at_the_slot_containing_now() -> None:
    now = T0 + timedelta(minutes=45)
    built = ForecastView.build(points([1, 2, 3, 4]), now)
    assert built is not None
    assert built.origin == T0 + HALF_HOUR
    assert built.values == (2.0, 3.0, 4.0)
    assert built.source == "test"


def test_build_returns_none_when_the_forecast_is_all_in_the_past() -> None:
    assert ForecastView.build(points([1, 2]), T0 + timedelta(hours=2)) is None
    assert ForecastView.build([], T0) is None


def test_build_keeps_gaps_unknown() -> None:
    series = points([1, 2, 3, 4])
    built = ForecastView.build([series[0], series[3]], T0)
    assert built is not None
    assert built.values[0] == 1.0
    assert built.values[3] == 4.0
    assert math.isnan(built.values[1])
    assert math.isnan(built.values[2])


def test_origin_must_contain_now() -> None:
    with pytest.raises(ValueError, match="origin"):
        ForecastView(now=T0 + HALF_HOUR, origin=T0, step=HALF_HOUR, values=[1])


def test_slots_for_rounds_up() -> None:
    v = view([1])
    assert v.slots_for(timedelta(minutes=45)) == 2
    assert v.slots_for(timedelta(minutes=30)) == 1
    assert v.slots_for(timedelta(seconds=1)) == 1
