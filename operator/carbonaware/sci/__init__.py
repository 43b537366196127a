"""Software Carbon Intensity arithmetic: SCI = (E x I + M) per R (Green Software Foundation).

Pure: no clock, no network, no files other than the coefficient tables shipped as package
data. Energy models follow Cloud Carbon Footprint (linear min/max watts per vCPU, memory,
storage, network, PUE) and Teads/GSF (TDP curve); embodied emissions follow the GSF SCI
specification with CCF's per-instance coefficients.
"""

from __future__ import annotations

from carbonaware.sci.boundary import (
    BoundaryResult,
    BoundarySpec,
    ComponentResult,
    evaluate_boundary,
    parse_boundary,
)
from carbonaware.sci.embodied import embodied_grams, lifespan_hours
from carbonaware.sci.estimate import (
    FunctionalUnit,
    MeasuredEnergy,
    RunIntensity,
    RunUsage,
    SciEstimate,
    estimate_run,
    run_intensity,
    time_weighted_mean,
)
from carbonaware.sci.instances import InstanceFigures, table_figures
from carbonaware.sci.machines import (
    MachineProfile,
    find_instance_type,
    machine_for_instance_type,
    machine_from_hardware,
    machine_from_server_hardware,
    provider_from_provider_id,
    pue_for_provider,
    unknown_machine,
)
from carbonaware.sci.power import (
    LinearPowerModel,
    PowerModel,
    TdpPowerModel,
    tdp_coefficient,
)
from carbonaware.sci.report import build_report, render_plain, to_json

__all__ = [
    "BoundaryResult",
    "BoundarySpec",
    "ComponentResult",
    "FunctionalUnit",
    "InstanceFigures",
    "LinearPowerModel",
    "MachineProfile",
    "MeasuredEnergy",
    "PowerModel",
    "RunIntensity",
    "RunUsage",
    "SciEstimate",
    "TdpPowerModel",
    "build_report",
    "embodied_grams",
    "estimate_run",
    "evaluate_boundary",
    "find_instance_type",
    "lifespan_hours",
    "machine_for_instance_type",
    "machine_from_hardware",
    "machine_from_server_hardware",
    "parse_boundary",
    "provider_from_provider_id",
    "pue_for_provider",
    "render_plain",
    "run_intensity",
    "table_figures",
    "tdp_coefficient",
    "time_weighted_mean",
    "to_json",
    "unknown_machine",
]
