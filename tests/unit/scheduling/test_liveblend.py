"""The operator's blend: the provider alone until scored, then the sources by recent skill."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.liveblend import OWN, PROVIDER, LiveBlend, describe_skill
from carbonaware.scheduling.view import ForecastView

STEP = timedelta(minutes=30)
HORIZON = timedelta(hours=48)
START = datetime(2024, 3, 4, tzinfo=UTC)
SLOTS = 96


def _weather(days: int, seed: int = 7) -> list[float]:
    """A daily cycle plus a slowly moving weather anomaly, one value per slot."""
    rng = random.Random(seed)
    anomaly = 0.0
    values = []
    for slot in range((days + 3) * 48):
        anomaly = 0.97 * anomaly + rng.gauss(0, 4)
        hour = slot / 2 % 24
        values.append(max(5.0, 150 + 60 * math.sin(2 * math.pi * (hour - 9) / 24) + anomaly))
    return values


def _actual_point(slot: int, value: float) -> IntensityPoint:
    start = START + slot * STEP
    return IntensityPoint(start, start + STEP, value, "trace", is_forecast=False)


def _run(
    days: int, provider_noise: float, seed: int = 11
) -> tuple[LiveBlend, dict[str, list[float]]]:
    """Tick every slot for ``days``; the absolute errors of each source's forecasts issued on
    the last day (all leads), scored against the actuals."""
    actual = _weather(days)
    rng = random.Random(seed)
    blend = LiveBlend(STEP, HORIZON)
    errors: dict[str, list[float]] = {"blend": [], PROVIDER: [], OWN: []}
    last_day = (days - 1) * 48
    for slot in range(days * 48):
        now = START + slot * STEP + timedelta(minutes=1)
        blend.record_actuals([_actual_point(s, actual[s]) for s in range(slot)][-48:], now)
        forecast = [actual[slot + k] + rng.gauss(0, provider_noise) for k in range(SLOTS)]
        provider = ForecastView(now=now, origin=START + slot * STEP, step=STEP, values=forecast)
        view = blend.view(provider, now)
        if slot >= last_day and slot % 4 == 0:
            own = blend.tracker._issued.get(blend.slot_of(now), {}).get(OWN)
            for k in range(SLOTS):
                truth = actual[slot + k]
                errors["blend"].append(abs(view.values[k] - truth))
                errors[PROVIDER].append(abs(forecast[k] - truth))
                if own is not None:
                    errors[OWN].append(abs(own[k] - truth))
    return blend, errors


def _mae(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def test_before_any_score_the_blend_is_the_provider_forecast() -> None:
    blend = LiveBlend(STEP, HORIZON)
    now = START + timedelta(minutes=5)
    values = [100.0 + k for k in range(SLOTS + 1)]
    provider = ForecastView(now=now, origin=START, step=STEP, values=values, risk=[1.0] * 97)
    view = blend.view(provider, now)
    assert view.values == provider.values
    assert view.risk == provider.risk
    assert view.source == "blend trusting 0-48h provider"


def test_a_poor_provider_forecast_is_outweighed_by_the_own_forecaster() -> None:
    """Provider noise as large as the daily swing: after days of scores the blend leans on
    the own forecaster and errs no more than it, far less than the provider."""
    blend, errors = _run(days=6, provider_noise=60.0)
    assert errors[OWN], "the own forecaster's forecasts were kept"
    assert _mae(errors["blend"]) <= 1.05 * _mae(errors[OWN])
    assert _mae(errors["blend"]) < 0.6 * _mae(errors[PROVIDER])
    far = blend.weights()[4]  # 24-48 h
    assert far[OWN] >= 0.7, far
    assert "own" in blend.trusted()
    skill = {(row.source, row.bucket): row for row in blend.skill()}
    assert skill[(PROVIDER, "24-48h")].mae > 2 * skill[(OWN, "24-48h")].mae


def test_a_good_provider_forecast_keeps_its_weight() -> None:
    blend, errors = _run(days=6, provider_noise=3.0)
    assert _mae(errors["blend"]) <= 1.05 * _mae(errors[PROVIDER])
    for bucket in blend.weights()[:5]:
        assert bucket[PROVIDER] >= 0.7, bucket
    assert blend.trusted().startswith("0-")
    assert "provider" in blend.trusted()


def test_late_actuals_are_waited_for_then_skipped() -> None:
    blend = LiveBlend(STEP, HORIZON)

    def tick(slot: int, known: Callable[[int], bool]) -> None:
        now = START + slot * STEP + timedelta(minutes=1)
        blend.record_actuals(
            [_actual_point(s, 100.0) for s in range(max(0, slot - 20), slot) if known(s)], now
        )
        provider = ForecastView(
            now=now, origin=START + slot * STEP, step=STEP, values=[100.0] * SLOTS
        )
        blend.view(provider, now)

    first = blend.slot_of(START)
    tick(10, lambda s: True)
    assert blend.scored_to == first + 10
    tick(12, lambda s: s != 10)  # slot 10's actual is late: wait for it
    assert blend.scored_to == first + 10
    tick(13, lambda s: True)  # it came
    assert blend.scored_to == first + 13
    tick(20, lambda s: s != 15)
    assert blend.scored_to == first + 15
    tick(22, lambda s: s != 15)  # 3.5 h late: never coming, skipped
    assert blend.scored_to == first + 22


def test_actuals_are_laid_on_the_grid() -> None:
    blend = LiveBlend(STEP, HORIZON)
    hourly = IntensityPoint(START, START + timedelta(hours=1), 80.0, "em", is_forecast=False)
    quarters = [
        IntensityPoint(
            START + timedelta(hours=1, minutes=15 * i),
            START + timedelta(hours=1, minutes=15 * (i + 1)),
            value,
            "wt",
            is_forecast=False,
        )
        for i, value in enumerate((100.0, 120.0))
    ]
    running = IntensityPoint(
        START + timedelta(hours=2), START + timedelta(hours=3), 90.0, "em", is_forecast=False
    )
    forecast = IntensityPoint(START, START + STEP, 1.0, "em", is_forecast=True)
    blend.record_actuals([hourly, *quarters, running, forecast], START + timedelta(hours=2.5))
    first = blend.slot_of(START)
    assert blend.actual == {first: 80.0, first + 1: 80.0, first + 2: 110.0}


def test_a_view_on_another_grid_is_left_alone() -> None:
    blend = LiveBlend(STEP, HORIZON)
    now = START + timedelta(minutes=5)
    hourly = ForecastView(now=now, origin=START, step=timedelta(hours=1), values=[1.0, 2.0])
    assert blend.view(hourly, now) is hourly
    with pytest.raises(ValueError, match="divides a day"):
        LiveBlend(timedelta(minutes=7), HORIZON)


def test_skill_is_described_by_lead() -> None:
    blend, _ = _run(days=4, provider_noise=30.0)
    text = describe_skill(blend.skill())
    assert text.startswith("leads 0-3h/3-6h/6-12h/12-24h/24-48h: provider ")
    assert "own " in text
    assert "blend " in text
    assert describe_skill([]) == "not scored yet"


def test_the_own_forecasters_are_scored_on_the_history_at_the_first_tick() -> None:
    """The APIs serve past actuals but not the forecasts they published: at the first tick the
    own forecasters are scored on ten days of history; the provider is trusted alone until it
    has been scored itself."""
    actual = _weather(10)
    blend = LiveBlend(STEP, HORIZON)
    now = START + timedelta(days=10, minutes=1)
    blend.record_actuals([_actual_point(s, actual[s]) for s in range(10 * 48)], now)
    values = [actual[10 * 48 + k] for k in range(SLOTS)]
    provider = ForecastView(now=now, origin=START + timedelta(days=10), step=STEP, values=values)
    view = blend.view(provider, now)
    skill = {(row.source, row.bucket): row for row in blend.skill()}
    for bucket in ("0-3h", "24-48h"):
        assert skill[(OWN, bucket)].mae == skill[(OWN, bucket)].mae  # scored
        assert skill[(OWN, bucket)].samples >= 24 * 8
        assert skill[(PROVIDER, bucket)].samples == 0
    assert view.values == provider.values
    assert blend.trusted() == "0-48h provider"
