"""CPU samples from metrics.k8s.io for running jobs, when no Prometheus is configured.

One list call per namespace with running work per tick (never one call per pod). If the
cluster has no metrics API the sampler switches itself off and the SCI falls back to the
run's reservation, saying so in ``status.sci.method``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from carbonaware.api import labels
from carbonaware.errors import CarbonAwareError, KubernetesError, MetricSourceError
from carbonaware.k8s import NOT_FOUND, Kube
from carbonaware.metricsource.podmetrics import PodCpuAccumulator
from carbonaware.metricsource.reading import CpuReading

logger = logging.getLogger(__name__)


class UsageSampler:
    def __init__(self) -> None:
        self._pods: dict[tuple[str, str], PodCpuAccumulator] = {}
        self.namespaces: set[str] = set()
        self.available = True

    def watch_namespace(self, namespace: str) -> None:
        self.namespaces.add(namespace)

    async def sample(self, kube: Kube) -> None:
        if not self.available:
            return
        for namespace in sorted(self.namespaces):
            try:
                items = await kube.list_pod_metrics(namespace, labels.JOB_UID)
            except KubernetesError as exc:
                if exc.status == NOT_FOUND:
                    logger.info("no metrics.k8s.io API: SCI uses reservations for CPU")
                    self.available = False
                    return
                logger.warning("PodMetrics in %s: %s", namespace, exc)
                continue
            for item in items:
                meta = item.get("metadata", {})
                key = (namespace, str(meta.get("name")))
                try:
                    self._pods.setdefault(key, PodCpuAccumulator()).add_pod_metrics(item)
                except (MetricSourceError, CarbonAwareError, ValueError) as exc:
                    logger.debug("bad PodMetrics sample for %s/%s: %s", *key, exc)

    def reading(
        self, namespace: str, pod: str, start: datetime, end: datetime
    ) -> CpuReading | None:
        """Core-seconds of a finished pod, or None when no sample was taken.

        metrics-server shows a pod only from its second scrape of it with a new cAdvisor
        timestamp, and cAdvisor refreshes an idle container only every 10-15 s (later on a
        loaded node): a short or idle run may leave a single sample. Its rate, held over the
        run, is a far better figure than the reservation bound.
        """
        samples = self._pods.pop((namespace, pod), None)
        if not samples:
            return None
        return samples.reading(start, end)
