"""The simulator on forecasts as published (vintages) and on the blend of every source."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import timedelta

import pytest

from carbonaware.scheduling import ForecastMode, SimulationSettings, simulate
from carbonaware.scheduling.vintages import (
    DEFAULT_VINTAGE_ERROR,
    VintageGrid,
    synthetic_vintages,
)

from .helpers import HALF_HOUR, T0, trace

HOUR = timedelta(hours=1)
DAY = 48


def wavy(days: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [
        max(0.0, 150 + 60 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 20))
        for i in range(days * DAY)
    ]


def issues_of(column: list[float], horizon: int = 96) -> VintageGrid:
    """An issue at every slot whose horizon is the column itself."""
    rows = [
        (T0 + tick * HALF_HOUR, T0 + slot * HALF_HOUR, column[slot])
        for tick in range(len(column))
        for slot in range(tick, min(len(column), tick + horizon))
    ]
    return VintageGrid.from_rows(rows, start=T0, step=HALF_HOUR, size=len(column))


def test_vintages_that_all_repeat_the_column_decide_as_the_column_does() -> None:
    actual = wavy(8, seed=1)
    column = [a + 9 * math.sin(i / 7) for i, a in enumerate(actual)]
    data = dataclasses.replace(trace(actual, forecast=column), vintages=issues_of(column))
    config = SimulationSettings(window=12 * HOUR)
    by_column = simulate(data, config)
    by_vintage = simulate(data, dataclasses.replace(config, forecast=ForecastMode.VINTAGE))
    assert [o.start for o in by_vintage.decisions] == [o.start for o in by_column.decisions]


def test_a_step_never_sees_an_issue_published_after_it() -> None:
    actual = wavy(6, seed=3)
    honest = synthetic_vintages(actual, start=T0, step=HALF_HOUR, seed=1)
    cut = 4 * DAY + 11
    # Issues from the cut on are replaced by the truth (perfect forecasts): decisions made
    # before the cut must not change.
    exact = dataclasses.replace(DEFAULT_VINTAGE_ERROR, sigma_now=0.0, sigma_far=0.0)
    later = synthetic_vintages(actual, start=T0, step=HALF_HOUR, seed=1, settings=exact)
    mixed = dataclasses.replace(
        honest,
        values=honest.values[:cut] + later.values[cut:],
    )
    config = SimulationSettings(forecast=ForecastMode.VINTAGE, window=12 * HOUR)
    before = simulate(dataclasses.replace(trace(actual), vintages=honest), config)
    after = simulate(dataclasses.replace(trace(actual), vintages=mixed), config)
    cut_time = T0 + cut * HALF_HOUR
    early = [o.start for o in before.decisions if o.start < cut_time]
    assert early
    assert early == [o.start for o in after.decisions if o.start < cut_time]
    assert before.decisions != after.decisions  # the later issues did matter


def test_the_blend_with_a_perfect_provider_finds_the_oracles_starts() -> None:
    actual = wavy(25, seed=5)
    data = trace(actual, forecast=actual)
    result = simulate(data, SimulationSettings(forecast=ForecastMode.BLEND, window=12 * HOUR))
    assert result.deadline_misses == 0
    assert result.captured_share == pytest.approx(1.0, abs=0.02)


def test_the_blend_without_a_provider_plans_on_its_own_forecasts() -> None:
    actual = wavy(25, seed=6)
    result = simulate(trace(actual), SimulationSettings(forecast=ForecastMode.BLEND))
    own = simulate(trace(actual), SimulationSettings(forecast=ForecastMode.OWN))
    assert result.deadline_misses == 0
    assert result.jobs == own.jobs
    assert result.captured_share > 0.5
