"""CPU usage readers: Prometheus (cAdvisor, node_exporter), metrics.k8s.io samples, SSH runners.

Each reader returns a :class:`CpuReading` (core-seconds of one run and its source) that the
handlers turn into a :class:`carbonaware.sci.RunUsage`. This layer may use providers' HTTP
helper; it never talks to the Kubernetes API itself (the handlers pass PodMetrics in).
"""

from __future__ import annotations

from carbonaware.metricsource.podmetrics import (
    CpuSample,
    PodCpuAccumulator,
    integrate_core_seconds,
    parse_cpu_quantity,
    pod_cpu_sample,
)
from carbonaware.metricsource.prometheus import NodeCpu, PrometheusCpuReader
from carbonaware.metricsource.reading import (
    SOURCE_METRICS_API,
    SOURCE_PROMETHEUS_CONTAINER,
    SOURCE_PROMETHEUS_NODE_SHARE,
    SOURCE_RUNNER,
    CpuReading,
)

__all__ = [
    "SOURCE_METRICS_API",
    "SOURCE_PROMETHEUS_CONTAINER",
    "SOURCE_PROMETHEUS_NODE_SHARE",
    "SOURCE_RUNNER",
    "CpuReading",
    "CpuSample",
    "NodeCpu",
    "PodCpuAccumulator",
    "PrometheusCpuReader",
    "integrate_core_seconds",
    "parse_cpu_quantity",
    "pod_cpu_sample",
]
