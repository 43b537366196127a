"""CPU core-seconds of a pod from sampled ``metrics.k8s.io`` PodMetrics.

metrics-server reports each container's CPU usage as a rate (cores, as a Kubernetes
quantity such as ``250m`` or ``123456n``): the growth of the kubelet's cumulative CPU counter
between two of its readings, divided by the time between them. The PodMetrics object says
which interval that was: it ends at ``timestamp`` and lasts ``window``. Summing rate x window
over consecutive samples therefore gives the counter's growth exactly (the readings' timing
jitter cancels), where interpolating between sample times would not. Nothing here talks to
the Kubernetes API: the handlers list the PodMetrics and pass each object in.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")
_DURATION_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


# PodMetrics ``timestamp`` is a metav1.Time: RFC 3339 in whole seconds.
TIMESTAMP_RESOLUTION = timedelta(seconds=1)


def parse_go_duration(text: str) -> timedelta:
    """A Go duration as the API serves ``metav1.Duration``: ``10.5s``, ``1m0.25s``, ``0s``."""
    text = str(text).strip()
    if text == "0":
        return timedelta(0)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise MetricSourceError(f"metrics.k8s.io: {text!r} is not a duration")
    return timedelta(seconds=sum(float(number) * _DURATION_UNIT[unit] for number, unit in parts))


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class CpuSample:
    """The pod's CPU usage rate (cores, all containers) over ``window`` ending at ``time``.

    A zero window is a point reading: integration interpolates between such samples.
    """

    time: datetime
    cores: float
    window: timedelta = timedelta(0)


def pod_cpu_sample(pod_metrics: Mapping[str, Any]) -> CpuSample:
    """One sample from a PodMetrics object: its ``timestamp``, ``window`` and the sum of its
    containers' rates."""
    try:
        time = _parse_time(str(pod_metrics["timestamp"]))
        window = parse_go_duration(pod_metrics.get("window") or "0s")
        containers = pod_metrics.get("containers") or []
        cores = sum(parse_cpu_quantity(c["usage"]["cpu"]) for c in containers)
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricSourceError(f"metrics.k8s.io: malformed PodMetrics: {exc!r}") from exc
    return CpuSample(time, cores, window)


def integrate_core_seconds(
    samples: Iterable[CpuSample], start: datetime | None = None, end: datetime | None = None
) -> float:
    """Core-seconds under the usage curve.

    Each sample counts its rate over its own window, ``[time - window, time]``, less any part
    an earlier sample already covers. The API serves ``timestamp`` in whole seconds (the
    window is exact), so a window that begins within a second of where the last one ended
    continues it: consecutive readings then add up to the kubelet counter's growth exactly.
    A gap between windows (a sample the loop missed) is bridged at the mean of its two
    neighbours' rates (the trapezoid rule, which is all that is left when samples carry no
    window). With ``start``/``end``, windows are cut to ``[start, end]`` and the first and
    last rate are held flat out to those bounds (the run was already, or still, using that
    much CPU: metrics-server never sees a container's first and last seconds).
    """
    total = 0.0
    covered: datetime | None = None  # where the last counted window ended
    last_cores = 0.0
    for sample in sorted(samples, key=lambda s: s.time):
        if start is not None and sample.time < start:
            continue  # ended before the run began
        begin, finish = sample.time - sample.window, sample.time
        if covered is not None and abs(begin - covered) < TIMESTAMP_RESOLUTION:
            begin, finish = covered, covered + sample.window
        if start is not None:
            begin = max(begin, start)
        if end is not None:
            finish = min(finish, end)
        if finish < begin:
            continue  # began after the run ended
        if covered is None:
            head = start if start is not None else begin
            total += sample.cores * (begin - head).total_seconds()
        else:
            begin = max(begin, covered)
            total += (last_cores + sample.cores) / 2.0 * (begin - covered).total_seconds()
        total += sample.cores * max((finish - begin).total_seconds(), 0.0)
        covered, last_cores = max(finish, begin), sample.cores
    if covered is not None and end is not None:
        total += last_cores * max((end - covered).total_seconds(), 0.0)
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
            detail = f"{count} PodMetrics samples, each rate over its window"
        return CpuReading(core_seconds, SOURCE_METRICS_API, detail)
