"""Region snapshots: an unknown region's error is kept once, and logged once, not per tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api.intensity import IntensityPoint
from carbonaware.config import OperatorSettings
from carbonaware.handlers.intensity import ForecastMemory, RegionIntensity
from carbonaware.metrics import Metrics
from carbonaware.providers.factory import build_provider
from carbonaware.scheduling.view import ForecastView

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


async def test_unknown_region_snapshot_says_why_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="carbonaware.handlers.intensity")
    # parse_region refuses "XX" before any request: no server is needed
    settings = OperatorSettings(providers="ukci", ukci_base_url="http://127.0.0.1:9")
    regions = RegionIntensity(build_provider(settings), Metrics())

    first = await regions.snapshot("XX", NOW)
    for tick in range(1, 4):
        await regions.refresh(["XX"], NOW + timedelta(seconds=tick))

    last = regions.get("XX")
    assert last is not None
    assert first.current is None
    assert first.view is None
    assert first.error is not None
    assert first.error.count("region 'XX' is not a GB region key") == 1
    # later rounds are served from the cache's error back-off: same problem, same words
    assert last.taken > first.taken
    assert last.error == first.error
    warnings = [r for r in caplog.records if "intensity for region XX" in r.getMessage()]
    assert len(warnings) == 1


def _point(start: datetime, value: float, *, forecast: bool) -> IntensityPoint:
    return IntensityPoint(start, start + HALF_HOUR, value, "ukci", is_forecast=forecast)


def test_memory_learns_a_biased_forecast_and_corrects_the_view() -> None:
    """A provider whose forecast runs 30 g high: after three days the view says so."""
    memory = ForecastMemory()

    def actual_at(start: datetime) -> float:
        return 100.0 + 50.0 * ((start.hour + start.minute / 60) % 24 >= 12)

    start = NOW - timedelta(days=3)
    moment = start
    while moment < NOW:  # one refresh per half hour, as the loop would see it
        upcoming = [
            _point(moment + i * HALF_HOUR, actual_at(moment + i * HALF_HOUR) + 30, forecast=True)
            for i in range(96)
        ]
        current = _point(moment, actual_at(moment), forecast=False)
        memory.record(current, upcoming, moment + timedelta(minutes=1))
        moment += HALF_HOUR
    forecast = [
        _point(NOW + i * HALF_HOUR, actual_at(NOW + i * HALF_HOUR) + 30, forecast=True)
        for i in range(96)
    ]
    plain = ForecastView.build(forecast, NOW)
    corrected = memory.view(forecast, NOW)
    assert plain is not None
    assert corrected is not None
    assert memory.correction is not None
    far = 40  # well past the short-lead regression: the time-of-day bias alone
    assert plain.values[far] - actual_at(NOW + far * HALF_HOUR) == pytest.approx(30)
    assert abs(corrected.values[far] - actual_at(NOW + far * HALF_HOUR)) < 3


def test_memory_without_two_days_of_pairs_keeps_the_plain_forecast() -> None:
    memory = ForecastMemory()
    forecast = [_point(NOW + i * HALF_HOUR, 200.0 + i, forecast=True) for i in range(10)]
    memory.record(_point(NOW - HALF_HOUR, 180.0, forecast=False), forecast, NOW)
    view = memory.view(forecast, NOW)
    assert memory.correction is None
    assert view is not None
    assert list(view.values[:3]) == [200.0, 201.0, 202.0]
