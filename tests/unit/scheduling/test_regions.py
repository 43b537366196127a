"""The simulator of several regions: alignment, the oracles, no misses, no peeking, and the
decisions file that re-scores the result from the traces alone."""

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
from carbonaware.scheduling import (
    ForecastMode,
    RegionTrace,
    SimulationSettings,
    TraceInput,
    align_traces,
    simulate,
    simulate_regions,
)
from carbonaware.scheduling.report import decisions_csv, render_plain, summary_rows

from .helpers import HALF_HOUR, T0, trace, with_vintages

HOUR = timedelta(hours=1)
DAY = 24


def hourly(values: list[float], **kwargs: list[float]) -> TraceInput:
    return trace(values, step=HOUR, **kwargs)


def wavy(days: int, *, seed: int, phase: float = 0.0, level: float = 300.0) -> list[float]:
    rng = random.Random(seed)
    return [
        round(level + 120 * math.sin(2 * math.pi * (i / DAY + phase)) + rng.gauss(0, 25), 1)
        for i in range(days * DAY)
    ]


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


# ----------------------------------------------------------------------------- alignment


def test_traces_with_different_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="same step: A has 1:00:00, B has 0:30:00"):
        align_traces([("A", hourly([1.0] * 6)), ("B", trace([1.0] * 12))])


def test_traces_over_different_hours_are_refused_naming_the_first_difference() -> None:
    late = trace([1.0] * 6, step=HOUR, start=T0 + HOUR)
    with pytest.raises(ValueError, match="same slots") as refused:
        align_traces([("A", hourly([1.0] * 6)), ("B", late)])
    assert "A has 6 rows from 2024-03-04T00:00:00Z to 2024-03-04T05:00:00Z" in str(refused.value)
    assert "2024-03-04T00:00:00Z (in A)" in str(refused.value)
    # A gap in one trace only is a difference too; the simulator refuses the same way.
    full = hourly([1.0] * 6)
    holed = TraceInput(starts=full.starts[:3] + full.starts[4:], step=HOUR, actual=[1.0] * 5)
    with pytest.raises(ValueError, match=r"2024-03-04T03:00:00Z \(in A\)"):
        simulate_regions(
            [RegionTrace("A", full), RegionTrace("B", holed)], SimulationSettings(window=3 * HOUR)
        )


def test_each_region_is_named_once() -> None:
    with pytest.raises(ValueError, match="repeated: A"):
        align_traces([("A", hourly([1.0] * 6)), ("A", hourly([2.0] * 6))])


def test_a_gap_every_trace_shares_skips_the_arrivals_it_touches() -> None:
    values = wavy(3, seed=1)
    keep = [i for i in range(len(values)) if i not in (40, 41)]
    starts = [T0 + i * HOUR for i in keep]

    def holed(series: list[float]) -> TraceInput:
        return TraceInput(starts=starts, step=HOUR, actual=[series[i] for i in keep])

    result = simulate_regions(
        [RegionTrace("A", holed(values)), RegionTrace("B", holed(wavy(3, seed=2)))],
        SimulationSettings(forecast=ForecastMode.OWN, window=4 * HOUR, arrival_every=HOUR),
    )
    assert result.skipped == 5  # arrivals 37 to 41: their 4-slot window holds slot 40 or 41
    assert result.deadline_misses == 0


# ----------------------------------------------------------------------------- oracles

# Two regions, hourly, 1 h jobs in a 3 h window (latest start = arrival + 2 h):
#   arrival 0: A 5 9 1 | B 4 4 8 -> best A at 2 (1); best now B (4)
#   arrival 1: A 9 1 9 | B 4 8 2 -> best A at 2 (1); best now B (4)
#   arrival 2: A 1 9 9 | B 8 2 8 -> best A at 2 (1); best now A (1)
#   arrival 3: A 9 9 9 | B 2 8 8 -> best B at 3 (2); best now B (2)
TINY_A = [5.0, 9, 1, 9, 9, 9]
TINY_B = [4.0, 4, 8, 2, 8, 8]
TINY = SimulationSettings(
    forecast=ForecastMode.PERFECT, window=3 * HOUR, arrival_every=HOUR, warmup=timedelta(0)
)


def test_the_oracles_on_a_tiny_trace_with_a_known_answer() -> None:
    result = simulate_regions(
        [RegionTrace("A", hourly(TINY_A)), RegionTrace("B", hourly(TINY_B))], TINY
    )
    assert result.jobs == 4
    assert result.means["immediate"] == pytest.approx((5 + 9 + 1 + 9) / 4)
    assert result.means["oracle"] == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert result.means["best_region_now"] == pytest.approx((4 + 4 + 1 + 2) / 4)
    assert result.means["first_region_oracle"] == pytest.approx((1 + 1 + 1 + 9) / 4)
    assert result.oracle_savings == pytest.approx(1 - 5 / 24)
    assert result.saving_of("best_region_now") == pytest.approx(1 - 11 / 24)
    assert result.saving_of("first_region_oracle") == pytest.approx(0.5)
    # With a perfect forecast the policy is the oracle, in the oracle's region and hour.
    assert result.savings == pytest.approx(result.oracle_savings)
    assert [(o.start - T0, o.region) for o in result.decisions] == [
        (2 * HOUR, "A"),
        (2 * HOUR, "A"),
        (2 * HOUR, "A"),
        (3 * HOUR, "B"),
    ]
    assert result.jobs_by_region == {"A": 3, "B": 1}
    assert result.deadline_misses == 0


def test_the_first_region_alone_is_the_single_region_simulator() -> None:
    first, second = wavy(6, seed=3), wavy(6, seed=4, phase=0.4, level=280)
    config = SimulationSettings(forecast=ForecastMode.OWN, arrival_every=HOUR)
    alone = simulate(hourly(first), config)
    both = simulate_regions(
        [RegionTrace("A", hourly(first)), RegionTrace("B", hourly(second))], config
    )
    assert both.jobs == alone.jobs
    assert both.means["immediate"] == pytest.approx(alone.immediate_mean)
    assert both.means["first_region_policy"] == pytest.approx(alone.policy_mean)
    assert both.means["first_region_oracle"] == pytest.approx(alone.oracle_mean)
    # A second region that is often cleaner is used, and beats the first region alone.
    assert both.jobs_by_region["B"] > 0
    assert both.means["oracle"] <= both.means["policy"] < alone.policy_mean
    one = simulate_regions([RegionTrace("A", hourly(first))], config)
    assert [o.start for o in one.decisions] == [o.start for o in alone.decisions]
    assert one.means["policy"] == pytest.approx(alone.policy_mean)


# ----------------------------------------------------------------------------- invariants


@given(
    st.lists(st.lists(st.integers(0, 600), min_size=30, max_size=30), min_size=2, max_size=3),
    st.integers(1, 3),
    st.integers(3, 12),
    st.integers(1, 3),
)
@settings(max_examples=60, deadline=None)
def test_with_a_perfect_forecast_every_job_gets_the_best_region_and_start(
    series: list[list[int]], duration: int, window: int, every: int
) -> None:
    window = max(window, duration)
    regions = [
        RegionTrace(f"R{i}", trace([float(v) for v in values], step=HOUR))
        for i, values in enumerate(series)
    ]
    result = simulate_regions(
        regions,
        SimulationSettings(
            forecast=ForecastMode.PERFECT,
            duration=duration * HOUR,
            window=window * HOUR,
            arrival_every=every * HOUR,
            warmup=timedelta(0),
            horizon=window * HOUR,
        ),
    )
    assert result.jobs > 0
    assert result.deadline_misses == 0
    for outcome in result.decisions:
        assert outcome.means["policy"] == pytest.approx(outcome.means["oracle"], abs=1e-9)
        assert outcome.means["oracle"] <= outcome.means["best_region_now"] + 1e-9
        assert outcome.means["oracle"] <= outcome.means["first_region_oracle"] + 1e-9


@given(
    st.lists(
        st.lists(st.floats(0, 500) | st.just(math.nan), min_size=72, max_size=72),
        min_size=2,
        max_size=3,
    ),
    st.sampled_from([SchedulePolicy.FORECAST, SchedulePolicy.IMMEDIATE]),
    st.sampled_from(list(ForecastMode)),
    st.integers(1, 3),
    st.integers(3, 30),
)
@settings(max_examples=40, deadline=None)
def test_no_deadline_misses_whatever_the_data(
    series: list[list[float]],
    policy: SchedulePolicy,
    mode: ForecastMode,
    duration: int,
    window: int,
) -> None:
    window = max(window, duration)
    # Gaps are shared (traces must cover the same slots); values inside may still be unknown.
    rng = random.Random(len(series))
    regions = [
        RegionTrace(
            f"R{i}",
            with_vintages(
                trace(
                    values,
                    step=HALF_HOUR,
                    forecast=[v + rng.uniform(-30, 30) if v == v else v for v in values],
                )
            ),
        )
        for i, values in enumerate(series)
    ]
    result = simulate_regions(
        regions,
        SimulationSettings(
            policy=policy,
            forecast=mode,
            duration=duration * HALF_HOUR,
            window=window * HALF_HOUR,
            warmup=timedelta(hours=2),
            horizon=timedelta(hours=6),
        ),
    )
    assert result.deadline_misses == 0
    assert result.first_region_deadline_misses == 0
    assert all(o.start <= o.latest_start for o in result.decisions)


def test_decisions_never_depend_on_actuals_not_yet_measured() -> None:
    home, away = wavy(6, seed=5), wavy(6, seed=6, phase=0.3)
    cut = 4 * DAY + 7
    tampered = away[:cut] + [v * 0.2 for v in away[cut:]]
    config = SimulationSettings(forecast=ForecastMode.OWN, window=12 * HOUR, arrival_every=HOUR)
    before = simulate_regions(
        [RegionTrace("A", hourly(home)), RegionTrace("B", hourly(away))], config
    )
    after = simulate_regions(
        [RegionTrace("A", hourly(home)), RegionTrace("B", hourly(tampered))], config
    )
    cut_time = T0 + cut * HOUR
    early = [(o.start, o.region) for o in before.decisions if o.start < cut_time]
    assert {region for _, region in early} == {"A", "B"}  # the test means something
    assert early == [(o.start, o.region) for o in after.decisions if o.start < cut_time]


def test_settings_the_traces_cannot_support_are_refused() -> None:
    a, b = hourly(wavy(2, seed=7)), hourly(wavy(2, seed=8))
    with pytest.raises(ValueError, match="B has none"):
        simulate_regions(
            [RegionTrace("A", a, ForecastMode.OWN), RegionTrace("B", b, ForecastMode.COLUMN)],
            SimulationSettings(arrival_every=HOUR),
        )
    with pytest.raises(ValueError, match="not Threshold"):
        simulate_regions(
            [RegionTrace("A", a), RegionTrace("B", b)],
            SimulationSettings(
                policy=SchedulePolicy.THRESHOLD, forecast=ForecastMode.OWN, max_intensity=100
            ),
        )
    with pytest.raises(ValueError, match="whole number"):
        simulate_regions(
            [RegionTrace("A", a), RegionTrace("B", b)],
            SimulationSettings(forecast=ForecastMode.OWN),  # arrivals every 30 min, hourly data
        )


# ----------------------------------------------------------------------------- decisions file


def test_the_decisions_file_rescored_from_the_traces_gives_the_reported_savings() -> None:
    actual = {"A": wavy(8, seed=9), "B": wavy(8, seed=10, phase=0.35, level=290)}
    forecast_b = [v + 12 for v in wavy(8, seed=11, phase=0.35, level=290)]
    result = simulate_regions(
        [
            RegionTrace("A", hourly(actual["A"]), ForecastMode.OWN),
            RegionTrace("B", hourly(actual["B"], forecast=forecast_b), ForecastMode.COLUMN),
        ],
        SimulationSettings(duration=2 * HOUR, arrival_every=HOUR),
    )
    assert result.summary()["forecasts"] == {"A": "own", "B": "column"}
    rows = list(csv.DictReader(io.StringIO(decisions_csv(result))))
    assert list(rows[0]) == ["arrival", "latest_start", "start", "region"]
    assert len(rows) == result.jobs
    assert {row["region"] for row in rows} == {"A", "B"}
    at_once = []
    chosen = []
    for row in rows:
        arrival, latest, start = (parse(row[k]) for k in ("arrival", "latest_start", "start"))
        assert arrival <= start <= latest
        assert latest == arrival + 22 * HOUR
        first = (start - T0) // HOUR
        chosen.append(sum(actual[row["region"]][first : first + 2]) / 2)
        home = (arrival - T0) // HOUR
        at_once.append(sum(actual["A"][home : home + 2]) / 2)
    rescored = 1 - sum(chosen) / sum(at_once)
    assert rescored == pytest.approx(result.savings, abs=1e-12)


def test_report_forms_for_several_regions() -> None:
    result = simulate_regions(
        [RegionTrace("A", hourly(TINY_A)), RegionTrace("B", hourly(TINY_B))], TINY
    )
    rows = dict(summary_rows(result))
    assert rows["regions"] == "A, B (baseline: A at once)"
    assert rows["jobs by region"] == "A 3, B 1"
    assert rows["savings vs A at once"] == "79.2 %"
    assert rows["A alone, oracle"] == "50.0 %"
    assert rows["best region at once, oracle"] == "54.2 %"
    assert rows["oracle savings (best region and start)"] == "79.2 %"
    text = render_plain(result, trace_name="a.csv,b.csv", attribution="credit", wall_seconds=0.5)
    assert text.endswith("credit")
