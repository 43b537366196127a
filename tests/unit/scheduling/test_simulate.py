"""The simulator: oracle equivalence with a perfect forecast, no peeking, no deadline misses."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityIndex
from carbonaware.scheduling import (
    ForecastMode,
    SimulationSettings,
    TraceInput,
    simulate,
)
from carbonaware.scheduling.report import decisions_csv, render_json, render_plain, summary_rows

from .helpers import HALF_HOUR, T0, trace, with_vintages

HOUR = timedelta(hours=1)
DAY = 48


def wavy(days: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [
        round(150 + 60 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 15), 1)
        for i in range(days * DAY)
    ]


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


@given(
    st.lists(st.integers(0, 400), min_size=40, max_size=160),
    st.integers(1, 4),
    st.integers(4, 24),
    st.integers(1, 3),
)
@settings(max_examples=60, deadline=None)
def test_with_a_perfect_forecast_the_policy_is_the_oracle(
    values: list[int], duration: int, window: int, every: int
) -> None:
    window = max(window, duration)
    result = simulate(
        trace([float(v) for v in values]),
        SimulationSettings(
            forecast=ForecastMode.PERFECT,
            duration=duration * HALF_HOUR,
            window=window * HALF_HOUR,
            arrival_every=every * HALF_HOUR,
            warmup=timedelta(0),
            horizon=window * HALF_HOUR,
        ),
    )
    assert result.jobs > 0
    assert result.deadline_misses == 0
    for outcome in result.decisions:
        assert outcome.policy == pytest.approx(outcome.oracle, abs=1e-9)
    assert result.policy_mean == pytest.approx(result.oracle_mean, abs=1e-9)


def test_immediate_has_zero_delay_and_the_immediate_mean() -> None:
    result = simulate(
        trace(wavy(4)),
        SimulationSettings(policy=SchedulePolicy.IMMEDIATE, forecast=ForecastMode.PERFECT),
    )
    assert result.mean_delay == timedelta(0)
    assert result.policy_mean == result.immediate_mean
    assert result.reasons == {"Immediate": result.jobs}
    assert all(o.start == o.arrival for o in result.decisions)


def test_forecast_policy_saves_and_records_each_job() -> None:
    result = simulate(trace(wavy(6)), SimulationSettings(forecast=ForecastMode.OWN))
    assert result.jobs == (6 - 1) * DAY - (DAY - 1)  # warm-up day, last window must fit
    assert result.skipped == 0
    assert result.oracle_mean < result.policy_mean < result.immediate_mean
    assert 0 < result.captured_share <= 1
    for outcome in result.decisions:
        assert outcome.arrival <= outcome.start <= outcome.latest_start
        assert outcome.latest_start == outcome.arrival + 23 * HOUR


def test_decisions_csv_is_enough_to_recompute_the_result() -> None:
    actual = wavy(5)
    data = trace(actual)
    result = simulate(data, SimulationSettings(forecast=ForecastMode.NAIVE, duration=2 * HOUR))
    rows = list(csv.DictReader(io.StringIO(decisions_csv(result))))
    assert list(rows[0]) == ["arrival", "latest_start", "start"]
    assert len(rows) == result.jobs
    by_time = {start: i for i, start in enumerate(data.starts)}
    policy = []
    for row in rows:
        first = by_time[parse(row["start"])]
        assert parse(row["start"]) <= parse(row["latest_start"])
        policy.append(sum(actual[first : first + 4]) / 4)
    assert sum(policy) / len(policy) == pytest.approx(result.policy_mean)


@pytest.mark.parametrize(
    "mode", [ForecastMode.COLUMN, ForecastMode.NAIVE, ForecastMode.OWN, ForecastMode.BLEND]
)
def test_decisions_never_depend_on_actuals_not_yet_measured(mode: ForecastMode) -> None:
    actual = wavy(6, seed=3)
    forecast = [a + 7 for a in wavy(6, seed=4)]
    cut = 4 * DAY + 11
    tampered = actual[:cut] + [v * 3 + 50 for v in actual[cut:]]
    config = SimulationSettings(forecast=mode, window=12 * HOUR)
    before = simulate(trace(actual, forecast=forecast), config)
    after = simulate(trace(tampered, forecast=forecast), config)
    cut_time = T0 + cut * HALF_HOUR
    early = [o.start for o in before.decisions if o.start < cut_time]
    assert early  # the test means something
    assert early == [o.start for o in after.decisions if o.start < cut_time]


def test_gaps_skip_the_arrivals_whose_window_they_touch() -> None:
    actual = wavy(4)
    data = trace(actual)
    gap = set(range(2 * DAY, 2 * DAY + 4))
    holed = TraceInput(
        starts=[s for i, s in enumerate(data.starts) if i not in gap],
        step=HALF_HOUR,
        actual=[v for i, v in enumerate(actual) if i not in gap],
    )
    result = simulate(holed, SimulationSettings(forecast=ForecastMode.OWN, window=4 * HOUR))
    # Arrivals in the 7 slots before the gap and the 4 slots of the gap are skipped.
    assert result.skipped == 7 + 4
    assert result.deadline_misses == 0


def test_threshold_releases_on_the_latest_measured_value() -> None:
    actual = [300.0] * (2 * DAY)
    actual[DAY + 5] = 50.0
    result = simulate(
        trace(actual),
        SimulationSettings(
            policy=SchedulePolicy.THRESHOLD,
            forecast=ForecastMode.PERFECT,
            max_intensity=100,
            window=6 * HOUR,
            arrival_every=6 * HOUR,
        ),
    )
    # The job arriving at slot 48 sees 50 measured once slot 53 has ended, at slot 54.
    first = result.decisions[0]
    assert first.start == T0 + (DAY + 6) * HALF_HOUR
    assert result.reasons[Reason.THRESHOLD_MET.value] == 1
    assert result.reasons[Reason.DEADLINE_REACHED.value] == result.jobs - 1


@given(
    st.lists(st.floats(0, 500) | st.just(math.nan), min_size=100, max_size=200),
    st.sampled_from(list(SchedulePolicy)),
    st.sampled_from(list(ForecastMode)),
    st.integers(1, 3),
    st.integers(3, 30),
)
@settings(max_examples=40, deadline=None)
def test_no_deadline_misses_whatever_the_data(
    values: list[float], policy: SchedulePolicy, mode: ForecastMode, duration: int, window: int
) -> None:
    window = max(window, duration)
    rng = random.Random(len(values))
    forecast = [v + rng.uniform(-30, 30) if v == v else v for v in values]
    result = simulate(
        with_vintages(trace(values, forecast=forecast)),
        SimulationSettings(
            policy=policy,
            forecast=mode,
            duration=duration * HALF_HOUR,
            window=window * HALF_HOUR,
            max_intensity=120 if policy is SchedulePolicy.THRESHOLD else None,
            max_index=IntensityIndex.LOW if policy is SchedulePolicy.THRESHOLD else None,
            warmup=timedelta(hours=2),
            horizon=timedelta(hours=6),
        ),
    )
    assert result.deadline_misses == 0
    assert all(o.start <= o.latest_start for o in result.decisions)


def test_settings_the_trace_cannot_support_are_rejected() -> None:
    data = trace(wavy(2))
    with pytest.raises(ValueError, match="whole number"):
        simulate(data, SimulationSettings(duration=timedelta(minutes=45)))
    with pytest.raises(ValueError, match="forecast column"):
        simulate(data, SimulationSettings(forecast=ForecastMode.COLUMN))
    with pytest.raises(ValueError, match="needs a trace with vintages"):
        simulate(data, SimulationSettings(forecast=ForecastMode.VINTAGE))
    with pytest.raises(ValueError, match="at least as long"):
        simulate(data, SimulationSettings(duration=2 * HOUR, window=HOUR))


def test_report_forms() -> None:
    result = simulate(trace(wavy(3)), SimulationSettings(forecast=ForecastMode.OWN))
    labels = [label for label, _ in summary_rows(result)]
    for needed in (
        "jobs",
        "deadline misses",
        "mean delay",
        "savings vs immediate",
        "oracle savings",
        "captured share",
    ):
        assert needed in labels
    text = render_plain(result, trace_name="t.csv", attribution="credit", wall_seconds=1.5)
    assert text.endswith("credit")
    assert "1.50 s" in text
    empty = simulate(trace(wavy(1)), SimulationSettings(forecast=ForecastMode.OWN))
    assert empty.jobs == 0
    assert '"captured_share": null' in render_json(
        empty, trace_name="t.csv", attribution=None, wall_seconds=0.1
    )
