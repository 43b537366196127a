"""The metrics.k8s.io sampler: one list per namespace per tick, kept per pod until read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from carbonaware.errors import KubernetesError
from carbonaware.handlers.usage import UsageSampler
from carbonaware.k8s import Kube
from carbonaware.metricsource import SOURCE_METRICS_API

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def pod_metrics(pod: str, seconds: float, cpu: str) -> dict[str, Any]:
    stamp = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return {
        "metadata": {"name": pod, "namespace": "ml"},
        "timestamp": stamp,
        "window": "15s",
        "containers": [{"name": "main", "usage": {"cpu": cpu, "memory": "10Mi"}}],
    }


class FakeKube:
    """Answers each list call with the next batch; records the calls."""

    def __init__(self, *batches: list[dict[str, Any]] | KubernetesError) -> None:
        self.batches = list(batches)
        self.calls: list[tuple[str, str]] = []

    async def list_pod_metrics(self, namespace: str, label_selector: str) -> list[Any]:
        self.calls.append((namespace, label_selector))
        batch = self.batches.pop(0)
        if isinstance(batch, KubernetesError):
            raise batch
        return batch


async def sample_all(sampler: UsageSampler, kube: FakeKube) -> None:
    for _ in range(len(kube.batches)):
        await sampler.sample(cast(Kube, kube))


async def test_samples_integrate_per_pod_and_a_repeated_sample_counts_once() -> None:
    sampler = UsageSampler()
    sampler.watch_namespace("ml")
    kube = FakeKube(
        [pod_metrics("a", 10, "1")],
        [pod_metrics("a", 10, "1"), {"metadata": {"name": "b"}, "timestamp": "garbage"}],
        KubernetesError("apiserver busy", status=503),
        [pod_metrics("a", 30, "3")],
    )
    await sample_all(sampler, kube)
    assert len(kube.calls) == 4
    reading = sampler.reading("ml", "a", T0 + timedelta(seconds=10), T0 + timedelta(seconds=30))
    assert reading is not None
    # The sample ending at 10 s adds nothing inside [10, 30]; the one ending at 30 s covers
    # its 15 s window at 3 cores, and the 5 s between them is bridged at (1 + 3) / 2.
    assert reading.core_seconds == pytest.approx(5 * (1 + 3) / 2 + 15 * 3)
    assert reading.source == SOURCE_METRICS_API
    # A reading takes the pod's samples: a second read has none.
    assert sampler.reading("ml", "a", T0, T0 + timedelta(seconds=30)) is None
    assert sampler.reading("ml", "b", T0, T0 + timedelta(seconds=30)) is None


async def test_a_single_sample_is_held_over_the_run_not_dropped() -> None:
    # An idle 40 s container may be scraped with a new timestamp only once.
    sampler = UsageSampler()
    sampler.watch_namespace("ml")
    await sample_all(sampler, FakeKube([pod_metrics("idle", 20, "300000n")]))
    reading = sampler.reading("ml", "idle", T0, T0 + timedelta(seconds=40))
    assert reading is not None
    assert reading.core_seconds == pytest.approx(0.0003 * 40)
    assert "1 PodMetrics sample held over the run" in reading.detail


async def test_no_metrics_api_switches_the_sampler_off() -> None:
    sampler = UsageSampler()
    sampler.watch_namespace("ml")
    kube = FakeKube(KubernetesError("the server could not find the resource", status=404))
    await sample_all(sampler, kube)
    assert not sampler.available
    await sampler.sample(cast(Kube, kube))
    assert len(kube.calls) == 1
