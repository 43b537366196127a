"""The per-run SCI estimate the operator records after a run: SCI = (E x I + M) per R.

Pure: the caller measures CPU usage (``carbonaware.metricsource``), looks up the grid
intensity over the run and passes both in. Nothing here reads a clock, a file or the network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from carbonaware.api.intensity import IntensityPoint
from carbonaware.api.servertarget import Hardware
from carbonaware.errors import SpecError
from carbonaware.sci.coefficients import (
    DEFAULT_LIFESPAN_YEARS,
    InstanceType,
    default_embodied_kg,
    instance_types,
    provider_average,
    provider_coefficients,
    watts_for_microarchitectures,
)
from carbonaware.sci.embodied import embodied_grams, lifespan_hours
from carbonaware.sci.power import (
    LinearPowerModel,
    PowerModel,
    TdpPowerModel,
    clip_utilisation,
    memory_energy_kwh,
)


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
        return f"{self.quantity:g} {self.name}"


@dataclass(frozen=True, slots=True)
class RunUsage:
    """What a run used: wall time, CPU time and what it reserved on its machine."""

    duration_seconds: float
    cpu_core_seconds: float
    reserved_vcpus: float
    memory_gib: float = 0.0

    def __post_init__(self) -> None:
        if self.duration_seconds < 0 or self.cpu_core_seconds < 0:
            raise ValueError("duration and CPU time must not be negative")
        if self.reserved_vcpus < 0 or self.memory_gib < 0:
            raise ValueError("reserved vCPUs and memory must not be negative")

    @property
    def charged_vcpus(self) -> float:
        """vCPUs the run is charged for: its reservation, or what it used if it reserved none."""
        if self.reserved_vcpus > 0:
            return self.reserved_vcpus
        if self.duration_seconds <= 0:
            return 0.0
        return self.cpu_core_seconds / self.duration_seconds

    @property
    def utilisation(self) -> float:
        """u = CPU core-seconds / (charged vCPUs x duration), clipped to [0, 1]."""
        capacity = self.charged_vcpus * self.duration_seconds
        if capacity <= 0:
            return 0.0
        return clip_utilisation(self.cpu_core_seconds / capacity)


@dataclass(frozen=True, slots=True)
class MachineProfile:
    """The machine a run ran on, as far as the SCI estimate needs it.

    ``vcpus`` is the machine (node or server) itself; ``embodied_vcpus`` is the number of
    vCPUs its embodied emissions ``embodied_kg`` are shared over: the host server for a
    cloud instance type (CCF: the family's largest size), the machine itself otherwise.
    """

    name: str
    vcpus: int
    power: PowerModel
    memory_gib: float
    embodied_kg: float
    embodied_vcpus: int
    lifespan_years: float = DEFAULT_LIFESPAN_YEARS
    provider: str | None = None
    embodied_source: str = "ccf"

    def __post_init__(self) -> None:
        if self.vcpus <= 0 or self.embodied_vcpus <= 0:
            raise ValueError("a machine has at least one vCPU")
        if self.lifespan_years <= 0:
            raise ValueError("a machine's lifespan must be positive")


@dataclass(frozen=True, slots=True)
class SciEstimate:
    """One run's SCI; the fields mirror the CRD's ``status.sci``."""

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

    def to_status(self) -> dict[str, float | str | None]:
        """The camelCase mapping written to ``status.sci``."""
        return {
            "energyKWh": self.energy_kwh,
            "operationalGrams": self.operational_grams,
            "embodiedGrams": self.embodied_grams,
            "totalGrams": self.total_grams,
            "perUnitGrams": self.per_unit_grams,
            "functionalUnit": self.functional_unit,
            "avoidedGrams": self.avoided_grams,
            "method": self.method,
            "cpuCoreSeconds": self.cpu_core_seconds,
        }


def estimate_run(
    usage: RunUsage,
    machine: MachineProfile,
    intensity_g_per_kwh: float,
    functional_unit: FunctionalUnit,
    avoided_intensity: float | None = None,
    pue: float = 1.0,
) -> SciEstimate:
    """SCI of one run on ``machine`` at grid intensity ``intensity_g_per_kwh`` (gCO2e/kWh).

    E = (CPU energy of the charged vCPUs at the run's utilisation + reserved memory) x PUE;
    I = the intensity passed in (the run's time-weighted mean); M = TE x (TR/EL) x (RR/TR)
    with TR the run's duration and RR its charged vCPUs. ``avoided_intensity`` is the
    intensity of the window that would have started at creation time: ``avoidedGrams`` is
    the same energy at that intensity minus the actual operational grams (negative when the
    run ended up on a dirtier grid).
    """
    if pue < 1.0:
        raise ValueError(f"PUE is at least 1, got {pue}")
    hours = usage.duration_seconds / 3600.0
    vcpus = usage.charged_vcpus
    cpu_kwh = machine.power.watts(vcpus, usage.utilisation) * hours / 1000.0
    memory_kwh = memory_energy_kwh(usage.memory_gib, hours)
    energy_kwh = (cpu_kwh + memory_kwh) * pue
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
    parts = [machine.power.label]
    if usage.memory_gib > 0:
        parts.append("memory=ccf")
    parts += [f"pue={pue:g}", f"embodied={machine.embodied_source}"]
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


def _normalise_instance_type(name: str) -> str:
    """``Standard_D2s_v3`` and ``D2s v3`` compare equal; AWS/GCP names are already canonical."""
    key = name.strip().lower()
    if key.startswith("standard_"):
        key = key[len("standard_") :]
    return key.replace("_", " ")


def find_instance_type(name: str) -> InstanceType | None:
    """The table entry for an instance type label (``m5.xlarge``, ``Standard_D2_v2``), if known."""
    wanted = _normalise_instance_type(name)
    for entry in instance_types().values():
        if _normalise_instance_type(entry.name) == wanted:
            return entry
    return None


def provider_from_provider_id(provider_id: str | None) -> str | None:
    """``aws``, ``gcp`` or ``azure`` from a Node's ``spec.providerID`` (``aws:///eu-west-2a/i-...``)."""
    if not provider_id:
        return None
    scheme = provider_id.split(":", 1)[0].lower()
    return {"aws": "aws", "gce": "gcp", "azure": "azure"}.get(scheme)


def pue_for_provider(provider: str | None, on_premises_pue: float = 1.0) -> float:
    """CCF's published PUE for a cloud provider; ``on_premises_pue`` for anything else."""
    table = provider_coefficients()
    key = (provider or "").strip().lower()
    return table[key].pue if key in table else on_premises_pue


def machine_for_instance_type(
    instance_type: str | None,
    *,
    provider: str | None = None,
    vcpus: int | None = None,
    memory_gib: float | None = None,
) -> MachineProfile:
    """A cloud node's profile from its instance type (``node.kubernetes.io/instance-type``).

    Known types use their microarchitecture's CCF min/max watts per vCPU (or the
    provider average) and CCF's embodied emissions of the host. Unknown types need the
    node's ``vcpus``: they get the provider's average watts, the default embodied model
    for ``memory_gib`` and are treated as a whole machine for the embodied share.
    """
    entry = find_instance_type(instance_type) if instance_type else None
    if entry is not None:
        watts, known = watts_for_microarchitectures(entry.microarchitectures, entry.provider)
        label = (
            f"ccf-linear({entry.provider}:{'|'.join(entry.microarchitectures)})"
            if known
            else f"ccf-linear({entry.provider})"
        )
        return MachineProfile(
            name=entry.name,
            vcpus=entry.vcpus,
            power=LinearPowerModel(watts.min_watts, watts.max_watts, label),
            memory_gib=entry.memory_gib,
            embodied_kg=entry.embodied_kg,
            embodied_vcpus=entry.host_vcpus,
            provider=entry.provider,
            embodied_source="ccf",
        )
    if vcpus is None or vcpus <= 0:
        raise SpecError(
            f"instance type {instance_type!r} is not in the coefficient table; "
            "the node's vCPU count is needed to estimate its SCI"
        )
    average = provider_average(provider)
    return MachineProfile(
        name=instance_type or "unknown",
        vcpus=vcpus,
        power=LinearPowerModel(
            average.watts.min_watts, average.watts.max_watts, f"ccf-linear({average.provider})"
        ),
        memory_gib=memory_gib or 0.0,
        embodied_kg=default_embodied_kg(memory_gib),
        embodied_vcpus=vcpus,
        provider=provider,
        embodied_source="ccf-default",
    )


def machine_from_hardware(
    *,
    vcpus: int,
    min_watts: float | None = None,
    max_watts: float | None = None,
    tdp_watts: float | None = None,
    memory_gib: float | None = None,
    embodied_kg: float | None = None,
    lifespan_years: float | None = None,
    name: str = "server",
) -> MachineProfile:
    """A profile from a ServerTarget's ``hardware`` block (whole-machine figures).

    ``minWatts``/``maxWatts`` (the whole machine idle and at full load) give a linear model
    per vCPU; ``tdpWatts`` the TDP curve. With neither, the CCF average per vCPU for an
    unknown provider is used. Without ``embodiedKgCO2e``, CCF's default server model for
    ``memoryGiB``; without ``lifespanYears``, 4 years.
    """
    if vcpus <= 0:
        raise SpecError("hardware.vcpus must be at least 1")
    power: PowerModel
    if min_watts is not None or max_watts is not None:
        if min_watts is None or max_watts is None or max_watts < min_watts or min_watts < 0:
            raise SpecError("hardware.minWatts and hardware.maxWatts must both be set, min <= max")
        power = LinearPowerModel(min_watts / vcpus, max_watts / vcpus, "linear(hardware)")
    elif tdp_watts is not None:
        if tdp_watts <= 0:
            raise SpecError("hardware.tdpWatts must be positive")
        power = TdpPowerModel(tdp_watts, vcpus, "tdp-curve(hardware)")
    else:
        average = provider_average(None)
        power = LinearPowerModel(
            average.watts.min_watts, average.watts.max_watts, f"ccf-linear({average.provider})"
        )
    return MachineProfile(
        name=name,
        vcpus=vcpus,
        power=power,
        memory_gib=memory_gib or 0.0,
        embodied_kg=embodied_kg if embodied_kg is not None else default_embodied_kg(memory_gib),
        embodied_vcpus=vcpus,
        lifespan_years=lifespan_years or DEFAULT_LIFESPAN_YEARS,
        provider=None,
        embodied_source="hardware" if embodied_kg is not None else "ccf-default",
    )


def machine_from_server_hardware(hardware: Hardware, name: str = "server") -> MachineProfile:
    """:func:`machine_from_hardware` for a ServerTarget's parsed ``spec.hardware``."""
    return machine_from_hardware(
        vcpus=hardware.vcpus,
        min_watts=hardware.min_watts,
        max_watts=hardware.max_watts,
        tdp_watts=hardware.tdp_watts,
        memory_gib=hardware.memory_gi_b,
        embodied_kg=hardware.embodied_kg_c_o2e,
        lifespan_years=hardware.lifespan_years,
        name=name,
    )
