"""Forecast vintages: which issue a step sees, the column they make, the synthetic generator."""

from __future__ import annotations

import itertools
import math
import random
from datetime import timedelta

import pytest

from carbonaware.scheduling.vintages import (
    DEFAULT_VINTAGE_ERROR,
    GB_2024_MEAN,
    VintageErrorSettings,
    VintageGrid,
    lead_errors,
    synthetic_vintages,
)

from .helpers import HALF_HOUR, T0


def grid_from(rows: list[tuple[int, int, float]], size: int = 10) -> VintageGrid:
    """Rows as (issue minute offset, slot index, value)."""
    return VintageGrid.from_rows(
        [(T0 + timedelta(minutes=m), T0 + s * HALF_HOUR, v) for m, s, v in rows],
        start=T0,
        step=HALF_HOUR,
        size=size,
    )


def test_a_step_sees_the_issue_published_last_at_or_before_it() -> None:
    # Issued at 00:00 for slots 0-3, at 00:40 (visible from slot 2, 01:00) for slots 2-5.
    vintages = grid_from(
        [(0, s, 100 + s) for s in range(4)] + [(40, s, 200 + s) for s in range(2, 6)]
    )
    assert vintages.values_at(0, 3) == [100, 101, 102]
    assert vintages.values_at(1, 3) == [101, 102, 103]  # 00:40 is not out yet at 00:30
    assert vintages.values_at(2, 3) == [202, 203, 204]
    tail = vintages.values_at(5, 3)
    assert tail[0] == 205
    assert all(math.isnan(v) for v in tail[1:])  # beyond the issue's horizon


def test_each_slot_comes_from_the_latest_issue_that_covers_it() -> None:
    vintages = grid_from([(60, s, 10.0 * s) for s in range(2, 8)] + [(150, 6, 99.0)])
    assert all(math.isnan(v) for v in vintages.values_at(1, 4))
    column = vintages.as_published()
    assert math.isnan(column[1])
    assert column[2:6] == [20.0, 30.0, 40.0, 50.0]
    assert column[6] == 99.0  # issued at 02:30, visible from slot 5: newer than 01:00's
    assert column[7] == 70.0  # the 02:30 issue does not cover slot 7: the 01:00 one does
    assert vintages.values_at(5, 4)[:3] == [50.0, 99.0, 70.0]
    assert math.isnan(vintages.values_at(5, 4)[3])


def test_a_slot_off_the_grid_is_refused_and_slots_outside_it_are_dropped() -> None:
    with pytest.raises(ValueError, match="off the"):
        VintageGrid.from_rows(
            [(T0, T0 + timedelta(minutes=10), 1.0)], start=T0, step=HALF_HOUR, size=4
        )
    vintages = grid_from([(0, -1, 5.0), (0, 0, 6.0), (0, 9, 7.0), (0, 12, 8.0)])
    assert vintages.values_at(0, 1) == [6.0]
    assert vintages.values_at(9, 1) == [7.0]


def actuals(days: int, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [150 + 60 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 10) for i in range(days * 48)]


def test_synthetic_vintages_are_deterministic_and_err_more_further_ahead() -> None:
    actual = actuals(40)
    first = synthetic_vintages(actual, start=T0, step=HALF_HOUR, seed=5)
    again = synthetic_vintages(actual, start=T0, step=HALF_HOUR, seed=5)
    other = synthetic_vintages(actual, start=T0, step=HALF_HOUR, seed=6)
    assert first == again
    assert first != other
    assert len(first) == len(actual)  # one issue per slot, each covering 48 h
    assert len(first.values[0]) == 96
    mae = [total / count for total, count in lead_errors(first, actual)]
    settings = DEFAULT_VINTAGE_ERROR
    assert mae[0] == pytest.approx(settings.sigma(0) * math.sqrt(2 / math.pi), rel=0.2)
    assert mae[95] == pytest.approx(settings.sigma(47.5) * math.sqrt(2 / math.pi), rel=0.2)
    assert mae[0] < mae[24] < mae[95]
    overall = sum(t for t, _ in lead_errors(first, actual)) / sum(
        c for _, c in lead_errors(first, actual)
    )
    assert overall == pytest.approx(settings.expected_mae(48, 0.5), rel=0.15)


def test_synthetic_errors_are_autocorrelated_along_the_horizon_and_revised_slowly() -> None:
    actual = [100.0] * (48 * 30)
    flat = VintageErrorSettings(sigma_now=20, sigma_far=20)
    vintages = synthetic_vintages(actual, start=T0, step=HALF_HOUR, settings=flat, seed=1)
    errors = [[v - 100.0 for v in issue] for issue in vintages.values[:-96]]
    along = [e[k] * e[k + 1] for e in errors for k in range(95)]
    across = [a[k + 1] * b[k] for a, b in itertools.pairwise(errors) for k in range(94)]
    variance = sum(e[k] ** 2 for e in errors for k in range(96)) / (len(errors) * 96)
    # AR(1) of 0.9 per hour: 0.949 per half-hour; revised by 0.95 per hour: 0.975 per issue.
    assert sum(along) / len(along) / variance == pytest.approx(0.9**0.5, abs=0.05)
    assert sum(across) / len(across) / variance == pytest.approx(0.95**0.5, abs=0.05)


def test_unknown_actuals_stay_unknown_and_values_never_go_below_zero() -> None:
    actual = [5.0] * 200
    actual[50] = math.nan
    noisy = VintageErrorSettings(sigma_now=30, sigma_far=30)
    vintages = synthetic_vintages(actual, start=T0, step=HALF_HOUR, settings=noisy)
    assert math.isnan(vintages.values_at(50, 1)[0])
    assert min(v for issue in vintages.values for v in issue if v == v) >= 0.0


def test_errors_scale_with_the_grids_mean_intensity() -> None:
    scaled = DEFAULT_VINTAGE_ERROR.for_grid([2 * GB_2024_MEAN] * 10)
    assert scaled.sigma_now == pytest.approx(2 * DEFAULT_VINTAGE_ERROR.sigma_now)
    assert scaled.sigma_far == pytest.approx(2 * DEFAULT_VINTAGE_ERROR.sigma_far)
    # The defaults are NESO's published accuracy: about 10 g near, 24.5 g over 0-48 h.
    assert DEFAULT_VINTAGE_ERROR.sigma(0) * math.sqrt(2 / math.pi) == pytest.approx(10, abs=0.5)
    assert DEFAULT_VINTAGE_ERROR.expected_mae(48, 0.5) == pytest.approx(24.5, abs=1)
