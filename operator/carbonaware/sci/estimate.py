"""The per-run SCI estimate the operator records after a run: SCI = (E x I + M) per R.

Pure: the caller measures CPU usage or energy (``carbonaware.metricsource``), looks up the
grid intensity over the run and passes both in. Nothing here reads a clock, a file or the
network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from carbonaware.api.intensity import IntensityPoint
from carbonaware.sci.embodied import embodied_grams, lifespan_hours
from carbonaware.sci.machines import (
    MachineProfile,
    find_instance_type,
    machine_for_instance_type,
    machine_from_hardware,
    machine_from_server_hardware,
    provider_from_provider_id,
    pue_for_provider,
)
from carbonaware.sci.power import CurvePowerModel, clip_utilisation, memory_energy_kwh

__all__ = [
    "FunctionalUnit",
    "MachineProfile",
    "MeasuredEnergy",
    "RunIntensity",
    "RunUsage",
    "SciEstimate",
    "estimate_run",
    "find_instance_type",
    "machine_for_instance_type",
    "machine_from_hardware",
    "machine_from_server_hardware",
    "provider_from_provider_id",
    "pue_for_provider",
    "run_intensity",
    "time_weighted_mean",
]

ENERGY_MEASURED = "measured"
ENERGY_MODELLED = "modelled"
ENERGY_RESERVATION = "reservation"
# Providers whose values are not a report of the grid at that time: a replayed recording or a
# fixed table. A run priced with them says so in its method.
_REPLAYED = "trace"
_STATIC = "static"


@dataclass(frozen=True, slots=True)
class FunctionalUnit:
    """R: what the run's emissions are divided by (``1 run``, ``500 users``)."""

    name: str = "run"
    quantity: float = 1.0

    def __post_init__(self) -> None:
        if not self.quantity > 0:
            raise ValueError(f"functional unit quantity must be positive, got {self.quantity}")

    @property
    def text(self) -> str:
        """``500 users``, ``1728000 requests``: the quantity as written, never ``1.728e+06``."""
        quantity = format(Decimal(repr(float(self.quantity))).normalize(), "f")
        if "." in quantity:
            quantity = quantity.rstrip("0").rstrip(".")
        return f"{quantity} {self.name}"


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What a run used: wall time, CPU time and what it reserved on its machine.

    ``cpu_measured`` is False when no CPU measurement existed and ``cpu_core_seconds`` is
    the reservation held fully busy (an upper bound); the estimate then says
    ``energySource: reservation``.
    """

    duration_seconds: float
    cpu_core_seconds: float
    reserved_vcpus: float
    memory_gib: float = 0.0
    cpu_measured: bool = True

    def __post_init__(self) -> None:
        if self.duration_seconds < 0 or self.cpu_core_seconds < 0:
            raise ValueError("duration and CPU time must not be negative")
        if self.reserved_vcpus < 0 or self.memory_gib < 0:
            raise ValueError("reserved vCPUs and memory must not be negative")

    @property
    def used_vcpus(self) -> float:
        """Mean cores the run kept busy: CPU core-seconds / duration."""
        if self.duration_seconds <= 0:
            return 0.0
        return self.cpu_core_seconds / self.duration_seconds

    def charged_vcpus(self, capacity: float | None = None) -> float:
        """vCPUs the run is charged for: what it reserved, or more if it used more.

        What it used is bounded by the machine's ``capacity`` (a run cannot use more cores
        than its node has; a larger figure is measurement noise). The reservation is not a
        cap: a pod that requests 100m and keeps four cores busy is charged for four.
        """
        used = self.used_vcpus if capacity is None else min(self.used_vcpus, capacity)
        return max(self.reserved_vcpus, used)

    def utilisation(self, capacity: float | None = None) -> float:
        """u = CPU core-seconds / (charged vCPUs x duration), clipped to [0, 1]."""
        busy = self.charged_vcpus(capacity) * self.duration_seconds
        if busy <= 0:
            return 0.0
        return clip_utilisation(self.cpu_core_seconds / busy)


@dataclass(frozen=True, slots=True)
class MeasuredEnergy:
    """Energy a run's own meters reported (kWh, before PUE), e.g. Kepler's RAPL-based
    per-pod joules for CPU and DRAM and DCGM's GPU power. None means "not measured"."""

    cpu_kwh: float | None
    memory_kwh: float | None = None
    gpu_kwh: float | None = None
    source: str = "kepler"

    def __post_init__(self) -> None:
        for value in (self.cpu_kwh, self.memory_kwh, self.gpu_kwh):
            if value is not None and (value < 0 or not math.isfinite(value)):
                raise ValueError(f"measured energy must be finite and not negative, got {value}")


@dataclass(frozen=True, slots=True)
class RunIntensity:
    """I for a run: the time-weighted mean and what it rests on.

    ``kind`` is ``actual`` when every point covering the run was a reported value,
    ``forecast`` when none was, ``mixed`` otherwise; ``sources`` the providers that gave the
    points (the provider chain keeps each point's source).
    """

    mean: float
    sources: tuple[str, ...]
    kind: str
    forecast_seconds: float = 0.0

    @property
    def source(self) -> str:
        return "|".join(self.sources)

    @property
    def method(self) -> str:
        """The method fragment: ``intensity=actual(ukci)``, ``intensity=replayed-trace(trace)``."""
        names = set(self.sources)
        if names and all(name.startswith(_REPLAYED) for name in names):
            return f"intensity=replayed-trace-{self.kind}({self.source})"
        if names and all(name.startswith(_STATIC) for name in names):
            return f"intensity=static({self.source})"
        return f"intensity={self.kind}({self.source})"


def run_intensity(
    points: Iterable[IntensityPoint], start: datetime, end: datetime
) -> RunIntensity | None:
    """:func:`time_weighted_mean` over the run with the sources and kind of the points used."""
    ordered = list(points)
    mean = time_weighted_mean(ordered, start, end)
    if mean is None:
        return None
    used = [
        p
        for p in ordered
        if (p.covers(start) if end <= start else min(p.end, end) > max(p.start, start))
    ]
    forecast_seconds = sum(
        max(0.0, (min(p.end, end) - max(p.start, start)).total_seconds())
        for p in used
        if p.is_forecast
    )
    forecasts = sum(1 for p in used if p.is_forecast)
    kind = "actual" if forecasts == 0 else "forecast" if forecasts == len(used) else "mixed"
    sources = tuple(dict.fromkeys(p.source for p in used))
    return RunIntensity(mean, sources, kind, forecast_seconds)


@dataclass(frozen=True, slots=True)
class SciEstimate:
    """One run's SCI; the fields mirror the CRD's ``status.sci``.

    ``energy_kwh = (cpu_kwh + memory_kwh + gpu_kwh) x PUE``; the parts are before PUE.
    """

    energy_kwh: float
    operational_grams: float
    embodied_grams: float
    total_grams: float
    per_unit_grams: float
    functional_unit: str
    avoided_grams: float | None
    method: str
    cpu_core_seconds: float
    intensity_g_per_kwh: float
    cpu_kwh: float = 0.0
    memory_kwh: float = 0.0
    gpu_kwh: float | None = None
    energy_source: str = ENERGY_MODELLED
    intensity_source: str | None = None

    def to_status(self) -> dict[str, float | str | None]:
        """The camelCase mapping written to ``status.sci``."""
        return {
            "energyKWh": self.energy_kwh,
            "cpuKWh": self.cpu_kwh,
            "memoryKWh": self.memory_kwh,
            "gpuKWh": self.gpu_kwh,
            "operationalGrams": self.operational_grams,
            "embodiedGrams": self.embodied_grams,
            "totalGrams": self.total_grams,
            "perUnitGrams": self.per_unit_grams,
            "functionalUnit": self.functional_unit,
            "avoidedGrams": self.avoided_grams,
            "method": self.method,
            "cpuCoreSeconds": self.cpu_core_seconds,
            "energySource": self.energy_source,
            "intensitySource": self.intensity_source,
        }


def estimate_run(
    usage: RunUsage,
    machine: MachineProfile,
    intensity: float | RunIntensity,
    functional_unit: FunctionalUnit,
    avoided_intensity: float | None = None,
    pue: float = 1.0,
    *,
    measured: MeasuredEnergy | None = None,
) -> SciEstimate:
    """SCI of one run on ``machine`` at grid intensity ``intensity`` (gCO2e/kWh).

    E = (CPU energy + memory + GPU) x PUE. CPU energy is ``measured.cpu_kwh`` when the
    cluster metered it, else the power model for the charged vCPUs (what the run reserved,
    or the cores it used if more, up to the machine's) at the run's utilisation; memory is
    measured DRAM energy or the reserved GiB at CCF's coefficient. I = the intensity passed
    in (the run's time-weighted mean); M = TE x (TR/EL) x (RR/TR) with TR the run's duration
    and RR its charged vCPUs. ``avoided_intensity`` is the intensity of the window that would
    have started at creation time: ``avoidedGrams`` is the same energy at that intensity minus
    the actual operational grams (negative when the run ended up on a dirtier grid).
    """
    if pue < 1.0:
        raise ValueError(f"PUE is at least 1, got {pue}")
    if isinstance(intensity, RunIntensity):
        details: RunIntensity | None = intensity
        intensity_g_per_kwh = intensity.mean
    else:
        details, intensity_g_per_kwh = None, float(intensity)
    hours = usage.duration_seconds / 3600.0
    vcpus = usage.charged_vcpus(float(machine.vcpus))
    parts = []
    if measured is not None and measured.cpu_kwh is not None:
        cpu_kwh, energy_source = measured.cpu_kwh, ENERGY_MEASURED
        parts.append(f"cpu-energy={measured.source}")
    else:
        # CCF linear model (or the TDP curve) for the charged vCPUs at the run's utilisation.
        cpu_kwh = machine.power.watts(vcpus, usage.utilisation(machine.vcpus)) * hours / 1000.0
        energy_source = ENERGY_MODELLED if usage.cpu_measured else ENERGY_RESERVATION
        parts.append(machine.power.label)
    if measured is not None and measured.memory_kwh is not None:
        memory_kwh = measured.memory_kwh
        parts.append(f"memory-energy={measured.source}")
    elif (
        isinstance(machine.power, CurvePowerModel)
        and machine.power.includes_memory
        and energy_source != ENERGY_MEASURED
    ):
        # The instance's power curve (BoaviztAPI) already counts its memory.
        memory_kwh = 0.0
    else:
        memory_kwh = memory_energy_kwh(usage.memory_gib, hours)
        if usage.memory_gib > 0:
            parts.append("memory=ccf")
    gpu_kwh = measured.gpu_kwh if measured is not None else None
    if gpu_kwh is not None:
        parts.append("gpu-energy=dcgm")
    energy_kwh = (cpu_kwh + memory_kwh + (gpu_kwh or 0.0)) * pue
    # GSF SCI: operational emissions O = E x I.
    operational = energy_kwh * intensity_g_per_kwh
    embodied = embodied_grams(
        machine.embodied_kg,
        hours,
        lifespan_hours(machine.lifespan_years),
        min(vcpus, float(machine.embodied_vcpus)),
        machine.embodied_vcpus,
    )
    # GSF SCI: SCI = (O + M) per R.
    total = operational + embodied
    avoided = None
    if avoided_intensity is not None:
        # The two intensities are time-weighted means over different windows; when they
        # agree but for float noise nothing was avoided (not 3e-21 g).
        difference = avoided_intensity - intensity_g_per_kwh
        if math.isclose(avoided_intensity, intensity_g_per_kwh, rel_tol=1e-9, abs_tol=1e-9):
            difference = 0.0
        avoided = energy_kwh * difference
    parts += [f"pue={pue:g}", f"embodied={machine.embodied_source}"]
    if energy_source == ENERGY_RESERVATION:
        parts.append("cpu=reservation-upper-bound")
    if details is not None:
        parts.append(details.method)
    return SciEstimate(
        energy_kwh=energy_kwh,
        operational_grams=operational,
        embodied_grams=embodied,
        total_grams=total,
        per_unit_grams=total / functional_unit.quantity,
        functional_unit=functional_unit.text,
        avoided_grams=avoided,
        method=";".join(parts),
        cpu_core_seconds=usage.cpu_core_seconds,
        intensity_g_per_kwh=intensity_g_per_kwh,
        cpu_kwh=cpu_kwh,
        memory_kwh=memory_kwh,
        gpu_kwh=gpu_kwh,
        energy_source=energy_source,
        intensity_source=details.source if details is not None else None,
    )


def time_weighted_mean(
    points: Iterable[IntensityPoint], start: datetime, end: datetime
) -> float | None:
    """Mean intensity over ``[start, end)``, each point weighted by its overlap with it.

    Gaps between points are left out of the mean (not counted as zero). An empty window
    (``end <= start``) takes the point covering ``start``. None when no point overlaps.
    """
    ordered = list(points)
    if end <= start:
        for point in ordered:
            if point.covers(start):
                return point.intensity
        return None
    weighted = 0.0
    covered = 0.0
    for point in ordered:
        overlap = (min(point.end, end) - max(point.start, start)).total_seconds()
        if overlap > 0:
            weighted += point.intensity * overlap
            covered += overlap
    if covered <= 0:
        return None
    return weighted / covered
