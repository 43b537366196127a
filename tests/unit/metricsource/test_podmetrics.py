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


def _pod_metrics(seconds: float, *cpus: str) -> dict[str, Any]:
    return {
        "kind": "PodMetrics",
        "metadata": {"name": "train-abc", "namespace": "ml"},
        "timestamp": (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "window": "15s",
        "containers": [
            {"name": f"c{i}", "usage": {"cpu": cpu, "memory": "1Gi"}} for i, cpu in enumerate(cpus)
        ],
    }


def test_pod_sample_sums_containers_at_the_metrics_timestamp() -> None:
    sample = pod_cpu_sample(_pod_metrics(30, "250m", "750000000n"))
    assert sample.time == T0 + timedelta(seconds=30)
    assert sample.cores == pytest.approx(1.0)


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


def test_accumulator_counts_a_repeated_sample_once() -> None:
    accumulator = PodCpuAccumulator()
    assert accumulator.add_pod_metrics(_pod_metrics(20, "500m"))
    assert accumulator.add_pod_metrics(_pod_metrics(0, "500m"))
    assert not accumulator.add_pod_metrics(_pod_metrics(20, "500m"))
    assert len(accumulator) == 2
    assert [s.time for s in accumulator.samples] == [T0, T0 + timedelta(seconds=20)]
    reading = accumulator.reading()
    assert reading.core_seconds == pytest.approx(10.0)
    assert reading.source == SOURCE_METRICS_API
