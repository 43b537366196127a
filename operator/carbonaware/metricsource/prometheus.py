"""CPU core-seconds of a run from Prometheus.

Two sources, the first preferred when it has data:

- cAdvisor/kubelet ``container_cpu_usage_seconds_total{namespace, pod}``: the pod's own
  CPU time (each container's last value in the run window, summed over its containers).
  cAdvisor refreshes a container's figures only every housekeeping interval (10-15 s, later
  on a loaded node) and a container's series ends with it, so its last sample can be seconds
  before the container ended: that tail is extrapolated at the container's latest rate, up to
  when it finished (:func:`container_total`).
- node_exporter ``node_cpu_seconds_total``: the node's busy time (every mode except
  ``idle``, ``iowait`` and ``steal``) over the window, attributed to the job by its share of
  the node (reserved vCPUs / node CPUs).

All HTTP goes through :class:`carbonaware.providers.http.HttpJsonClient`; its
``ProviderError`` family is re-raised as :class:`MetricSourceError`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from carbonaware.errors import MetricSourceError, ProviderError
from carbonaware.metricsource.reading import (
    SOURCE_PROMETHEUS_CONTAINER,
    SOURCE_PROMETHEUS_NODE_SHARE,
    CpuReading,
)
from carbonaware.providers.base import Clock, utc_now
from carbonaware.providers.http import HttpJsonClient, HttpOptions

# node_exporter modes that are not work done by this machine: idle, waiting on I/O, and time
# the hypervisor gave to other guests.
NOT_BUSY_MODES = ("idle", "iowait", "steal")
CONTAINER_METRIC = "container_cpu_usage_seconds_total"
NODE_METRIC = "node_cpu_seconds_total"

Sleep = Callable[[float], Awaitable[None]]


def escape_label_value(value: str) -> str:
    """A PromQL string literal body: backslashes, quotes and newlines escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(metric: str, labels: Mapping[str, str], *extra: str) -> str:
    """``metric{a="x",b="y",<extra matchers>}`` with label values escaped."""
    matchers = [f'{name}="{escape_label_value(value)}"' for name, value in sorted(labels.items())]
    return f"{metric}{{{','.join([*matchers, *extra])}}}"


def range_duration(start: datetime, end: datetime) -> str:
    """The window ``[start, end]`` as a PromQL range in milliseconds (at least 1 ms)."""
    milliseconds = max(1, round((end - start).total_seconds() * 1000))
    return f"{milliseconds}ms"


@dataclass(frozen=True, slots=True)
class ContainerCpu:
    """A pod's containers' CPU time over a run, and how much of it was extrapolated."""

    core_seconds: float
    extrapolated_seconds: float


def container_total(
    samples: Sequence[tuple[float, float]], start: float, finished: float | None, end: float
) -> tuple[float, float]:
    """(CPU seconds, seconds extrapolated) of one container from its counter's samples
    ``(time, value)`` (it counts from the container's start, near ``start``).

    The tail after the last sample is extrapolated at the container's rate between its last
    two samples (its most recent share of the CPU; on a loaded node that share moves): up to
    ``finished`` (when the container ended) when known, otherwise by at most the longest gap
    between its samples, and never past ``end``.
    """
    ordered = sorted(samples)
    last_time, last_value = ordered[-1]
    if len(ordered) >= 2:
        before_time, before_value = ordered[-2]
        span = last_time - before_time
        rate = (last_value - before_value) / span if span > 0 else 0.0
        longest_gap = max(b[0] - a[0] for a, b in pairwise(ordered))
    else:
        span = last_time - start
        rate = last_value / span if span > 0 else 0.0
        longest_gap = max(0.0, span)
    until = min(end, finished if finished is not None else last_time + longest_gap)
    tail = max(0.0, until - last_time)
    return last_value + max(0.0, rate) * tail, tail


@dataclass(frozen=True, slots=True)
class NodeCpu:
    """A node's busy CPU time over a window and its number of CPUs."""

    busy_core_seconds: float
    cpus: int


class PrometheusCpuReader:
    """Reads a run's CPU time from a Prometheus server (``/api/v1/query``)."""

    def __init__(
        self,
        base_url: str,
        *,
        options: HttpOptions | None = None,
        client: HttpJsonClient | None = None,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client or HttpJsonClient("prometheus", base_url, options=options)
        self._clock = clock
        self._sleep = sleep

    async def __aenter__(self) -> PrometheusCpuReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def instant_query(self, promql: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query evaluated at ``at`` (default: now)."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        try:
            body = await self._client.get_json("/api/v1/query", params=params)
        except ProviderError as exc:
            raise MetricSourceError(f"prometheus: {exc.problem}") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            reason = body.get("error") if isinstance(body, dict) else None
            raise MetricSourceError(f"prometheus: query {promql!r} failed: {reason or body!r}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise MetricSourceError(f"prometheus: query {promql!r} did not return a vector")
        result = data.get("result")
        if not isinstance(result, list):
            raise MetricSourceError(f"prometheus: query {promql!r} returned no result list")
        return [item for item in result if isinstance(item, dict)]

    async def scalar_query(self, promql: str, at: datetime | None = None) -> float | None:
        """The single value of an aggregated instant query, or None when it has no series."""
        result = await self.instant_query(promql, at)
        if not result:
            return None
        try:
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricSourceError(f"prometheus: malformed sample for {promql!r}") from exc
        if not math.isfinite(value):
            return None
        return value

    async def range_samples(
        self, promql: str, at: datetime
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The raw samples of a range selector (``metric{...}[range]``) evaluated at ``at``:
        (labels, [(time, value)]) per series."""
        try:
            body = await self._client.get_json(
                "/api/v1/query", params={"query": promql, "time": f"{at.timestamp():.3f}"}
            )
        except ProviderError as exc:
            raise MetricSourceError(f"prometheus: {exc.problem}") from exc
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise MetricSourceError(f"prometheus: query {promql!r} did not return a matrix")
        found = []
        try:
            for item in data.get("result") or []:
                points = [(float(t), float(v)) for t, v in item.get("values") or []]
                if points:
                    found.append((dict(item.get("metric") or {}), points))
        except (TypeError, ValueError) as exc:
            raise MetricSourceError(f"prometheus: malformed samples for {promql!r}") from exc
        return found

    async def container_core_seconds(
        self,
        namespace: str,
        pod: str,
        start: datetime,
        end: datetime,
        finished: Mapping[str, datetime] | None = None,
    ) -> ContainerCpu | None:
        """CPU seconds of the pod's containers over ``[start, end]``; None if there are none.
        ``finished``: when each container (by name) ended, if it did."""
        series = selector(
            CONTAINER_METRIC,
            {"namespace": namespace, "pod": pod},
            'container!=""',
            'container!="POD"',
        )
        # A container's counter counts from its start and every container (a restarted one
        # too) is its own series, so each one's last value is its whole CPU time up to that
        # sample. increase() would miss what ran before the first scrape of a new container
        # (cAdvisor finds containers on its housekeeping, seconds after they start).
        matrix = await self.range_samples(f"{series}[{range_duration(start, end)}]", end)
        if not matrix:
            return None
        total = extrapolated = 0.0
        for labels, points in matrix:
            ended = (finished or {}).get(labels.get("container", ""))
            seconds, tail = container_total(
                points, start.timestamp(), ended.timestamp() if ended else None, end.timestamp()
            )
            total += seconds
            extrapolated = max(extrapolated, tail)
        return ContainerCpu(total, extrapolated)

    async def node_cpu(
        self, node_labels: Mapping[str, str], start: datetime, end: datetime
    ) -> NodeCpu:
        """The node's busy core-seconds over ``[start, end]`` and its CPU count."""
        busy_modes = "|".join(NOT_BUSY_MODES)
        busy_series = selector(NODE_METRIC, node_labels, f'mode!~"{busy_modes}"')
        # node_exporter: busy = all CPU time except idle/iowait/steal, summed over CPUs.
        busy = await self.scalar_query(
            f"sum(increase({busy_series}[{range_duration(start, end)}]))", end
        )
        idle_series = selector(NODE_METRIC, node_labels, 'mode="idle"')
        cpus = await self.scalar_query(f"count(count by (cpu) ({idle_series}))", end)
        if busy is None or cpus is None or cpus < 1:
            raise MetricSourceError(
                f"prometheus: no {NODE_METRIC} for {dict(node_labels)} between "
                f"{start.isoformat()} and {end.isoformat()}"
            )
        return NodeCpu(busy_core_seconds=max(0.0, busy), cpus=int(cpus))

    async def run_reading(
        self,
        start: datetime,
        end: datetime,
        *,
        namespace: str | None = None,
        pod: str | None = None,
        node_labels: Mapping[str, str] | None = None,
        reserved_vcpus: float | None = None,
        finished: Mapping[str, datetime] | None = None,
    ) -> CpuReading:
        """CPU time of a run: the pod's containers if Prometheus has them, else its node share.

        The node share is ``reserved_vcpus / node CPUs`` (capped at 1; the whole node when
        ``reserved_vcpus`` is not given).
        """
        if namespace and pod:
            container = await self.container_core_seconds(namespace, pod, start, end, finished)
            if container is not None:
                tail = container.extrapolated_seconds
                return CpuReading(
                    max(0.0, container.core_seconds),
                    SOURCE_PROMETHEUS_CONTAINER,
                    f"last {CONTAINER_METRIC} of each container of {namespace}/{pod}"
                    + (f", its last {tail:.1f} s extrapolated at its rate" if tail else ""),
                )
        if node_labels is None:
            raise MetricSourceError(
                f"prometheus: no {CONTAINER_METRIC} for {namespace}/{pod} "
                "and no node to fall back to"
            )
        node = await self.node_cpu(node_labels, start, end)
        share = 1.0 if reserved_vcpus is None else min(1.0, max(0.0, reserved_vcpus) / node.cpus)
        return CpuReading(
            node.busy_core_seconds * share,
            SOURCE_PROMETHEUS_NODE_SHARE,
            f"node busy {node.busy_core_seconds:.2f} core-s x share {share:.3f} "
            f"of {node.cpus} CPUs",
        )

    async def wait_for_samples(
        self,
        series: str,
        moment: datetime,
        *,
        timeout_seconds: float = 60.0,
        poll_seconds: float = 1.0,
    ) -> None:
        """Return once Prometheus holds a sample of ``series`` taken at or after ``moment``.

        Reading a window right after it ends would miss the last scrape interval; callers
        wait for the next scrape first. Raises :class:`MetricSourceError` on timeout.
        """
        deadline = self._clock().timestamp() + timeout_seconds
        while True:
            latest = await self.scalar_query(f"max(timestamp({series}))")
            if latest is not None and latest >= moment.timestamp():
                return
            if self._clock().timestamp() >= deadline:
                raise MetricSourceError(
                    f"prometheus: no sample of {series} after {moment.isoformat()} "
                    f"within {timeout_seconds:g}s"
                )
            await self._sleep(poll_seconds)
