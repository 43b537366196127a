"""The scaled operator clock (CARBONAWARE_TIME_SCALE), a testing and demo aid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from carbonaware.config import OperatorSettings
from carbonaware.handlers.context import OperatorContext, ScaledClock

ORIGIN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_scaled_clock_runs_fast_from_its_origin() -> None:
    wall = ORIGIN + timedelta(seconds=90)
    clock = ScaledClock(origin=ORIGIN, scale=120.0, wall=lambda: wall)
    assert clock() == ORIGIN + timedelta(hours=3)
    # a creation time the API server recorded maps onto the same scale
    assert clock.at(ORIGIN + timedelta(seconds=30)) == ORIGIN + timedelta(hours=1)
    assert clock.at(ORIGIN) == ORIGIN


def test_scaled_clock_from_settings_takes_a_naive_origin_as_utc() -> None:
    settings = OperatorSettings(time_scale=60, time_origin=datetime(2024, 5, 1, 12, 0))
    clock = ScaledClock.from_settings(settings)
    assert clock.origin == ORIGIN
    assert clock.scale == 60


def test_the_decision_tick_is_scaled_too() -> None:
    ctx = OperatorContext(
        settings=OperatorSettings(tick_seconds=2, time_scale=30),
        kube=cast(Any, None),
        metrics=cast(Any, None),
        provider=cast(Any, None),
        intensity=cast(Any, None),
    )
    assert ctx.tick == timedelta(minutes=1)
    body = {"metadata": {"creationTimestamp": "2024-05-01T12:00:10Z"}}
    assert ctx.created(body) == ORIGIN + timedelta(seconds=10)  # real time: not mapped
