"""metrics.k8s.io samples integrated into CPU core-seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carbonaware.errors import MetricSourceError
from carbonaware.metricsource import (
    SOURCE_METRICS_API,
    CpuSample,
    PodCpuAccumulator,
    integrate_core_seconds,
    parse_cpu_quantity,
    pod_cpu_sample,
)
from carbonaware.metricsource.podmetrics import parse_go_duration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "cores"),
    [
        ("250m", 0.25),
        ("123456n", 0.000123456),
        ("1500u", 0.0015),
        ("2", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        ("1e3m", 1.0),
    ],
)
def test_parse_cpu_quantity(text: str, cores: float) -> None:
    assert parse_cpu_quantity(text) == pytest.approx(cores)


@pytest.mark.parametrize("text", ["", "abc", "12x", "-1", "1.2.3"])
def test_parse_cpu_quantity_rejects_garbage(text: str) -> None:
    with pytest.raises(MetricSourceError, match="not a CPU quantity"):
        parse_cpu_quantity(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("10.5s", 10.5), ("1m0.25s", 60.25), ("1h2m3s", 3723.0), ("500ms", 0.5),
     ("0s", 0.0), ("0", 0.0), ("1500\u00b5s", 0.0015)],
)  # fmt: skip
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "s", "1x", "-1s", "1s junk"])
def test_parse_go_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(MetricSourceError, match="not a duration"):
        parse_go_duration(text)


def _pod_metrics(seconds: float, *cpus: str, window: str = "15s") -> dict[str, Any]:
    return {
        "kind": "PodMetrics",
        "metadata": {"name": "train-abc", "namespace": "ml"},
        "timestamp": (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "window": window,
        "containers": [
            {"name": f"c{i}", "usage": {"cpu": cpu, "memory": "1Gi"}} for i, cpu in enumerate(cpus)
        ],
    }


def test_pod_sample_sums_containers_at_the_metrics_timestamp() -> None:
    sample = pod_cpu_sample(_pod_metrics(30, "250m", "750000000n", window="10.5s"))
    assert sample.time == T0 + timedelta(seconds=30)
    assert sample.window == timedelta(seconds=10.5)
    assert sample.cores == pytest.approx(1.0)
    # An object without a window (older servers) is a point reading.
    del (unwindowed := _pod_metrics(30, "1"))["window"]
    assert pod_cpu_sample(unwindowed).window == timedelta(0)


def test_malformed_pod_metrics_raise_metric_source_error() -> None:
    with pytest.raises(MetricSourceError, match="malformed"):
        pod_cpu_sample({"containers": []})


def test_trapezoid_of_constant_and_ramp() -> None:
    constant = [CpuSample(T0 + timedelta(seconds=s), 2.0) for s in (0, 15, 30, 60)]
    assert integrate_core_seconds(constant) == pytest.approx(120.0)
    ramp = [CpuSample(T0 + timedelta(seconds=s), s / 10) for s in (0, 10, 20, 40)]
    # Linear usage 0 -> 4 cores over 40 s: exactly 80 core-seconds by the trapezoid rule.
    assert integrate_core_seconds(ramp) == pytest.approx(80.0)


def test_window_bounds_hold_edge_values_flat_and_drop_outside_samples() -> None:
    samples = [
        CpuSample(T0 + timedelta(seconds=s), c) for s, c in ((-10, 9.0), (10, 1.0), (20, 3.0))
    ]
    total = integrate_core_seconds(samples, T0, T0 + timedelta(seconds=30))
    # 10 s held at 1.0, trapezoid 10 s of (1+3)/2, 10 s held at 3.0; the sample at -10 s is out.
    assert total == pytest.approx(10 * 1.0 + 10 * 2.0 + 10 * 3.0)
    assert integrate_core_seconds([]) == 0.0


def _windowed(*rows: tuple[float, float, float]) -> list[CpuSample]:
    """Samples from (end second, cores, window seconds)."""
    return [CpuSample(T0 + timedelta(seconds=t), c, timedelta(seconds=w)) for t, c, w in rows]


def test_windowed_samples_count_each_rate_over_its_own_window() -> None:
    # A burner at 1 core for 10 s, then starved to 0.2 core; metrics-server's windows are
    # consecutive: [2, 12], [12, 22], [22, 32]. The run: 0 to 35 s.
    samples = _windowed((12, 0.8, 10), (22, 0.2, 10), (32, 0.2, 10))
    total = integrate_core_seconds(samples, T0, T0 + timedelta(seconds=35))
    # Held 2 s before the first window at its rate, 30 s of windows, 3 s held after the last.
    assert total == pytest.approx(2 * 0.8 + 10 * 0.8 + 10 * 0.2 + 10 * 0.2 + 3 * 0.2)
    # The trapezoid over the sample times would shift each rate by half a window: it gives
    # 2 * 0.8 + 10 * 0.5 + 10 * 0.2 + 3 * 0.2 = 9.2, against the counter's 12.0 + 2.2 = 14.2.
    assert total == pytest.approx(14.2)


def test_windowed_samples_cut_at_the_run_bounds_and_bridge_a_missed_sample() -> None:
    samples = _windowed(
        (4, 9.0, 10),  # before the run began: ignored
        (12, 1.0, 10),  # window [2, 12] cut to [5, 12]
        # the sample ending at 22 was missed: [12, 22] is bridged at (1 + 3) / 2
        (32, 3.0, 10),  # [22, 32]
        (41, 2.0, 9),  # [32, 41] cut to [32, 40]: the finish time was rounded down
    )
    total = integrate_core_seconds(samples, T0 + timedelta(seconds=5), T0 + timedelta(seconds=40))
    assert total == pytest.approx(7 * 1.0 + 10 * 2.0 + 10 * 3.0 + 8 * 2.0)


def test_windows_continue_across_whole_second_timestamps() -> None:
    # The readings really ended at 14.6, 27.2 and 38.7 s; the API cut the timestamps to whole
    # seconds, so the second window seems to begin 0.4 s after the first ended and the third
    # 0.1 s before the second. Consecutive windows continue each other from the first
    # timestamp: every rate counts over its whole window (none is cut or bridged), and the
    # tail is held from 14 + 12.6 + 11.5 = 38.1 s.
    samples = _windowed((14, 1.0, 6.3), (27, 0.5, 12.6), (38, 0.25, 11.5))
    total = integrate_core_seconds(samples, T0 + timedelta(seconds=2), T0 + timedelta(seconds=42))
    head = (14 - 6.3 - 2) * 1.0
    assert total == pytest.approx(head + 6.3 * 1.0 + 12.6 * 0.5 + 11.5 * 0.25 + 3.9 * 0.25)


def test_overlapping_windows_count_the_overlap_once() -> None:
    samples = _windowed((10, 1.0, 10), (15, 3.0, 10))  # [0, 10] and [5, 15]
    assert integrate_core_seconds(samples) == pytest.approx(10 * 1.0 + 5 * 3.0)


def test_accumulator_counts_a_repeated_sample_once() -> None:
    accumulator = PodCpuAccumulator()
    assert accumulator.add_pod_metrics(_pod_metrics(20, "500m"))
    assert accumulator.add_pod_metrics(_pod_metrics(0, "500m"))
    assert not accumulator.add_pod_metrics(_pod_metrics(20, "500m"))
    assert len(accumulator) == 2
    assert [s.time for s in accumulator.samples] == [T0, T0 + timedelta(seconds=20)]
    reading = accumulator.reading()
    # Windows [-15, 0] and [5, 20] at 0.5 core, the gap [0, 5] bridged at 0.5.
    assert reading.core_seconds == pytest.approx(0.5 * 35)
    assert reading.source == SOURCE_METRICS_API
