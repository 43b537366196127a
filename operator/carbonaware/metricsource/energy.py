"""Measured energy of a run from Prometheus: Kepler's per-pod joules and DCGM's GPU power.

Where the cluster runs these exporters, E is what they metered instead of a power model:

- Kepler 0.10 and later: ``kepler_pod_cpu_joules_total{pod_namespace, pod_name, zone, state}``,
  a counter per RAPL zone. CPU energy is the ``package`` zone (cores and uncore), memory the
  ``dram`` zone. A pod has a series per ``state`` (running, terminated) carrying the same
  counter, so the increase is taken per state and the largest kept.
- Kepler before 0.10: ``kepler_container_package_joules_total`` and
  ``kepler_container_dram_joules_total{container_namespace, pod_name, container_name, mode}``,
  summed over the pod's containers and both modes (``dynamic`` and its share of ``idle``).
- NVIDIA DCGM exporter: ``DCGM_FI_DEV_POWER_USAGE{namespace, pod, ...}``, a gauge in watts per
  GPU assigned to the pod; energy is its mean over the run times the run's duration.

Joules become kWh by dividing by 3.6e6 (1 kWh = 3,600,000 J).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from carbonaware.metricsource.prometheus import PrometheusCpuReader, range_duration, selector

JOULES_PER_KWH = 3.6e6
KEPLER_POD = "kepler_pod_cpu_joules_total"
KEPLER_LEGACY_PACKAGE = "kepler_container_package_joules_total"
KEPLER_LEGACY_DRAM = "kepler_container_dram_joules_total"
DCGM_POWER = "DCGM_FI_DEV_POWER_USAGE"
SOURCE_KEPLER = "kepler"
SOURCE_KEPLER_LEGACY = "kepler-0.7"


@dataclass(frozen=True, slots=True)
class PodEnergy:
    """kWh a pod's meters reported over a run; None where that meter had no series."""

    cpu_kwh: float | None
    memory_kwh: float | None
    gpu_kwh: float | None
    source: str

    @property
    def empty(self) -> bool:
        return self.cpu_kwh is None and self.memory_kwh is None and self.gpu_kwh is None


class PrometheusEnergyReader:
    """Reads a pod's metered energy through a :class:`PrometheusCpuReader`'s queries."""

    def __init__(self, reader: PrometheusCpuReader) -> None:
        self._reader = reader

    async def _kwh(self, promql: str, at: datetime) -> float | None:
        joules = await self._reader.scalar_query(promql, at)
        return None if joules is None else max(0.0, joules) / JOULES_PER_KWH

    async def kepler(
        self, namespace: str, pod: str, start: datetime, end: datetime
    ) -> tuple[float | None, float | None, str]:
        """(CPU kWh, DRAM kWh, source) from Kepler's pod or (pre-0.10) container counters."""
        window = range_duration(start, end)
        zones = []
        for zone in ("package", "dram"):
            labels = {"pod_namespace": namespace, "pod_name": pod, "zone": zone}
            series = selector(KEPLER_POD, labels)
            # One counter per state (running, terminated): the same energy, counted once.
            promql = f"max(sum by (state) (increase({series}[{window}])))"
            zones.append(await self._kwh(promql, end))
        if zones[0] is not None:
            return zones[0], zones[1], SOURCE_KEPLER
        legacy = []
        for metric in (KEPLER_LEGACY_PACKAGE, KEPLER_LEGACY_DRAM):
            series = selector(metric, {"container_namespace": namespace, "pod_name": pod})
            legacy.append(await self._kwh(f"sum(increase({series}[{window}]))", end))
        return legacy[0], legacy[1], SOURCE_KEPLER_LEGACY

    async def dcgm(self, namespace: str, pod: str, start: datetime, end: datetime) -> float | None:
        """GPU kWh: the mean of each GPU's power over the run, summed, times the duration."""
        series = selector(DCGM_POWER, {"namespace": namespace, "pod": pod})
        watts = await self._reader.scalar_query(
            f"sum(avg_over_time({series}[{range_duration(start, end)}]))", end
        )
        if watts is None:
            return None
        # E = mean power x time: W x s = J.
        return max(0.0, watts) * max(0.0, (end - start).total_seconds()) / JOULES_PER_KWH

    async def pod_energy(
        self, namespace: str, pod: str, start: datetime, end: datetime
    ) -> PodEnergy:
        cpu, memory, source = await self.kepler(namespace, pod, start, end)
        gpu = await self.dcgm(namespace, pod, start, end)
        return PodEnergy(cpu, memory, gpu, source)
