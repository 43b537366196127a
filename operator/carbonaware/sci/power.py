"""Power and energy models: CPU (linear per vCPU, or a TDP curve), memory, storage, network.

Energies are in kWh, powers in watts, times in hours. Every model is monotone in
utilisation and in time, which the property tests check.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from carbonaware.sci.coefficients import (
    HDD_WATT_HOURS_PER_TB_HOUR,
    MEMORY_WATTS_PER_GIB,
    NETWORK_KWH_PER_GB,
    SSD_WATT_HOURS_PER_TB_HOUR,
)

# Teads / GSF "Energy estimation from utilisation" curve (B. Davy, "Building an AWS EC2 Carbon
# Emissions Dataset", 2021): fraction of TDP drawn at 0, 10, 50 and 100 % CPU utilisation.
TDP_CURVE_UTILISATION: tuple[float, ...] = (0.0, 0.10, 0.50, 1.00)
TDP_CURVE_FACTOR: tuple[float, ...] = (0.12, 0.32, 0.75, 1.02)


def clip_utilisation(utilisation: float) -> float:
    """Utilisation as a fraction in [0, 1]."""
    return min(1.0, max(0.0, utilisation))


def tdp_coefficient(utilisation: float) -> float:
    """Fraction of TDP drawn at ``utilisation`` (0..1), linearly interpolated on the Teads curve."""
    u = clip_utilisation(utilisation)
    points = list(zip(TDP_CURVE_UTILISATION, TDP_CURVE_FACTOR, strict=True))
    for (u0, f0), (u1, f1) in pairwise(points):
        if u <= u1:
            # Teads/GSF curve: piecewise-linear interpolation between the measured points.
            return f0 + (u - u0) * (f1 - f0) / (u1 - u0)
    return TDP_CURVE_FACTOR[-1]


def interpolate_curve(curve: tuple[tuple[float, float], ...], utilisation: float) -> float:
    """Watts at ``utilisation`` on a measured load curve ``((u, watts), ...)``, u ascending."""
    u = clip_utilisation(utilisation)
    for (u0, w0), (u1, w1) in pairwise(curve):
        if u <= u1:
            # Piecewise-linear between the published load points (as the Teads curve).
            return w0 + (u - u0) * (w1 - w0) / (u1 - u0) if u1 > u0 else w1
    return curve[-1][1]


@dataclass(frozen=True, slots=True)
class LinearPowerModel:
    """Cloud Carbon Footprint's compute model: ``W = minW + u x (maxW - minW)`` per vCPU."""

    min_watts_per_vcpu: float
    max_watts_per_vcpu: float
    label: str

    def watts(self, vcpus: float, utilisation: float) -> float:
        """Mean power of ``vcpus`` vCPUs running at ``utilisation`` (0..1)."""
        u = clip_utilisation(utilisation)
        # CCF methodology "Compute": Average Watts = Min Watts + Avg vCPU Utilization x (Max - Min).
        return vcpus * (
            self.min_watts_per_vcpu + u * (self.max_watts_per_vcpu - self.min_watts_per_vcpu)
        )


@dataclass(frozen=True, slots=True)
class TdpPowerModel:
    """A whole machine's TDP scaled by the Teads curve; a job draws its vCPU share of it."""

    tdp_watts: float
    machine_vcpus: int
    label: str

    def watts(self, vcpus: float, utilisation: float) -> float:
        """Mean power of ``vcpus`` of the machine's vCPUs running at ``utilisation`` (0..1)."""
        share = vcpus / self.machine_vcpus
        # Teads/GSF: P = TDP x curve(u), attributed by the share of the machine reserved.
        return self.tdp_watts * share * tdp_coefficient(utilisation)


@dataclass(frozen=True, slots=True)
class CurvePowerModel:
    """A whole instance's measured or modelled power at load points (BoaviztAPI's curve); a
    run draws its vCPU share of it."""

    curve: tuple[tuple[float, float], ...]
    machine_vcpus: float
    label: str
    includes_memory: bool = True

    def watts(self, vcpus: float, utilisation: float) -> float:
        """Mean power of ``vcpus`` of the instance's vCPUs running at ``utilisation`` (0..1)."""
        return interpolate_curve(self.curve, utilisation) * vcpus / self.machine_vcpus


PowerModel = LinearPowerModel | TdpPowerModel | CurvePowerModel


def cpu_energy_kwh(model: PowerModel, vcpus: float, utilisation: float, hours: float) -> float:
    """Energy of ``vcpus`` vCPUs at ``utilisation`` for ``hours``."""
    return model.watts(vcpus, utilisation) * hours / 1000.0


def memory_energy_kwh(
    gib: float, hours: float, watts_per_gib: float = MEMORY_WATTS_PER_GIB
) -> float:
    """Energy of ``gib`` GiB of DRAM held for ``hours`` (CCF: 0.392 W per GiB)."""
    # CCF methodology "Memory": kWh = size x 0.000392 kWh per GB-hour x hours (GB of DRAM = GiB).
    return gib * watts_per_gib * hours / 1000.0


def storage_energy_kwh(ssd_tb: float, hdd_tb: float, hours: float) -> float:
    """Energy of allocated SSD and HDD capacity held for ``hours`` (CCF Wh per TB-hour)."""
    # CCF methodology "Storage": SSD 1.2 Wh/TB-h, HDD 0.65 Wh/TB-h, applied to allocated capacity.
    watt_hours = (ssd_tb * SSD_WATT_HOURS_PER_TB_HOUR + hdd_tb * HDD_WATT_HOURS_PER_TB_HOUR) * hours
    return watt_hours / 1000.0


def network_energy_kwh(gigabytes: float, kwh_per_gb: float = NETWORK_KWH_PER_GB) -> float:
    """Energy of moving ``gigabytes`` across networks (CCF: 0.001 kWh/GB)."""
    # CCF methodology "Networking": kWh = GB transferred x 0.001 kWh/GB.
    return gigabytes * kwh_per_gb
