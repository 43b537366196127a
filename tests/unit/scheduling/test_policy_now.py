"""One "now" in every message: the region's current intensity (the value of the
``carbonaware_grid_intensity_grams_per_kwh`` metric and ``status.intensity.current``); a window mean
is called a window mean."""

from __future__ import annotations

import re
from datetime import timedelta

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling import JobRequest, decide

from .helpers import HALF_HOUR, T0, view

TICK = timedelta(minutes=1)
CURRENT = IntensityPoint(
    start=T0, end=T0 + HALF_HOUR, intensity=58.0, source="test", is_forecast=False
)
# The first hour's window mean (68) differs from the current value (58).
FORECAST = [78.0, 58.0, 90.0, 90.0, 30.0, 30.0, 90.0, 90.0]


def request(
    policy: SchedulePolicy, *, latest_hours: float = 4, threshold: float | None = None
) -> JobRequest:
    return JobRequest(
        policy=policy,
        created=T0,
        latest_start=T0 + timedelta(hours=latest_hours),
        expected_duration=timedelta(hours=1),
        max_intensity=threshold,
    )


def nows(message: str) -> list[str]:
    return re.findall(r"(?:intensity now|intensity now is|\(now) (\d+) gCO2e/kWh", message)


def test_every_message_that_says_now_quotes_the_current_value() -> None:
    cases = [
        (request(SchedulePolicy.FORECAST), Reason.WAITING_FOR_LOWER_INTENSITY),
        (request(SchedulePolicy.THRESHOLD, threshold=40), Reason.WAITING_FOR_THRESHOLD),
        (request(SchedulePolicy.THRESHOLD, threshold=60), Reason.THRESHOLD_MET),
        (request(SchedulePolicy.FORECAST, latest_hours=0), Reason.LOW_CARBON_WINDOW),
        (
            request(SchedulePolicy.THRESHOLD, latest_hours=0, threshold=40),
            Reason.DEADLINE_REACHED,
        ),
    ]
    for job, reason in cases:
        decision = decide(job, view(FORECAST), CURRENT, T0, TICK)
        assert decision.reason is reason
        assert decision.intensity_now == 58.0
        assert nows(decision.message) == ["58"], decision.message


def test_a_window_mean_is_labelled_as_one() -> None:
    decision = decide(request(SchedulePolicy.FORECAST), view(FORECAST), CURRENT, T0, TICK)
    assert "1h window mean of 68 gCO2e/kWh if started now" in decision.message
    assert "expected 1h window mean 30 gCO2e/kWh" in decision.message
