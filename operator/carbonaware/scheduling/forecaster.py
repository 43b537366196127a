"""Our own intensity forecast from recent actuals, for regions whose provider gives none.

Two methods:

- ``naive``: seasonal-naive, the value at the same time of day on the latest day that has
  one (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., 5.2).
- ``profile`` (default): a daily profile plus a decaying level anomaly. The profile is the
  weighted mean of the same time of day over the last ``history_days`` days (each earlier
  day weighs ``day_weight`` times the next, exponential smoothing across days, FPP 8.1);
  the latest actual's departure from the profile is carried forward and fades by
  ``anomaly_decay_per_hour`` per hour of lead time (an AR(1) anomaly, FPP 9.3). Weather
  moves the level for hours, the daily cycle of demand and solar repeats: both show.

The array functions take the actuals as a list on a regular grid and the index of the first
slot that has not ended (``now_slot``): only ``actual[:now_slot]`` is read.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.series import NAN, SlotSeries, slots_per_day


class ForecastMethod(enum.StrEnum):
    NAIVE = "naive"
    PROFILE = "profile"


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """Tuning of the ``profile`` method; defaults chosen by trying a few values on the two
    shipped traces (results of the defaults in ``docs/benchmarks.md``)."""

    history_days: int = 21
    day_weight: float = 0.9
    anomaly_decay_per_hour: float = 0.95

    def __post_init__(self) -> None:
        if self.history_days < 1:
            raise ValueError("history_days must be at least 1")
        if not 0 < self.day_weight <= 1:
            raise ValueError("day_weight must be in (0, 1]")
        if not 0 <= self.anomaly_decay_per_hour <= 1:
            raise ValueError("anomaly_decay_per_hour must be in [0, 1]")


DEFAULT_PROFILE = ProfileSettings()


def seasonal_naive_values(
    actual: Sequence[float], now_slot: int, horizon_slots: int, season_slots: int
) -> list[float]:
    """Forecast slots ``now_slot .. now_slot+horizon_slots-1``: the latest known value one or
    more whole seasons earlier (``nan`` when none of the last seven seasons has one)."""
    out: list[float] = []
    for slot in range(now_slot, now_slot + horizon_slots):
        source = slot - season_slots * ((slot - now_slot) // season_slots + 1)
        value = NAN
        for _ in range(7):
            if source < 0:
                break
            candidate = actual[source]
            if candidate == candidate:  # not nan
                value = candidate
                break
            source -= season_slots
        out.append(value)
    return out


def daily_profile(
    actual: Sequence[float], now_slot: int, day_slots: int, settings: ProfileSettings
) -> list[float]:
    """``profile[r]`` for each residue ``r = slot % day_slots``: the day-weighted mean of the
    most recent ``history_days`` known values at that time of day (``nan`` if none)."""
    weights = [settings.day_weight**age for age in range(settings.history_days)]
    profile = [NAN] * day_slots
    for offset in range(1, day_slots + 1):
        latest = now_slot - offset
        if latest < 0:
            break
        total = 0.0
        weight_sum = 0.0
        for age, weight in enumerate(weights):
            slot = latest - age * day_slots
            if slot < 0:
                break
            value = actual[slot]
            if value == value:
                total += weight * value
                weight_sum += weight
        if weight_sum > 0:
            profile[latest % day_slots] = total / weight_sum
    return profile


def profile_values(
    actual: Sequence[float],
    now_slot: int,
    horizon_slots: int,
    *,
    day_slots: int,
    step: timedelta,
    settings: ProfileSettings = DEFAULT_PROFILE,
) -> list[float]:
    """Forecast slots ``now_slot ..`` with the profile-plus-anomaly model (module docstring)."""
    profile = daily_profile(actual, now_slot, day_slots, settings)
    anomaly = 0.0
    anchor = now_slot - 1
    # The anomaly is taken at the latest known slot of the last few hours.
    lookback = max(1, int(timedelta(hours=3) / step))
    while anchor >= max(0, now_slot - lookback):
        value = actual[anchor]
        base = profile[anchor % day_slots]
        if value == value and base == base:
            anomaly = value - base
            break
        anchor -= 1
    decay_per_slot = settings.anomaly_decay_per_hour ** (step / timedelta(hours=1))
    out: list[float] = []
    carried = anomaly * decay_per_slot ** (now_slot - anchor - 1)
    for slot in range(now_slot, now_slot + horizon_slots):
        carried *= decay_per_slot
        base = profile[slot % day_slots]
        out.append(max(0.0, base + carried) if base == base else NAN)
    return out


def forecast_from_history(
    history: Sequence[IntensityPoint],
    now: datetime,
    horizon: timedelta,
    *,
    method: ForecastMethod = ForecastMethod.PROFILE,
    settings: ProfileSettings = DEFAULT_PROFILE,
) -> list[IntensityPoint]:
    """Forecast points from the slot containing ``now`` for ``horizon``, from actuals.

    Only points that ended by ``now`` are used. Returns an empty list when the history is
    empty or its step does not divide a day (the forecast repeats daily).
    """
    ended = [p for p in history if p.end <= now]
    series = SlotSeries.from_points(ended)
    if series is None:
        return []
    day_slots = slots_per_day(series.step)
    if day_slots is None:
        return []
    now_slot = series.slot_at(now)
    actual = list(series.values) + [NAN] * max(0, now_slot - len(series))
    horizon_slots = max(1, math.ceil(horizon / series.step))
    if method is ForecastMethod.NAIVE:
        values = seasonal_naive_values(actual, now_slot, horizon_slots, day_slots)
    else:
        values = profile_values(
            actual,
            now_slot,
            horizon_slots,
            day_slots=day_slots,
            step=series.step,
            settings=settings,
        )
    source = f"own-{method.value}"
    return [
        IntensityPoint(
            start=series.time_of(now_slot + offset),
            end=series.time_of(now_slot + offset + 1),
            intensity=value,
            source=source,
            is_forecast=True,
        )
        for offset, value in enumerate(values)
        if value == value
    ]
