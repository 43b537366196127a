"""Figures of a cloud instance type for the calculator, and where each one came from.

An :class:`InstanceFigures` is what a source says about one type: the instance tables
(Cloud Carbon Footprint's data) or BoaviztAPI (fetched by the caller, outside this pure
package). :func:`resolve_instance` merges it with a component's own overrides and records
the origin of every input, so a report can show what was used and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from carbonaware.errors import SpecError
from carbonaware.sci.boundary_spec import ComponentSpec
from carbonaware.sci.coefficients import (
    DEFAULT_LIFESPAN_YEARS,
    GIB_PER_GB,
    embodied_kg_per_vcpu,
    lookup_instance_type,
    provider_average,
)

SOURCE_TABLE = "ccf-table"
SOURCE_BOUNDARY = "boundary"
SOURCE_DEFAULT = "default"
CatalogKey = tuple[str, str]
"""(cloud, instance type) as written in the boundary."""


@dataclass(frozen=True, slots=True)
class InstanceFigures:
    """One instance type as a source describes it; watts are per vCPU, memory in GiB."""

    name: str
    cloud: str
    vcpus: float
    memory_gib: float
    host_vcpus: float
    min_watts: float
    max_watts: float
    embodied_kg: float
    source: str
    detail: str = ""
    lifespan_years: float | None = None
    curve: tuple[tuple[float, float], ...] = ()
    """Whole-instance watts at load points ``((0.0, w0), (0.1, w10), ...)`` (BoaviztAPI)."""
    power_includes_memory: bool = False


@dataclass(frozen=True, slots=True)
class InputUsed:
    """One input of a component's estimate: its value, unit and origin."""

    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True, slots=True)
class ResolvedInstance:
    """The figures a component's instances are estimated with."""

    vcpus: float
    memory_gib: float
    host_vcpus: float
    min_watts: float
    max_watts: float
    embodied_kg: float
    lifespan_years: float
    inputs: tuple[InputUsed, ...]
    curve: tuple[tuple[float, float], ...] = ()
    power_includes_memory: bool = False


def table_figures(name: str, cloud: str | None) -> InstanceFigures | None:
    """The instance table's row for ``name`` (on ``cloud`` when given), as figures."""
    entry = lookup_instance_type(name, cloud)
    if entry is None:
        return None
    archs = "|".join(entry.microarchitectures) or "provider average"
    return InstanceFigures(
        name=entry.name,
        cloud=entry.provider,
        vcpus=float(entry.vcpus),
        memory_gib=entry.memory_gib,
        host_vcpus=float(entry.host_vcpus),
        min_watts=entry.watts.min_watts,
        max_watts=entry.watts.max_watts,
        embodied_kg=entry.embodied_kg,
        source=SOURCE_TABLE,
        detail=f"{entry.provider}:{entry.name} ({archs}; {entry.source})",
    )


def resolve_instance(
    component: ComponentSpec, catalog: Mapping[CatalogKey, InstanceFigures]
) -> ResolvedInstance:
    """Overrides from the component, else the catalog (BoaviztAPI), else the tables.

    A type nobody knows needs ``vcpus``; it then gets the provider's average watts, a
    per-vCPU share of TE (the tables' median) and its own vCPUs as the host.
    """
    name = component.instance_type or ""
    cloud = component.cloud
    figures = catalog.get((cloud or "", name)) or table_figures(name, cloud)
    inputs: list[InputUsed] = []

    def pick(field: str, unit: str, own: float | None, known: float | None, fallback: float | None,
             fallback_source: str = SOURCE_DEFAULT) -> float:  # fmt: skip
        if own is not None:
            value, source = own, SOURCE_BOUNDARY
        elif known is not None and figures is not None:
            value, source = known, figures.source
        elif fallback is not None:
            value, source = fallback, fallback_source
        else:
            raise SpecError(
                f"components ({component.name}): instance type {name!r} is in no table"
                f"{' for ' + cloud if cloud else ''}; give {field}"
            )
        inputs.append(InputUsed(field, value, unit, source))
        return value

    def listed(attribute: str) -> float | None:
        value = getattr(figures, attribute) if figures is not None else None
        return None if value is None else float(value)

    own_memory = component.memory_gib
    if component.memory_gb is not None:
        own_memory = component.memory_gb * GIB_PER_GB
    vcpus = pick("vcpus", "vCPU", component.vcpus, listed("vcpus"), None)
    average = provider_average(cloud)
    memory = pick("memoryGiB", "GiB", own_memory, listed("memory_gib"), 0.0)
    host = pick("hostVcpus", "vCPU", component.host_vcpus, listed("host_vcpus"), vcpus)
    min_watts = pick("minWatts", "W/vCPU", component.min_watts, listed("min_watts"),
                     average.watts.min_watts, f"ccf-average({average.provider})")  # fmt: skip
    max_watts = pick("maxWatts", "W/vCPU", component.max_watts, listed("max_watts"),
                     average.watts.max_watts, f"ccf-average({average.provider})")  # fmt: skip
    per_vcpu = embodied_kg_per_vcpu(cloud)
    embodied = pick("embodiedKgCO2e", "kgCO2e", component.embodied_kg_co2e,
                    listed("embodied_kg"), per_vcpu * host,
                    f"default-per-vcpu({per_vcpu:.2f}kg)")  # fmt: skip
    lifespan = pick("lifespanYears", "years", component.lifespan_years,
                    listed("lifespan_years"), DEFAULT_LIFESPAN_YEARS)  # fmt: skip
    if host < vcpus:
        raise SpecError(f"components ({component.name}): hostVcpus must be at least vcpus")
    if max_watts < min_watts:
        raise SpecError(f"components ({component.name}): maxWatts must be at least minWatts")
    if figures is not None and figures.detail:
        inputs.append(InputUsed(f"{figures.source} row", 0.0, figures.detail, figures.source))
    curve: tuple[tuple[float, float], ...] = ()
    if figures is not None and figures.curve and component.min_watts is None:
        curve = figures.curve
        points = ", ".join(f"{u:.0%}: {w:.1f} W" for u, w in curve)
        inputs.append(InputUsed("power curve", 0.0, points, figures.source))
    return ResolvedInstance(vcpus, memory, host, min_watts, max_watts, embodied, lifespan,
                            tuple(inputs), curve,
                            bool(curve) and figures is not None
                            and figures.power_includes_memory)  # fmt: skip
