"""The SCI of a software boundary: the model behind ``carbonaware sci FILE``.

:func:`evaluate_boundary` turns a parsed :class:`BoundarySpec` into per-component energy (by
part: CPU, memory, storage, network), operational and embodied grams and the SCI per R.
Instance figures come from the tables, or from ``catalog`` (BoaviztAPI answers fetched by the
caller); every input used is recorded with its origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from carbonaware.sci.boundary_spec import (
    BoundarySpec,
    ComponentSpec,
    CpuSpec,
    EmbodiedSpec,
    FunctionalUnitSpec,
    MemorySpec,
    NetworkSpec,
    StorageSpec,
    parse_boundary,
)
from carbonaware.sci.embodied import embodied_grams, lifespan_hours
from carbonaware.sci.estimate import FunctionalUnit
from carbonaware.sci.instances import (
    CatalogKey,
    InputUsed,
    InstanceFigures,
    ResolvedInstance,
    resolve_instance,
)
from carbonaware.sci.power import LinearPowerModel, interpolate_curve, memory_energy_kwh

__all__ = [
    "BoundaryResult",
    "BoundarySpec",
    "ComponentResult",
    "ComponentSpec",
    "CpuSpec",
    "EmbodiedSpec",
    "EnergyPart",
    "FunctionalUnitSpec",
    "MemorySpec",
    "NetworkSpec",
    "StorageSpec",
    "evaluate_boundary",
    "parse_boundary",
]


@dataclass(frozen=True, slots=True)
class EnergyPart:
    """One contribution to a component's energy (``cpu``, ``memory``...), before PUE."""

    part: str
    energy_kwh: float
    method: str


@dataclass(frozen=True, slots=True)
class ComponentResult:
    name: str
    energy_kwh: float
    intensity: float
    operational_grams: float
    embodied_grams: float
    total_grams: float
    parts: tuple[EnergyPart, ...]
    count: int = 1
    pue: float = 1.0
    instance_type: str | None = None
    cloud: str | None = None
    inputs: tuple[InputUsed, ...] = field(default_factory=tuple)

    def part_kwh(self, part: str) -> float:
        """kWh of one part (``cpu``, ``memory``, ``storage``, ``network``, ``total``) before PUE."""
        return sum(p.energy_kwh for p in self.parts if p.part == part)


@dataclass(frozen=True, slots=True)
class BoundaryResult:
    name: str | None
    components: tuple[ComponentResult, ...]
    functional_unit: FunctionalUnit
    functional_unit_description: str | None
    energy_kwh: float
    operational_grams: float
    embodied_grams: float
    total_grams: float
    per_unit_grams: float


def _instance_parts(
    component: ComponentSpec, resolved: ResolvedInstance, memory_watts_per_gib: float
) -> tuple[list[EnergyPart], float]:
    """CPU and memory energy of one instance, and its M, from resolved figures."""
    parts: list[EnergyPart] = []
    hours = component.hours
    if component.cpu is None and component.energy_kwh is None:
        utilisation = component.utilisation or 0.0
        if resolved.curve:
            watts = interpolate_curve(resolved.curve, utilisation)
            label = f"boavizta-curve({utilisation:.0%})"
        else:
            model = LinearPowerModel(resolved.min_watts, resolved.max_watts, "ccf-linear")
            # CCF methodology "Compute": W = vCPUs x (minW + u x (maxW - minW)).
            watts = model.watts(resolved.vcpus, utilisation)
            label = f"ccf-linear({utilisation:.0%})"
        parts.append(EnergyPart("cpu", watts * hours / 1000.0, label))
    separate_memory = not resolved.power_includes_memory
    if (
        component.memory is None
        and component.energy_kwh is None
        and resolved.memory_gib > 0
        and separate_memory
    ):
        kwh = memory_energy_kwh(resolved.memory_gib, hours, memory_watts_per_gib)
        parts.append(EnergyPart("memory", kwh, f"ccf-memory({memory_watts_per_gib:g} W/GiB)"))
    embodied = 0.0
    if component.embodied is None:
        # GSF SCI: M = TE x (TR/EL) x (RR/TR), the instance's vCPUs of its host's.
        embodied = embodied_grams(resolved.embodied_kg, hours,
                                  lifespan_hours(resolved.lifespan_years), resolved.vcpus,
                                  resolved.host_vcpus)  # fmt: skip
    return parts, embodied


def _component_result(
    component: ComponentSpec,
    boundary: BoundarySpec,
    catalog: Mapping[CatalogKey, InstanceFigures],
) -> ComponentResult:
    parts: list[EnergyPart] = []
    inputs: tuple[InputUsed, ...] = ()
    embodied = 0.0
    if component.energy_kwh is not None:
        parts.append(EnergyPart("total", component.energy_kwh, "stated"))
    if component.instance_type is not None:
        resolved = resolve_instance(component, catalog)
        instance_parts, embodied = _instance_parts(
            component, resolved, boundary.memory_watts_per_gib
        )
        parts += instance_parts
        inputs = resolved.inputs
        if component.utilisation is not None:
            inputs += (InputUsed("utilisation", component.utilisation, "", "boundary"),)
    if component.cpu is not None:
        parts.append(EnergyPart("cpu", *component.cpu.energy(component.hours)))
    if component.memory is not None:
        parts.append(EnergyPart("memory", *component.memory.energy(component.hours)))
    if component.storage is not None:
        parts.append(EnergyPart("storage", *component.storage.energy(component.hours)))
    count = component.count
    # Every part is per instance, times count; network traffic is the component's as a whole.
    parts = [EnergyPart(p.part, p.energy_kwh * count, p.method) for p in parts]
    if component.network is not None:
        parts.append(EnergyPart("network", *component.network.energy()))
    pue = component.pue if component.pue is not None else boundary.pue
    energy = sum(part.energy_kwh for part in parts) * pue
    intensity = component.intensity if component.intensity is not None else boundary.intensity
    assert intensity is not None  # guaranteed by BoundarySpec._check
    # GSF SCI: operational emissions O = E x I.
    operational = energy * intensity
    if component.embodied is not None:
        spec = component.embodied
        reserved_hours = spec.reserved_hours if spec.reserved_hours is not None else component.hours
        embodied = embodied_grams(
            spec.total_kg_co2e,
            reserved_hours,
            spec.expected_lifespan_hours(),
            spec.reserved_resources,
            spec.total_resources,
        )
    embodied *= count
    return ComponentResult(
        name=component.name,
        energy_kwh=energy,
        intensity=intensity,
        operational_grams=operational,
        embodied_grams=embodied,
        total_grams=operational + embodied,
        parts=tuple(parts),
        count=count,
        pue=pue,
        instance_type=component.instance_type,
        cloud=component.cloud,
        inputs=inputs,
    )


def evaluate_boundary(
    boundary: BoundarySpec, catalog: Mapping[CatalogKey, InstanceFigures] | None = None
) -> BoundaryResult:
    """SCI of every component and of the whole boundary per R.

    ``catalog`` holds instance figures from another source (BoaviztAPI), keyed by
    (cloud, instance type) as written; types not in it come from the tables.
    """
    known = catalog or {}
    components = tuple(_component_result(c, boundary, known) for c in boundary.components)
    unit = FunctionalUnit(boundary.functional_unit.name, boundary.functional_unit.quantity)
    total = sum(c.total_grams for c in components)
    return BoundaryResult(
        name=boundary.name,
        components=components,
        functional_unit=unit,
        functional_unit_description=boundary.functional_unit.description,
        energy_kwh=sum(c.energy_kwh for c in components),
        operational_grams=sum(c.operational_grams for c in components),
        embodied_grams=sum(c.embodied_grams for c in components),
        total_grams=total,
        # GSF SCI: the score is the boundary's emissions per functional unit R.
        per_unit_grams=total / unit.quantity,
    )
