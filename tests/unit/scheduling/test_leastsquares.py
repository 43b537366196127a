"""The least-squares tools of the forecast correction."""

from __future__ import annotations

import math

import pytest

from carbonaware.scheduling.leastsquares import known_rows, ridge, rms, solve

NAN = math.nan


def test_known_rows_drops_every_sample_with_an_unknown_value_in_any_row() -> None:
    rows = [[1.0, NAN, 3.0, 4.0], [5.0, 6.0, 7.0, NAN], [0.0, 1.0, 2.0, 3.0]]
    assert known_rows(rows) == [[1.0, 3.0], [5.0, 7.0], [0.0, 2.0]]


def test_known_rows_keeps_rows_without_unknowns_as_they_are() -> None:
    rows = [[1.0, 2.0], [3.0, 4.0]]
    assert known_rows(rows) == rows


def test_ridge_without_a_penalty_recovers_an_exact_linear_map() -> None:
    x1 = [1.0, 2.0, 3.0, 4.0, 5.0]
    x2 = [2.0, -1.0, 0.5, 3.0, 1.0]
    target = [3 * a - 2 * b for a, b in zip(x1, x2, strict=True)]
    coefficients, residual = ridge([x1, x2], target, 0.0)
    assert coefficients == pytest.approx((3.0, -2.0))
    assert residual == pytest.approx(0.0, abs=1e-9)


def test_ridge_shrinks_towards_zero() -> None:
    x = [1.0, -1.0, 2.0, -2.0]
    target = [2 * v for v in x]
    (free,), _ = ridge([x], target, 0.0)
    (shrunk,), _ = ridge([x], target, 10.0)
    assert free == pytest.approx(2.0)
    assert 0 < shrunk < free


def test_solve_gives_zero_where_the_system_is_singular() -> None:
    assert solve([[1.0, 0.0], [0.0, 0.0]], [2.0, 5.0]) == pytest.approx([2.0, 0.0])


def test_rms() -> None:
    assert rms([]) == 0.0
    assert rms([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
