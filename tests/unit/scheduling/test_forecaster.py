"""Own forecasts: seasonal-naive and the daily profile with a decaying anomaly."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from carbonaware.scheduling import (
    ForecastMethod,
    ProfileSettings,
    daily_profile,
    forecast_from_history,
    profile_values,
    seasonal_naive_values,
)

from .helpers import HALF_HOUR, T0, points

HOUR = timedelta(hours=1)
DAY = 24  # hourly slots per day


def daily_pattern(days: int, *, level: float = 100.0) -> list[float]:
    return [level + 50 * math.sin(2 * math.pi * h / DAY) for _ in range(days) for h in range(DAY)]


def test_seasonal_naive_repeats_the_latest_day() -> None:
    history = list(range(3 * DAY))
    forecast = seasonal_naive_values(history, 3 * DAY, 30, DAY)
    assert forecast[:DAY] == history[2 * DAY :]
    # Beyond one day it repeats the same day again, not unknown values.
    assert forecast[DAY:] == history[2 * DAY : 2 * DAY + 6]


def test_seasonal_naive_skips_unknown_days_and_reads_only_the_past() -> None:
    history = list(range(2 * DAY))
    history[DAY + 3] = math.nan
    forecast = seasonal_naive_values(history, 2 * DAY, DAY, DAY)
    assert forecast[3] == 3  # two days back
    assert forecast[4] == DAY + 4
    assert all(math.isnan(v) for v in seasonal_naive_values([], 0, 5, DAY))


def test_profile_of_a_repeating_day_is_that_day() -> None:
    history = daily_pattern(10)
    profile = daily_profile(history, len(history), DAY, ProfileSettings())
    assert profile == pytest.approx(history[-DAY:])


def test_profile_forecast_continues_the_daily_pattern() -> None:
    history = daily_pattern(10)
    forecast = profile_values(history, len(history), 48, day_slots=DAY, step=HOUR)
    assert forecast == pytest.approx(daily_pattern(2))


def test_anomaly_carries_forward_and_fades() -> None:
    history = daily_pattern(10)
    history[-1] += 40  # the latest hour is 40 g above the usual
    settings = ProfileSettings(anomaly_decay_per_hour=0.5, history_days=21)
    forecast = profile_values(history, len(history), 4, day_slots=DAY, step=HOUR, settings=settings)
    usual = daily_pattern(1)[:4]
    # The profile itself moved by 40 * weight share at that hour only; the next hours carry
    # the anomaly halved each hour.
    excess = [f - u for f, u in zip(forecast, usual, strict=True)]
    assert excess[0] > excess[1] > excess[2] > excess[3] > 0
    assert excess[1] / excess[0] == pytest.approx(0.5, rel=0.05)


def test_profile_beats_naive_when_yesterday_was_unusual() -> None:
    history = daily_pattern(14)
    history[-DAY:] = [v + 80 for v in history[-DAY:]]  # one odd day
    history[-1] -= 80  # back to normal by now
    truth = daily_pattern(1)
    naive = seasonal_naive_values(history, len(history), DAY, DAY)
    own = profile_values(history, len(history), DAY, day_slots=DAY, step=HOUR)
    naive_error = sum(abs(a - b) for a, b in zip(naive, truth, strict=True))
    own_error = sum(abs(a - b) for a, b in zip(own, truth, strict=True))
    assert own_error < naive_error / 2


def test_forecast_from_history_points() -> None:
    history = points([100.0 + (i % 48) for i in range(48 * 3)], is_forecast=False)
    now = T0 + 3 * timedelta(days=1)
    for method in ForecastMethod:
        forecast = forecast_from_history(history, now, timedelta(hours=2), method=method)
        assert [p.start for p in forecast] == [now + i * HALF_HOUR for i in range(4)]
        assert all(p.is_forecast and p.source == f"own-{method.value}" for p in forecast)
        assert [p.intensity for p in forecast] == pytest.approx([100, 101, 102, 103], abs=1e-9)


def test_forecast_from_history_ignores_points_that_have_not_ended() -> None:
    history = points([10.0] * 48 + [999.0], is_forecast=False)
    now = T0 + timedelta(days=1) + timedelta(minutes=10)  # the 999 slot is still running
    forecast = forecast_from_history(history, now, HOUR, method=ForecastMethod.NAIVE)
    assert all(p.intensity == 10.0 for p in forecast)
    assert forecast_from_history([], now, HOUR) == []


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="day_weight"):
        ProfileSettings(day_weight=0)
