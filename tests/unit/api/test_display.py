"""Printer-column text: 3 significant figures with units, coarse relative times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api.display import grams, intensity, relative_start, sci, significant

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.000207591013873034, "0.000208"),
        (1.0, "1"),
        (12.3456, "12.3"),
        (999.9, "1000"),
        (1234.5, "1230"),
        (0.1, "0.1"),
        (0.0, "0"),
        (-3.14159, "-3.14"),
    ],
)
def test_three_significant_figures(value: float, text: str) -> None:
    assert significant(value) == text


def test_units() -> None:
    assert grams(0.000207591013873034) == "0.000208 gCO2e"
    assert intensity(57.6) == "58 gCO2e/kWh"
    assert grams(None) is None
    assert intensity(None) is None


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(hours=3, minutes=12), "in 3h10m"),
        (timedelta(hours=1), "in 1h"),
        (timedelta(minutes=59), "in 55m"),
        (timedelta(minutes=3), "in <5m"),
        (timedelta(days=2, hours=4, minutes=30), "in 2d4h"),
        (timedelta(0), "due"),
        (timedelta(minutes=-5), "due"),
    ],
)
def test_relative_start(left: timedelta, text: str) -> None:
    assert relative_start(NOW + left, NOW) == text


def test_sci_per_functional_unit() -> None:
    assert sci(0.000207591013873034, "1 run") == "0.000208 gCO2e/run"
    assert sci(1.23456, "500 users") == "1.23 gCO2e per 500 users"
    assert sci(None, "1 run") is None
