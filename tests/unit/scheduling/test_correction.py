"""Forecast correction: learns bias and persistent errors, leaves a perfect forecast alone."""

from __future__ import annotations

import math
import random

import pytest

from carbonaware.scheduling import CorrectionSettings, ForecastCorrection, corrected_view

from .helpers import HALF_HOUR, T0, points

DAY = 48


def signal(size: int) -> list[float]:
    return [150 + 60 * math.sin(2 * math.pi * i / DAY) + 20 * math.sin(i / 97) for i in range(size)]


def test_a_perfect_forecast_is_left_alone_with_zero_risk() -> None:
    actual = signal(10 * DAY)
    model = ForecastCorrection.fit(actual, actual, 9 * DAY, day_slots=DAY)
    assert model is not None
    corrected = model.apply(actual, actual, 9 * DAY, DAY)
    assert corrected.values == pytest.approx(actual[9 * DAY :])
    assert corrected.risk == pytest.approx([0.0] * DAY)


def test_needs_two_days_of_pairs() -> None:
    actual = signal(DAY)
    assert ForecastCorrection.fit(actual, actual, DAY, day_slots=DAY) is None


def test_time_of_day_bias_is_learned() -> None:
    actual = signal(12 * DAY)
    # The forecast is 20 g low every morning (slots 10-20 of the day) and exact otherwise.
    forecast = [a - (20 if 10 <= i % DAY < 20 else 0) for i, a in enumerate(actual)]
    model = ForecastCorrection.fit(forecast, actual, 10 * DAY, day_slots=DAY)
    assert model is not None
    assert model.bias[15] == pytest.approx(20)
    assert model.bias[30] == pytest.approx(0)
    corrected = model.apply(forecast, actual, 10 * DAY, DAY)
    assert corrected.values == pytest.approx(actual[10 * DAY : 11 * DAY], abs=1e-6)


def test_persistent_errors_are_carried_into_the_next_slots() -> None:
    rng = random.Random(7)
    size = 20 * DAY
    actual = signal(size)
    error = 0.0
    forecast = []
    for a in actual:
        error = 0.9 * error + rng.gauss(0, 10)  # AR(1) forecast error
        forecast.append(a - error)
    now = 18 * DAY
    model = ForecastCorrection.fit(forecast, actual, now, day_slots=DAY)
    assert model is not None
    raw_error = 0.0
    corrected_error = 0.0
    for t in range(now, size - 4):
        corrected = model.apply(forecast, actual[:t], t, 2)
        raw_error += abs(forecast[t] - actual[t])
        corrected_error += abs(corrected.values[0] - actual[t])
    assert corrected_error < 0.6 * raw_error
    # The first slot, right after an observed error, is surer than far-off ones.
    assert model.near_sigma[0] < model.far_sigma
    assert corrected.risk[0] < model.far_sigma * CorrectionSettings().risk_weight


def test_apply_reads_no_actual_from_now_on() -> None:
    actual = signal(12 * DAY)
    forecast = [a + 5 for a in actual]
    model = ForecastCorrection.fit(forecast, actual, 10 * DAY, day_slots=DAY)
    assert model is not None
    now = 10 * DAY + 5
    known = model.apply(forecast, actual[:now], now, 20)
    tampered = actual[:now] + [9999.0] * (len(actual) - now)
    assert model.apply(forecast, tampered, now, 20) == known


def test_corrected_view_from_points() -> None:
    size = 6 * DAY
    actual = signal(size)
    forecast = [a - 10 for a in actual]  # a constant bias
    now = T0 + (4 * DAY) * HALF_HOUR
    forecast_points = points(forecast)
    actual_points = points(actual, is_forecast=False)
    model = ForecastCorrection.fit_points(forecast_points, actual_points, now)
    assert model is not None
    built = corrected_view(forecast_points, actual_points, now, model)
    assert built is not None
    assert built.origin == now
    assert list(built.values[:DAY]) == pytest.approx(actual[4 * DAY : 5 * DAY], abs=1e-6)
    assert built.source.endswith("+corrected")
    plain = corrected_view(forecast_points, actual_points, now, None)
    assert plain is not None
    assert plain.values[0] == pytest.approx(forecast[4 * DAY])


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="fit_days"):
        CorrectionSettings(fit_days=1)


def test_late_actuals_still_correct_the_near_slots() -> None:
    rng = random.Random(11)
    size = 20 * DAY
    actual = signal(size)
    error = 0.0
    forecast = []
    for a in actual:
        error = 0.9 * error + rng.gauss(0, 10)
        forecast.append(a - error)
    now = 18 * DAY
    model = ForecastCorrection.fit(forecast, actual, now, day_slots=DAY)
    assert model is not None
    raw_error = 0.0
    late_error = 0.0
    for t in range(now, size - 4):
        # The last slot's actual is not published yet: only slots before t - 1 are known.
        late = model.apply(forecast, actual[: t - 1], t, 1)
        raw_error += abs(forecast[t] - actual[t])
        late_error += abs(late.values[0] - actual[t])
    assert late_error < 0.8 * raw_error
    assert late.risk[0] == pytest.approx(model.near_sigma[1] * CorrectionSettings().risk_weight)
