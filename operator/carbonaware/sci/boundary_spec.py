"""The YAML a software boundary is described in, as pydantic models (``carbonaware sci FILE``).

A boundary is a list of components (servers, cloud instances by type and count, clients,
network), each with the time it runs and either a power model (TDP curve or coefficient, CCF
min/max watts per core, memory, storage, network), an instance type whose figures come from
the tables, or energies stated directly in kWh, so that published case studies can be
reproduced from their own intermediate figures. Field names are camelCase like the CRDs;
unknown fields are rejected with the path of the field at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from carbonaware.errors import SpecError
from carbonaware.sci.coefficients import (
    DEFAULT_LIFESPAN_YEARS,
    GIB_PER_GB,
    MEMORY_WATTS_PER_GIB,
    NETWORK_KWH_PER_GB,
)
from carbonaware.sci.embodied import lifespan_hours
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
    """DRAM energy: a size at CCF's 0.392 W per GiB, a power in watts (x a coefficient), or kWh.

    The size is ``gib`` (binary gigabytes, 2^30 bytes, how DRAM and cloud memory are sold) or
    ``gb`` (decimal, 10^9 bytes, converted to GiB); the coefficient is always per GiB.
    """

    gib: float | None = Field(None, ge=0)
    gb: float | None = Field(None, ge=0)
    watts_per_gib: float = Field(MEMORY_WATTS_PER_GIB, ge=0)
    watts: float | None = Field(None, ge=0)
    coefficient: float = Field(1.0, ge=0)
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")

    @model_validator(mode="after")
    def _one_model(self) -> Self:
        given = (self.gib, self.gb, self.watts, self.energy_kwh)
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of gib, gb, watts or energyKWh")
        return self

    @property
    def size_gib(self) -> float:
        return self.gib if self.gib is not None else (self.gb or 0.0) * GIB_PER_GB

    def energy(self, hours: float) -> tuple[float, str]:
        if self.energy_kwh is not None:
            return self.energy_kwh, "stated"
        if self.watts is not None:
            return hours * self.watts * self.coefficient / 1000.0, f"watts x {self.coefficient:g}"
        return memory_energy_kwh(self.size_gib, hours, self.watts_per_gib), "ccf-memory"


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
    """One part of the boundary: a server (or ``count`` cloud instances), a client, a network.

    With ``instanceType`` (and ``cloud``), vCPUs, memory, host vCPUs, watts per vCPU and
    embodied emissions come from the instance tables (or BoaviztAPI, when the calculator is
    given one); each can be overridden here. ``utilisation`` is then the mean CPU load.
    """

    name: str = Field(..., min_length=1)
    hours: float = Field(..., ge=0, description="Time the component is used for.")
    intensity: float | None = Field(None, ge=0, description="gCO2e/kWh; default: the boundary's.")
    pue: float | None = Field(None, ge=1, description="Default: the boundary's PUE.")
    energy_kwh: float | None = Field(None, ge=0, alias="energyKWh")
    instance_type: str | None = Field(None, min_length=1, description="e.g. c5.4xlarge.")
    cloud: str | None = Field(None, pattern="^(aws|gcp|azure)$")
    count: int = Field(1, ge=1, description="Identical instances of this component.")
    utilisation: float | None = Field(None, ge=0, le=1, description="Mean CPU load, 0..1.")
    vcpus: float | None = Field(None, gt=0)
    host_vcpus: float | None = Field(None, gt=0, alias="hostVcpus")
    min_watts: float | None = Field(None, ge=0, description="Watts per vCPU idle.")
    max_watts: float | None = Field(None, ge=0, description="Watts per vCPU at full load.")
    memory_gib: float | None = Field(None, ge=0, alias="memoryGiB")
    memory_gb: float | None = Field(None, ge=0, alias="memoryGB")
    embodied_kg_co2e: float | None = Field(None, ge=0, alias="embodiedKgCO2e")
    lifespan_years: float | None = Field(None, gt=0)
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
        if self.memory_gib is not None and self.memory_gb is not None:
            raise ValueError("give memoryGiB or memoryGB, not both")
        machine = (
            self.vcpus,
            self.host_vcpus,
            self.min_watts,
            self.max_watts,
            self.memory_gib,
            self.memory_gb,
            self.embodied_kg_co2e,
            self.lifespan_years,
            self.utilisation,
        )
        if self.instance_type is None:
            if self.cloud is not None or "count" in self.model_fields_set:
                raise ValueError("cloud and count describe an instanceType: give one")
            if any(value is not None for value in machine):
                raise ValueError("vcpus, memoryGiB, minWatts... override an instanceType: give one")
        elif self.cpu is None and self.energy_kwh is None and self.utilisation is None:
            raise ValueError("with instanceType give utilisation (mean CPU load, 0..1) or cpu")
        if (self.min_watts is None) != (self.max_watts is None):
            raise ValueError("minWatts and maxWatts go together")
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
    memory_watts_per_gib: float = Field(
        MEMORY_WATTS_PER_GIB,
        ge=0,
        alias="memoryWattsPerGiB",
        description="W per GiB of instance memory (CCF: 0.392).",
    )
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
