"""Coefficient tables for the SCI estimate, and the scalar coefficients they come with.

The tables ship as CSV files in ``carbonaware/sci/data/``; each file starts with ``#`` lines
naming its source (Cloud Carbon Footprint, Thoughtworks, Apache-2.0). Reading package data
through :mod:`importlib.resources` is the only file access in this package.
"""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from functools import cache
from importlib import resources

from carbonaware.errors import ConfigError

# Cloud Carbon Footprint, methodology "Memory": 0.392 W per GB (0.000392 kWh per GB-hour).
MEMORY_WATTS_PER_GIB = 0.392
# Cloud Carbon Footprint, methodology "Storage": 6 W per 5 TB SSD disk, 6.5 W per 10 TB HDD disk.
SSD_WATT_HOURS_PER_TB_HOUR = 1.2
HDD_WATT_HOURS_PER_TB_HOUR = 0.65
# Cloud Carbon Footprint, methodology "Networking": smallest published coefficient, 0.001 kWh/GB.
NETWORK_KWH_PER_GB = 0.001
# Expected server lifespan EL: 4 years (Teads and CCF, after the Dell PowerEdge R740 LCA);
# CCF counts a year as 8760 h, so EL = 35,040 h.
DEFAULT_LIFESPAN_YEARS = 4.0
HOURS_PER_YEAR = 8760.0
# Provider whose averages stand in when a machine's provider is not known (CCF's AWS averages,
# the largest of its per-provider data sets).
FALLBACK_PROVIDER = "aws"
# CCF's embodied-emissions model of an unknown server (cloud-carbon-coefficients
# ccfcoef/constants.py, after Teads and the Dell R740 LCA): a 1,000 kgCO2e base rack server
# with 16 GB of DRAM, plus 533/384 kgCO2e per GB of DRAM beyond that.
BASE_SERVER_EMBODIED_KG = 1000.0
BASE_SERVER_DRAM_GIB = 16.0
DRAM_EMBODIED_KG_PER_GIB = 533.0 / 384.0

_DATA_PACKAGE = "carbonaware.sci"
_OUTLIER_MICROARCHITECTURES = frozenset({"Sandy Bridge", "Ivy Bridge"})


@dataclass(frozen=True, slots=True)
class WattsPerVcpu:
    """Power of one vCPU at 0 % (``min_watts``) and 100 % (``max_watts``) utilisation."""

    min_watts: float
    max_watts: float


@dataclass(frozen=True, slots=True)
class ProviderCoefficients:
    """A cloud provider's average per-vCPU power and data-centre PUE (CCF)."""

    provider: str
    watts: WattsPerVcpu
    pue: float


@dataclass(frozen=True, slots=True)
class InstanceType:
    """One cloud instance type from ``instance_types.csv``."""

    provider: str
    name: str
    vcpus: int
    memory_gib: float
    host_vcpus: int
    microarchitectures: tuple[str, ...]
    embodied_kg: float


def _read_rows(file_name: str) -> list[dict[str, str]]:
    """Rows of a packaged CSV table, skipping its ``#`` source lines."""
    try:
        text = resources.files(_DATA_PACKAGE).joinpath("data", file_name).read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"coefficient table {file_name} is missing from the package") from exc
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def _number(row: dict[str, str], column: str, file_name: str) -> float:
    try:
        return float(row[column])
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{file_name}: bad value in column {column!r}: {row}") from exc


@cache
def provider_coefficients() -> dict[str, ProviderCoefficients]:
    """Per-provider averages keyed by lower-case provider name (``aws``, ``gcp``, ``azure``)."""
    name = "ccf_provider_averages.csv"
    table: dict[str, ProviderCoefficients] = {}
    for row in _read_rows(name):
        provider = row["provider"].strip().lower()
        table[provider] = ProviderCoefficients(
            provider=provider,
            watts=WattsPerVcpu(
                _number(row, "min_watts_per_vcpu", name), _number(row, "max_watts_per_vcpu", name)
            ),
            pue=_number(row, "pue", name),
        )
    return table


@cache
def microarchitecture_watts() -> dict[str, WattsPerVcpu]:
    """Per-vCPU min/max watts keyed by microarchitecture name as CCF spells it."""
    name = "ccf_microarchitectures.csv"
    return {
        row["microarchitecture"].strip(): WattsPerVcpu(
            _number(row, "min_watts_per_vcpu", name), _number(row, "max_watts_per_vcpu", name)
        )
        for row in _read_rows(name)
    }


@cache
def instance_types() -> dict[str, InstanceType]:
    """Instance types keyed by their exact name (``m5.xlarge``, ``n2-standard-4``, ``D2 v2``)."""
    name = "instance_types.csv"
    table: dict[str, InstanceType] = {}
    for row in _read_rows(name):
        microarchitectures = tuple(
            part.strip() for part in row["microarchitecture"].split("|") if part.strip()
        )
        entry = InstanceType(
            provider=row["provider"].strip().lower(),
            name=row["instance_type"].strip(),
            vcpus=int(_number(row, "vcpus", name)),
            memory_gib=_number(row, "memory_gib", name),
            host_vcpus=int(_number(row, "host_vcpus", name)),
            microarchitectures=microarchitectures,
            embodied_kg=_number(row, "embodied_kgco2e", name),
        )
        table[entry.name] = entry
    return table


def provider_average(provider: str | None) -> ProviderCoefficients:
    """The CCF averages for ``provider``; unknown or missing providers get the AWS averages."""
    table = provider_coefficients()
    key = (provider or "").strip().lower()
    return table.get(key, table[FALLBACK_PROVIDER])


def watts_for_microarchitectures(
    microarchitectures: tuple[str, ...], provider: str | None
) -> tuple[WattsPerVcpu, bool]:
    """Per-vCPU watts for a group of microarchitectures, and whether the group was known.

    Cloud Carbon Footprint (``getWattsByAverageOrMedian``): the mean over the group, or the
    median when Sandy Bridge or Ivy Bridge is in it (treated as outliers). Names without
    coefficients are skipped; when none is known the provider average is returned.
    """
    table = microarchitecture_watts()
    known = [name for name in microarchitectures if name in table]
    if not known:
        return provider_average(provider).watts, False
    mins = [table[name].min_watts for name in known]
    maxes = [table[name].max_watts for name in known]
    if _OUTLIER_MICROARCHITECTURES.intersection(known):
        return WattsPerVcpu(statistics.median(mins), statistics.median(maxes)), True
    return WattsPerVcpu(statistics.fmean(mins), statistics.fmean(maxes)), True


def default_embodied_kg(memory_gib: float | None) -> float:
    """TE of a server nothing is known about, after CCF's coefficient model.

    A 1,000 kgCO2e base rack server plus DRAM beyond its 16 GB at 533/384 kgCO2e per GB;
    without a memory size, the base server alone.
    """
    extra_dram = max(0.0, (memory_gib or 0.0) - BASE_SERVER_DRAM_GIB)
    # CCF cloud-carbon-coefficients, Embodied.additional_memory: linear in DRAM above the threshold.
    return BASE_SERVER_EMBODIED_KG + extra_dram * DRAM_EMBODIED_KG_PER_GIB
