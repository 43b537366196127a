"""``kubectl carbonaware explain``: the plan, the forecast bars with the planned window
marked, why, and the sources (golden output from fixed inputs)."""

from __future__ import annotations

from datetime import timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.plugin.explain import bars, render_explain

from .inputs import DONE, HELD, NOW
from .test_plan import check_golden, rendered, update

__all__ = ["update"]

HALF_HOUR = timedelta(minutes=30)
VALUES = [182, 170, 150, 120, 90, 70, 60, 58, 62, 66, 80, 110, 140, 160, 175, 190, 200, 205,
          210, 200, 190, 180, 170, 160]  # fmt: skip
POINTS = [
    IntensityPoint(NOW + i * HALF_HOUR, NOW + (i + 1) * HALF_HOUR, float(v), "ukci", i > 0)
    for i, v in enumerate(VALUES)
]


def test_the_planned_window_is_marked_on_the_bars() -> None:
    lines = bars(POINTS, NOW + timedelta(hours=3), timedelta(hours=2), NOW)
    marked = [line for line in lines if "< planned" in line]
    assert len(marked) == 4  # four half hours from 12:00
    assert marked[0].startswith("Mon 12:00")
    assert lines[0].endswith("< now")
    assert lines[18].count("=") == 40  # the highest value fills the bar


def test_explain_golden(update: bool) -> None:
    text = rendered(render_explain, HELD, POINTS, None, NOW)
    assert "Expected saving: 66%" in text
    assert "Sources: the operator's plan used ukci" in text
    check_golden("explain.txt", text, update)


def test_a_finished_job_has_nothing_planned() -> None:
    text = rendered(render_explain, DONE[0], [], None, NOW)
    assert "not held or running" in text
    assert "Succeeded: The Job completed." in text


def test_a_missing_forecast_is_said() -> None:
    text = rendered(render_explain, HELD, [], "chain: no provider knows region 'XX'", NOW)
    assert "Forecast unavailable: chain: no provider knows region 'XX'" in text
