"""A software boundary described in YAML, and its SCI: the model behind ``carbonaware sci FILE``.

A boundary is a list of components (servers, clients, network), each with the time it runs
and either a power model (TDP curve or coefficient, CCF min/max watts per core, memory,
storage, network) or energies stated directly in kWh, so that published case studies can be
reproduced from their own intermediate figures. Field names are camelCase like the CRDs;
unknown fields are rejected with the path of the field at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from carbonaware.errors import SpecError
from carbonaware.sci.coefficients import (
    DEFAULT_LIFESPAN_YEARS,
    MEMORY_WATTS_PER_GIB,
    NETWORK_KWH_PER_GB,
)
from carbonaware.sci.embodied import embodied_grams, lifespan_hours
from carbonaware.sci.estimate import FunctionalUnit
from carbonaware.sci.power import (
    LinearPowerModel,
    memory_energy_kwh,
    network_energy_kwh,
    storage_energy_kwh,
    tdp_coefficient,
)


class _Spec(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class CpuSpec(_Spec):
    """Processor energy: a TDP with a coefficient or utilisation, min/max watts per core, or kWh."""

    tdp_watts: float | None = Field(None, gt=0, description="Thermal design power of one chip.")
    chips: float = Field(1.0, gt=0, description="Number of chips the TDP applies to.")
    coefficient: float | None = Field(None, ge=0, description="Fraction of TDP drawn.")
    utilisation: float | None = Field(None, ge=0, le=1, description="Mean CPU utilisation, 0..1.")
    min_watts: float | None = Field(None, ge=0, description="Watts per core at 0 % utilisation.")
    max_watts: float | None = Field(None, ge=0, description="Watts per core at 100 % utilisation.")
    cores: float = Field(1.0, gt=0, description="Cores (vCPUs) the min/max watts apply to.")
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        linear = self.min_watts is not None or self.max_watts is not None
        chosen = [self.tdp_watts is not None, linear, self.energy_kwh is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of tdpWatts, minWatts/maxWatts or energyKWh")
        if self.tdp_watts is not None:
            if (self.coefficient is None) == (self.utilisation is None):
                raise ValueError("with tdpWatts give exactly one of coefficient or utilisation")
            if "cores" in self.model_fields_set:
                raise ValueError("cores applies to minWatts/maxWatts; a TDP is scaled by chips")
        if linear:
            if self.min_watts is None or self.max_watts is None:
                raise ValueError("minWatts and maxWatts go together")
            if self.max_watts < self.min_watts:
                raise ValueError("maxWatts must be at least minWatts")
            if self.utilisation is None or self.coefficient is not None:
                raise ValueError("with minWatts/maxWatts give utilisation (and no coefficient)")
        if self.energy_kwh is not None and (
            self.coefficient is not None or self.utilisation is not None
        ):
            raise ValueError("energyKWh is stated as is: drop coefficient and utilisation")
        return self

    def energy(self, hours: float) -> tuple[float, str]:
        """kWh over ``hours`` and a short name of the model used."""
        if self.energy_kwh is not None:
            return self.energy_kwh, "stated"
        if self.tdp_watts is not None:
            if self.coefficient is not None:
                factor, label = self.coefficient, f"tdp x {self.coefficient:g}"
            else:
                utilisation = self.utilisation or 0.0
                factor, label = tdp_coefficient(utilisation), f"tdp-curve({utilisation:.0%})"
            # Teads/GSF: E = hours x chips x TDP x coefficient(u).
            return hours * self.chips * self.tdp_watts * factor / 1000.0, label
        model = LinearPowerModel(self.min_watts or 0.0, self.max_watts or 0.0, "ccf-linear")
        utilisation = self.utilisation or 0.0
        return model.watts(self.cores, utilisation) * hours / 1000.0, "ccf-linear"


class MemorySpec(_Spec):
    """DRAM energy: GiB at CCF's 0.392 W/GiB, a power in watts (times a coefficient), or kWh."""

    gib: float | None = Field(None, ge=0)
    watts_per_gib: float = Field(MEMORY_WATTS_PER_GIB, ge=0)
    watts: float | None = Field(None, ge=0)
    coefficient: float = Field(1.0, ge=0)
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        if sum(v is not None for v in (self.gib, self.watts, self.energy_kwh)) != 1:
            raise ValueError("give exactly one of gib, watts or energyKWh")
        return self

    def energy(self, hours: float) -> tuple[float, str]:
        if self.energy_kwh is not None:
            return self.energy_kwh, "stated"
        if self.watts is not None:
            return hours * self.watts * self.coefficient / 1000.0, f"watts x {self.coefficient:g}"
        return memory_energy_kwh(self.gib or 0.0, hours, self.watts_per_gib), "ccf-memory"


class NetworkSpec(_Spec):
    """Network energy: gigabytes moved at CCF's 0.001 kWh/GB, or kWh."""

    gb: float | None = Field(None, ge=0)
    kwh_per_gb: float = Field(NETWORK_KWH_PER_GB, ge=0, alias="kwhPerGb")
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        if (self.gb is None) == (self.energy_kwh is None):
            raise ValueError("give exactly one of gb or energyKWh")
        return self

    def energy(self) -> tuple[float, str]:
        if self.energy_kwh is not None:
            return self.energy_kwh, "stated"
        return network_energy_kwh(self.gb or 0.0, self.kwh_per_gb), "ccf-network"


class StorageSpec(_Spec):
    """Storage energy: allocated SSD/HDD terabytes at CCF's Wh per TB-hour, or kWh."""

    ssd_tb: float = Field(0.0, ge=0, alias="ssdTb")
    hdd_tb: float = Field(0.0, ge=0, alias="hddTb")
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        if self.energy_kwh is not None and (self.ssd_tb or self.hdd_tb):
            raise ValueError("give either ssdTb/hddTb or energyKWh")
        return self

    def energy(self, hours: float) -> tuple[float, str]:
        if self.energy_kwh is not None:
            return self.energy_kwh, "stated"
        return storage_energy_kwh(self.ssd_tb, self.hdd_tb, hours), "ccf-storage"


class EmbodiedSpec(_Spec):
    """M = TE x (TR/EL) x (RR/TR) for the hardware a component runs on."""

    total_kg_co2e: float = Field(..., ge=0, alias="totalKgCO2e", description="TE in kgCO2e.")
    lifespan_hours: float | None = Field(None, gt=0, description="EL in hours.")
    lifespan_years: float | None = Field(None, gt=0, description="EL in years of 8760 h.")
    reserved_hours: float | None = Field(
        None, ge=0, description="Time reserved; defaults to the component's hours."
    )
    reserved_resources: float = Field(1.0, gt=0, description="RR, e.g. vCPUs reserved.")
    total_resources: float = Field(1.0, gt=0, description="Total resources of the hardware.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.lifespan_hours is not None and self.lifespan_years is not None:
            raise ValueError("give lifespanHours or lifespanYears, not both")
        if self.reserved_resources > self.total_resources:
            raise ValueError("reservedResources cannot exceed totalResources")
        return self

    def expected_lifespan_hours(self) -> float:
        if self.lifespan_hours is not None:
            return self.lifespan_hours
        return lifespan_hours(self.lifespan_years or DEFAULT_LIFESPAN_YEARS)


class ComponentSpec(_Spec):
    """One part of the boundary: a server, a client device, a network path."""

    name: str = Field(..., min_length=1)
    hours: float = Field(..., ge=0, description="Time the component is used for.")
    intensity: float | None = Field(None, ge=0, description="gCO2e/kWh; default: the boundary's.")
    pue: float | None = Field(None, ge=1, description="Default: the boundary's PUE.")
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")
    cpu: CpuSpec | None = None
    memory: MemorySpec | None = None
    network: NetworkSpec | None = None
    storage: StorageSpec | None = None
    embodied: EmbodiedSpec | None = None

    @model_validator(mode="after")
    def _stated_or_parts(self) -> Self:
        parts = (self.cpu, self.memory, self.network, self.storage)
        if self.energy_kwh is not None and any(part is not None for part in parts):
            raise ValueError("energyKWh states the whole component's energy: drop cpu/memory/...")
        return self


class FunctionalUnitSpec(_Spec):
    """R: e.g. ``{name: users, quantity: 500}`` for 500 users served by the boundary."""

    name: str = Field(..., min_length=1)
    quantity: float = Field(1.0, gt=0)
    description: str | None = None


class BoundarySpec(_Spec):
    """The whole YAML document."""

    name: str | None = None
    description: str | None = None
    source: str | None = None
    intensity: float | None = Field(None, ge=0, description="Default gCO2e/kWh.")
    pue: float = Field(1.0, ge=1)
    functional_unit: FunctionalUnitSpec
    components: list[ComponentSpec] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [component.name for component in self.components]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"component names must be unique: {', '.join(duplicates)}")
        if self.intensity is None:
            missing = [c.name for c in self.components if c.intensity is None]
            if missing:
                raise ValueError(
                    "no intensity for component(s) "
                    f"{', '.join(missing)}: set intensity on them or at the top level"
                )
        return self


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


def _component_result(component: ComponentSpec, boundary: BoundarySpec) -> ComponentResult:
    parts: list[EnergyPart] = []
    if component.energy_kwh is not None:
        parts.append(EnergyPart("total", component.energy_kwh, "stated"))
    if component.cpu is not None:
        parts.append(EnergyPart("cpu", *component.cpu.energy(component.hours)))
    if component.memory is not None:
        parts.append(EnergyPart("memory", *component.memory.energy(component.hours)))
    if component.storage is not None:
        parts.append(EnergyPart("storage", *component.storage.energy(component.hours)))
    if component.network is not None:
        parts.append(EnergyPart("network", *component.network.energy()))
    pue = component.pue if component.pue is not None else boundary.pue
    energy = sum(part.energy_kwh for part in parts) * pue
    intensity = component.intensity if component.intensity is not None else boundary.intensity
    assert intensity is not None  # guaranteed by BoundarySpec._check
    # GSF SCI: operational emissions O = E x I.
    operational = energy * intensity
    embodied = 0.0
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
    return ComponentResult(
        name=component.name,
        energy_kwh=energy,
        intensity=intensity,
        operational_grams=operational,
        embodied_grams=embodied,
        total_grams=operational + embodied,
        parts=tuple(parts),
    )


def evaluate_boundary(boundary: BoundarySpec) -> BoundaryResult:
    """SCI of every component and of the whole boundary per R."""
    components = tuple(_component_result(c, boundary) for c in boundary.components)
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


def _location(loc: Sequence[int | str], document: Any) -> str:
    """``components[2] (client).cpu.tdpWatts`` from a pydantic error location."""
    text = ""
    node: Any = document
    for key in loc:
        if isinstance(key, int):
            text += f"[{key}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                text += f" ({node['name']})"
        else:
            text += f".{key}" if text else key
            node = node.get(key) if isinstance(node, dict) else None
    return text or "(document)"


def parse_boundary(text: str, *, source: str = "boundary") -> BoundarySpec:
    """Parse and validate a boundary YAML document; :class:`SpecError` lists every problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping with functionalUnit and components")
    try:
        return BoundarySpec.model_validate(document)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"  {_location(error['loc'], document)}: {message}")
        raise SpecError(f"{source}: invalid boundary:\n" + "\n".join(lines)) from exc


@dataclass(frozen=True, slots=True)
class Report:
    """A result laid out for printing: a table and closing lines."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    footer: tuple[str, ...]


def build_report(result: BoundaryResult) -> Report:
    """Per-component E, I, operational, embodied and SCI, then the total per R."""
    headers = ("Component", "E (kWh)", "I (gCO2e/kWh)", "E x I (g)", "M (g)", "SCI (g per R)")
    rows = [
        (
            c.name,
            f"{c.energy_kwh:.5f}",
            f"{c.intensity:g}",
            f"{c.operational_grams:.2f}",
            f"{c.embodied_grams:.3f}",
            f"{c.total_grams:.2f}",
        )
        for c in result.components
    ]
    rows.append(
        (
            "Total",
            f"{result.energy_kwh:.5f}",
            "",
            f"{result.operational_grams:.2f}",
            f"{result.embodied_grams:.3f}",
            f"{result.total_grams:.2f}",
        )
    )
    unit = result.functional_unit
    described = (
        f" ({result.functional_unit_description})" if result.functional_unit_description else ""
    )
    footer = [f"SCI = {result.total_grams:.2f} gCO2e per R, R = {unit.text}{described}"]
    if unit.quantity != 1:
        footer.append(f"    = {result.per_unit_grams:.4g} gCO2e per one of the {unit.text}")
    return Report(
        title=f"SCI of {result.name}" if result.name else "SCI",
        headers=headers,
        rows=tuple(rows),
        footer=tuple(footer),
    )


def render_plain(report: Report) -> str:
    """The report as aligned plain text (for pipes, logs and tests)."""
    widths = [
        max(len(report.headers[i]), *(len(row[i]) for row in report.rows))
        for i in range(len(report.headers))
    ]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [report.title, line(report.headers), line(["-" * w for w in widths])]
    out += [line(row) for row in report.rows]
    out += ["", *report.footer]
    return "\n".join(out)
