"""decide(provider_problem=...): why the data is missing reaches the message, never the
decision (an unknown region must say so, not just "no forecast")."""

from __future__ import annotations

from datetime import timedelta

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling import JobRequest, decide

from .helpers import HALF_HOUR, T0, view

TICK = timedelta(minutes=1)
LATEST = T0 + timedelta(hours=4)
PROBLEM = "ukci: region 'XX' is not a GB region key; use GB (national)"


def job(policy: SchedulePolicy, max_intensity: float | None = None) -> JobRequest:
    return JobRequest(
        policy=policy,
        created=T0,
        latest_start=LATEST,
        expected_duration=timedelta(hours=1),
        max_intensity=max_intensity,
    )


def test_held_without_data_quotes_the_provider() -> None:
    for request in (job(SchedulePolicy.FORECAST), job(SchedulePolicy.THRESHOLD, 100)):
        plain = decide(request, None, None, T0, TICK)
        explained = decide(request, None, None, T0, TICK, provider_problem=PROBLEM)
        assert explained.reason is Reason.FORECAST_UNAVAILABLE
        assert (explained.release, explained.planned_start) == (plain.release, plain.planned_start)
        assert PROBLEM in explained.message
        assert PROBLEM not in plain.message
        assert "released by 2024-03-04T04:00:00Z at the latest" in explained.message


def test_released_without_data_quotes_the_provider() -> None:
    decision = decide(
        job(SchedulePolicy.FORECAST), None, None, LATEST - TICK / 2, TICK, provider_problem=PROBLEM
    )
    assert decision.release
    assert decision.reason is Reason.PROVIDER_UNAVAILABLE
    assert PROBLEM in decision.message


def test_decisions_made_with_data_ignore_the_problem() -> None:
    """A stale error next to usable data must not make the message look like an outage."""
    current = IntensityPoint(
        start=T0 - HALF_HOUR, end=T0, intensity=200, source="test", is_forecast=False
    )
    decision = decide(
        job(SchedulePolicy.FORECAST),
        view([200, 200, 90, 80, 200, 200]),
        current,
        T0,
        TICK,
        provider_problem=PROBLEM,
    )
    assert decision.reason is Reason.WAITING_FOR_LOWER_INTENSITY
    assert decision.provider_problem is None
    assert PROBLEM not in decision.message
