"""CPU core-seconds of a pod from sampled ``metrics.k8s.io`` PodMetrics.

metrics-server reports each container's CPU usage as a rate (cores, as a Kubernetes
quantity such as ``250m`` or ``123456n``) averaged over a short window ending at the
sample's ``timestamp``. Integrating those rates over the sample times with the trapezoid
rule gives core-seconds. Nothing here talks to the Kubernetes API: the handlers list the
PodMetrics and pass each object in.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from carbonaware.errors import MetricSourceError
from carbonaware.metricsource.reading import SOURCE_METRICS_API, CpuReading

_QUANTITY = re.compile(r"^\s*([+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*$")
# Kubernetes resource.Quantity suffixes that occur for CPU (decimal SI; binary suffixes are
# not used for CPU but are accepted for completeness).
_SUFFIX = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
}


def parse_cpu_quantity(text: str) -> float:
    """Cores from a Kubernetes CPU quantity: ``250m`` -> 0.25, ``123456n`` -> 0.000123456."""
    match = _QUANTITY.match(str(text))
    if match is None or match.group(2) not in _SUFFIX:
        raise MetricSourceError(f"metrics.k8s.io: {text!r} is not a CPU quantity")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """The pod's CPU usage rate (cores, all containers) at ``time``."""

    time: datetime
    cores: float


def pod_cpu_sample(pod_metrics: Mapping[str, Any]) -> CpuSample:
    """One sample from a PodMetrics object: its ``timestamp`` and the sum over containers."""
    try:
        time = _parse_time(str(pod_metrics["timestamp"]))
        containers = pod_metrics.get("containers") or []
        cores = sum(parse_cpu_quantity(c["usage"]["cpu"]) for c in containers)
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricSourceError(f"metrics.k8s.io: malformed PodMetrics: {exc!r}") from exc
    return CpuSample(time, cores)


def integrate_core_seconds(
    samples: Iterable[CpuSample], start: datetime | None = None, end: datetime | None = None
) -> float:
    """Core-seconds under the usage curve by the trapezoid rule over the sample times.

    With ``start``/``end``, samples outside are dropped and the first and last usage are
    held flat out to those bounds (the run was already, or still, using that much CPU).
    """
    ordered = sorted(samples, key=lambda s: s.time)
    if start is not None:
        ordered = [s for s in ordered if s.time >= start]
    if end is not None:
        ordered = [s for s in ordered if s.time <= end]
    if not ordered:
        return 0.0
    total = 0.0
    for left, right in pairwise(ordered):
        seconds = (right.time - left.time).total_seconds()
        # Trapezoid rule: mean of the two rates times the interval.
        total += (left.cores + right.cores) / 2.0 * seconds
    if start is not None:
        total += ordered[0].cores * (ordered[0].time - start).total_seconds()
    if end is not None:
        total += ordered[-1].cores * (end - ordered[-1].time).total_seconds()
    return total


class PodCpuAccumulator:
    """Collects PodMetrics samples of one pod; repeated samples (same timestamp) count once."""

    def __init__(self) -> None:
        self._times: list[datetime] = []
        self._samples: list[CpuSample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, sample: CpuSample) -> bool:
        """Add a sample; False when one with the same timestamp is already held."""
        index = bisect.bisect_left(self._times, sample.time)
        if index < len(self._times) and self._times[index] == sample.time:
            return False
        self._times.insert(index, sample.time)
        self._samples.insert(index, sample)
        return True

    def add_pod_metrics(self, pod_metrics: Mapping[str, Any]) -> bool:
        return self.add(pod_cpu_sample(pod_metrics))

    @property
    def samples(self) -> tuple[CpuSample, ...]:
        return tuple(self._samples)

    def reading(self, start: datetime | None = None, end: datetime | None = None) -> CpuReading:
        """Core-seconds over ``[start, end]`` from the samples held."""
        core_seconds = integrate_core_seconds(self._samples, start, end)
        count = len(self._samples)
        if count == 1:
            detail = "1 PodMetrics sample held over the run"
        else:
            detail = f"trapezoid over {count} PodMetrics samples"
        return CpuReading(core_seconds, SOURCE_METRICS_API, detail)
