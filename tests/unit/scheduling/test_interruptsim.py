"""The interruptible simulator: the policy is the oracle with a perfect forecast, no job is
late whatever the data, nothing is read before it is measured, and the segments file
re-scores the result from the trace alone."""

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
from carbonaware.scheduling import ForecastMode, SimulationSettings
from carbonaware.scheduling.interruptsim import InterruptibleSettings, simulate_interruptible
from carbonaware.scheduling.report import decisions_csv, render_json, summary_rows

from .helpers import HALF_HOUR, T0, trace, with_vintages

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
DAY = 48


def wavy(days: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [
        round(200 + 90 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 30), 1)
        for i in range(days * DAY)
    ]


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


@given(
    st.lists(st.integers(0, 400), min_size=30, max_size=60),
    st.integers(1, 6),
    st.integers(0, 10),
    st.sampled_from([0, 30, 60, 90]),
    st.sampled_from([None, 0, 1, 2]),
    st.sampled_from([0, 10, 30]),
)
@settings(max_examples=50, deadline=None)
def test_with_a_perfect_forecast_the_policy_is_the_interruptible_oracle(
    values: list[int], duration: int, slack: int, min_run: int, pauses: int | None, overhead: int
) -> None:
    window = duration + slack
    result = simulate_interruptible(
        trace([float(v) for v in values]),
        SimulationSettings(
            forecast=ForecastMode.PERFECT,
            duration=duration * HALF_HOUR,
            window=window * HALF_HOUR,
            arrival_every=HALF_HOUR,
            warmup=timedelta(0),
            horizon=window * HALF_HOUR,
        ),
        InterruptibleSettings(
            min_run=min_run * MINUTE, max_interruptions=pauses, resume_overhead=overhead * MINUTE
        ),
    )
    assert result.jobs > 0
    assert result.deadline_misses == 0
    for outcome in result.decisions:
        assert outcome.figures["policy"] == pytest.approx(
            outcome.figures["oracle_interruptible"], rel=1e-9, abs=1e-9
        )
        assert outcome.figures["oracle_interruptible"] <= outcome.figures["oracle_single"] + 1e-9
        if overhead == 0:
            assert outcome.figures["oracle_single"] <= outcome.figures["immediate"] + 1e-9


@given(
    st.lists(st.floats(0, 500) | st.just(math.nan), min_size=120, max_size=200),
    st.sampled_from(list(ForecastMode)),
    st.integers(1, 8),
    st.integers(0, 16),
    st.sampled_from([0, 60]),
    st.sampled_from([None, 1]),
    st.sampled_from([0, 10]),
)
@settings(max_examples=40, deadline=None)
def test_no_deadline_misses_whatever_the_data(
    values: list[float],
    mode: ForecastMode,
    duration: int,
    slack: int,
    min_run: int,
    pauses: int | None,
    overhead: int,
) -> None:
    rng = random.Random(len(values))
    forecast = [v + rng.uniform(-60, 60) if v == v else v for v in values]
    result = simulate_interruptible(
        with_vintages(trace(values, forecast=forecast)),
        SimulationSettings(
            forecast=mode,
            duration=duration * HALF_HOUR,
            window=(duration + slack) * HALF_HOUR,
            warmup=timedelta(hours=2),
            horizon=timedelta(hours=3),
        ),
        InterruptibleSettings(
            min_run=min_run * MINUTE, max_interruptions=pauses, resume_overhead=overhead * MINUTE
        ),
    )
    assert result.deadline_misses == 0
    for outcome in result.decisions:
        assert outcome.finish is not None
        assert outcome.finish <= outcome.latest_finish
        if pauses is not None:
            assert outcome.interruptions <= pauses
        for segment in outcome.segments[:-1]:
            assert segment.end - segment.start >= min_run * MINUTE


def test_pausing_saves_more_than_the_best_single_start() -> None:
    result = simulate_interruptible(
        trace(wavy(10), forecast=[v + 5 for v in wavy(10, seed=2)]),
        SimulationSettings(duration=6 * HOUR, window=30 * HOUR, arrival_every=HOUR),
        InterruptibleSettings(min_run=HOUR),
    )
    assert result.deadline_misses == 0
    means = result.means
    assert means["oracle_interruptible"] < means["oracle_single"] < means["immediate"]
    assert means["oracle_interruptible"] <= means["policy"] < means["immediate"]
    assert result.saving_of("oracle_interruptible") > result.saving_of("oracle_single")
    assert 0 < result.captured_share <= 1
    assert result.shortest_inner_segment is not None
    assert result.shortest_inner_segment >= HOUR


def test_the_segments_file_re_scores_the_result_from_the_trace_alone() -> None:
    actual = wavy(6, seed=5)
    data = trace(actual)
    rules = InterruptibleSettings(min_run=HOUR, resume_overhead=10 * MINUTE)
    result = simulate_interruptible(
        data,
        SimulationSettings(forecast=ForecastMode.OWN, duration=4 * HOUR, window=20 * HOUR),
        rules,
    )
    rows = list(csv.DictReader(io.StringIO(decisions_csv(result))))
    assert list(rows[0]) == ["arrival", "latest_finish", "segment_start", "segment_end"]
    by_time = {start: i for i, start in enumerate(data.starts)}
    emitted: dict[str, float] = {}
    work: dict[str, timedelta] = {}
    for row in rows:
        start, end = parse(row["segment_start"]), parse(row["segment_end"])
        assert parse(row["arrival"]) <= start < end <= parse(row["latest_finish"])
        # Charge the trace's actual value of every slot the segment overlaps.
        moment = start
        while moment < end:
            slot_start = T0 + ((moment - T0) // HALF_HOUR) * HALF_HOUR
            upto = min(end, slot_start + HALF_HOUR)
            emitted[row["arrival"]] = emitted.get(row["arrival"], 0.0) + actual[
                by_time[slot_start]
            ] * ((upto - moment) / HOUR)
            moment = upto
        work[row["arrival"]] = work.get(row["arrival"], timedelta(0)) + (end - start)
    assert len(emitted) == result.jobs
    segments = {row["arrival"]: 0 for row in rows}
    for row in rows:
        segments[row["arrival"]] += 1
    for arrival, run in work.items():  # every resume adds its overhead to the run time
        assert run == 4 * HOUR + (segments[arrival] - 1) * 10 * MINUTE
    mean = sum(emitted.values()) / (len(emitted) * 4)
    assert mean == pytest.approx(result.means["policy"])


@pytest.mark.parametrize("mode", [ForecastMode.COLUMN, ForecastMode.NAIVE, ForecastMode.OWN])
def test_decisions_never_depend_on_actuals_not_yet_measured(mode: ForecastMode) -> None:
    actual = wavy(6, seed=3)
    forecast = [a + 7 for a in wavy(6, seed=4)]
    cut = 4 * DAY + 11
    tampered = actual[:cut] + [v * 3 + 50 for v in actual[cut:]]
    config = SimulationSettings(forecast=mode, duration=3 * HOUR, window=12 * HOUR)
    rules = InterruptibleSettings(min_run=HOUR)
    before = simulate_interruptible(trace(actual, forecast=forecast), config, rules)
    after = simulate_interruptible(trace(tampered, forecast=forecast), config, rules)
    cut_time = T0 + cut * HALF_HOUR

    def early(result: object) -> list[tuple[datetime, datetime]]:
        return [
            (s.start, min(s.end, cut_time))
            for o in result.decisions  # type: ignore[attr-defined]
            for s in o.segments
            if s.start < cut_time
        ]

    assert early(before)  # the test means something
    assert early(before) == early(after)


def test_settings_it_cannot_plan_are_refused() -> None:
    data = trace(wavy(3))
    with pytest.raises(ValueError, match="policy Forecast"):
        simulate_interruptible(
            data,
            SimulationSettings(policy=SchedulePolicy.THRESHOLD, max_intensity=100),
            InterruptibleSettings(),
        )
    with pytest.raises(ValueError, match="must not be negative"):
        InterruptibleSettings(max_interruptions=-1)
    with pytest.raises(ValueError, match="whole number"):
        simulate_interruptible(
            data, SimulationSettings(duration=45 * MINUTE), InterruptibleSettings()
        )


def test_report_forms() -> None:
    result = simulate_interruptible(
        trace(wavy(4)),
        SimulationSettings(forecast=ForecastMode.OWN, duration=4 * HOUR, window=16 * HOUR),
        InterruptibleSettings(min_run=HOUR, max_interruptions=3),
    )
    labels = dict(summary_rows(result))
    assert labels["deadline misses"] == "0"
    assert "interruptible oracle savings" in labels
    assert "single-start oracle savings" in labels
    summary = render_json(result, trace_name="t.csv", attribution=None, wall_seconds=0.5)
    assert '"oracle_interruptible_pct"' in summary
    assert '"max_interruptions": 3' in summary
