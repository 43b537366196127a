"""Small builders shared by the scheduling tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.scheduling import ForecastView, TraceInput
from carbonaware.scheduling.vintages import synthetic_vintages

T0 = datetime(2024, 3, 4, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def points(
    values: Sequence[float],
    *,
    start: datetime = T0,
    step: timedelta = HALF_HOUR,
    is_forecast: bool = True,
    indexes: Sequence[IntensityIndex | None] | None = None,
) -> list[IntensityPoint]:
    return [
        IntensityPoint(
            start=start + i * step,
            end=start + (i + 1) * step,
            intensity=value,
            source="test",
            is_forecast=is_forecast,
            index=indexes[i] if indexes is not None else None,
        )
        for i, value in enumerate(values)
    ]


def view(
    values: Sequence[float], *, now: datetime = T0, step: timedelta = HALF_HOUR
) -> ForecastView:
    return ForecastView(now=now, origin=now, step=step, values=values)


def trace(
    actual: Sequence[float],
    *,
    forecast: Sequence[float] | None = None,
    step: timedelta = HALF_HOUR,
    start: datetime = T0,
) -> TraceInput:
    return TraceInput(
        starts=[start + i * step for i in range(len(actual))],
        step=step,
        actual=list(actual),
        forecast=list(forecast) if forecast is not None else None,
    )


def with_vintages(data: TraceInput, horizon: timedelta = timedelta(hours=6)) -> TraceInput:
    """``data`` with synthetic vintages of its actuals (an issue every slot), so that every
    forecast mode, ``vintage`` included, can replay it."""
    vintages = synthetic_vintages(
        data.actual, start=data.starts[0], step=data.step, horizon=horizon
    )
    return dataclasses.replace(data, vintages=vintages)
