"""Timing alignment: a late forecast is moved back into step with the actuals."""

from __future__ import annotations

import math
import random

import pytest

from carbonaware.scheduling import CorrectionSettings, ForecastCorrection
from carbonaware.scheduling.alignment import aligned, fit_alignment, shifted

DAY = 48


def weather_days(size: int) -> list[float]:
    """A daily cycle whose depth changes from day to day, as a sunny or windy day's does."""
    rng = random.Random(5)
    depth = [rng.uniform(20, 90) for _ in range(size // DAY + 1)]
    return [
        200 - depth[i // DAY] * max(0.0, math.sin(2 * math.pi * (i % DAY - 12) / DAY))
        for i in range(size)
    ]


def test_shifted_reads_neighbours_and_pads_outside() -> None:
    values = [0.0, 1.0, 2.0, 3.0]
    assert shifted(values, 1, 0, 4)[:3] == [1.0, 2.0, 3.0]
    assert math.isnan(shifted(values, 1, 0, 4)[3])
    assert shifted(values, -2, 2, 4) == [0.0, 1.0]
    assert all(math.isnan(v) for v in shifted(values, -5, 0, 2))


def test_offsets_reach_the_same_hours_at_any_step() -> None:
    assert CorrectionSettings().align_offsets(48) == (-4, -3, -2, -1, 1, 2, 3, 4)
    assert CorrectionSettings().align_offsets(24) == (-2, -1, 1, 2)
    assert CorrectionSettings(align_hours=0).align_offsets(48) == ()
    with pytest.raises(ValueError, match="align_hours"):
        CorrectionSettings(align_hours=-1)


def test_a_late_forecast_is_moved_back_in_step() -> None:
    actual = weather_days(20 * DAY)
    late = [actual[max(0, i - 2)] for i in range(len(actual))]  # an hour late
    offsets = CorrectionSettings().align_offsets(DAY)
    weights = fit_alignment(late, actual, 4 * DAY, 18 * DAY, offsets, 1.0, day_slots=DAY)
    assert dict(zip(offsets, weights, strict=True))[2] > 0.5  # reads two slots ahead
    moved = aligned(late, offsets, weights, 18 * DAY, 20 * DAY - 4)
    before = sum(abs(f - a) for f, a in zip(late[18 * DAY :], actual[18 * DAY :], strict=False))
    after = sum(abs(f - a) for f, a in zip(moved, actual[18 * DAY :], strict=False))
    assert after < 0.2 * before


def test_the_correction_plans_on_the_aligned_forecast() -> None:
    actual = weather_days(20 * DAY)
    late = [actual[max(0, i - 2)] for i in range(len(actual))]
    now = 18 * DAY
    errors = {}
    for hours in (0.0, 2.0):
        settings = CorrectionSettings(align_hours=hours, near_slots=0)
        model = ForecastCorrection.fit(late, actual, now, day_slots=DAY, settings=settings)
        assert model is not None
        values = model.apply(late, actual[:now], now, DAY).values
        errors[hours] = sum(abs(v - a) for v, a in zip(values, actual[now:], strict=False))
    assert errors[2.0] < 0.3 * errors[0.0]


def test_a_forecast_in_step_gets_no_weights() -> None:
    actual = weather_days(10 * DAY)
    offsets = CorrectionSettings().align_offsets(DAY)
    assert fit_alignment(actual, actual, 0, 9 * DAY, offsets, 1.0, day_slots=DAY) == (
        pytest.approx((0.0,) * len(offsets))
    )
