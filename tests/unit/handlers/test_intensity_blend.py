"""The operator's blended forecast: scored as the provider reports actuals, exported as metrics,
logged once a day and named in the held message."""

from __future__ import annotations

import logging
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityPoint
from carbonaware.handlers.hold import forecast_note
from carbonaware.handlers.intensity import RegionIntensity, RegionSnapshot
from carbonaware.metrics import Metrics
from carbonaware.scheduling.view import ForecastView

START = datetime(2024, 3, 4, tzinfo=UTC)
STEP = timedelta(minutes=30)


class NoisyProvider:
    """A daily cycle with weather; its forecast errs by as much as the daily swing."""

    def __init__(self, noise: float) -> None:
        self.noise = noise
        self.now = START
        self.rng = random.Random(5)
        weather = random.Random(3)
        anomaly = 0.0
        self.values: list[float] = []
        for slot in range(12 * 48):
            anomaly = 0.97 * anomaly + weather.gauss(0, 4)
            hour = slot / 2 % 24
            self.values.append(150 + 60 * math.sin(2 * math.pi * (hour - 9) / 24) + anomaly)

    @property
    def name(self) -> str:
        return "noisy"

    def _point(self, slot: int, value: float, forecast: bool) -> IntensityPoint:
        start = START + slot * STEP
        return IntensityPoint(start, start + STEP, value, "noisy", is_forecast=forecast)

    async def current(self, region: str) -> IntensityPoint:
        slot = (self.now - START) // STEP
        return self._point(slot, self.values[slot], False)

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        first = max(0, (start - START) // STEP)
        last = min(len(self.values), -(-(end - START) // STEP))
        points = []
        for slot in range(first, last):
            if START + (slot + 1) * STEP <= self.now:
                points.append(self._point(slot, self.values[slot], False))
            else:
                noisy = self.values[slot] + self.rng.gauss(0, self.noise)
                points.append(self._point(slot, max(0.0, noisy), True))
        return points

    async def aclose(self) -> None:
        return None


async def _planned_view(*, blend: bool, days: int) -> tuple[Metrics, ForecastView]:
    """A poor provider refreshed every half hour for ``days``: the metrics and the last view."""
    provider = NoisyProvider(noise=60.0)
    metrics = Metrics()
    regions = RegionIntensity(provider, metrics, blend=blend)
    for slot in range(days * 48):
        provider.now = START + slot * STEP + timedelta(minutes=2)
        await regions.refresh(["GB"], provider.now)
    snapshot = regions.get("GB")
    assert snapshot is not None
    assert snapshot.view is not None
    return metrics, snapshot.view


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_poor_provider_is_outweighed_and_the_metrics_and_log_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="carbonaware.handlers.intensity")
    metrics, view = await _planned_view(blend=True, days=5)
    assert view.source.startswith("blend trusting ")
    assert "own" in view.source
    mae = "carbonaware_forecast_mae_grams"
    provider_far = _sample(metrics, mae, region="GB", source="provider", lead="24-48h")
    own_far = _sample(metrics, mae, region="GB", source="own", lead="24-48h")
    assert provider_far is not None
    assert own_far is not None
    assert provider_far > 2 * own_far
    weight = _sample(
        metrics, "carbonaware_forecast_weight", region="GB", source="own", lead="24-48h"
    )
    assert weight is not None
    assert weight >= 0.7
    daily = [r.getMessage() for r in caplog.records if "forecast for region GB" in r.getMessage()]
    assert 4 <= len(daily) <= 6, daily  # once a day over five days
    assert "recent MAE by lead (g): leads 0-3h/" in daily[-1]


async def test_without_blending_the_provider_forecast_is_planned_on() -> None:
    metrics, view = await _planned_view(blend=False, days=3)
    assert not view.source.startswith("blend")
    own_near = _sample(
        metrics, "carbonaware_forecast_mae_grams", region="GB", source="own", lead="0-3h"
    )
    assert own_near is None


def test_the_held_message_names_the_trusted_sources_when_the_plan_used_the_forecast() -> None:
    now = START + timedelta(minutes=5)
    view = ForecastView(
        now=now, origin=START, step=STEP, values=[1.0], source="blend trusting 0-48h provider"
    )
    snapshot = RegionSnapshot("GB", now, None, (), view, None)
    note = forecast_note(snapshot, Reason.WAITING_FOR_LOWER_INTENSITY)
    assert note == " Forecast: blend trusting 0-48h provider."
    assert forecast_note(snapshot, Reason.DEADLINE_REACHED) == ""
    plain = RegionSnapshot("GB", now, None, (), ForecastView(
        now=now, origin=START, step=STEP, values=[1.0], source="ukci+corrected"
    ), None)  # fmt: skip
    assert forecast_note(plain, Reason.WAITING_FOR_LOWER_INTENSITY) == ""
    assert forecast_note(None, Reason.WAITING_FOR_LOWER_INTENSITY) == ""
