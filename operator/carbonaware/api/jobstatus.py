"""The status of a CarbonAwareJob: what the operator records along the job's life (its
plan, its release, where it runs, its segments and its SCI)."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import Field

from carbonaware.api.base import ApiModel
from carbonaware.api.carbonawarejob import LatestStartBound
from carbonaware.api.conditions import Condition


class IntensityStatus(ApiModel):
    """gCO2e/kWh values recorded along the job's life; ``source`` names the provider."""

    current: float | None = None
    at_creation: float | None = None
    at_release: float | None = None
    planned_window_mean: float | None = None
    run_mean: float | None = None
    source: str | None = None


class EnergySource(enum.StrEnum):
    """Where a run's energy E came from."""

    MEASURED = "measured"  # the cluster's meters: Kepler per-pod joules, DCGM GPU power
    MODELLED = "modelled"  # measured CPU time through a power model
    RESERVATION = "reservation"  # no measurement: the reservation held fully busy (upper bound)


class SciStatus(ApiModel):
    energy_k_wh: float = Field(alias="energyKWh")
    cpu_k_wh: float | None = Field(None, alias="cpuKWh")
    memory_k_wh: float | None = Field(None, alias="memoryKWh")
    gpu_k_wh: float | None = Field(None, alias="gpuKWh")
    operational_grams: float
    embodied_grams: float
    total_grams: float
    per_unit_grams: float
    functional_unit: str
    avoided_grams: float | None = None
    method: str
    cpu_core_seconds: float
    energy_source: EnergySource | None = None
    intensity_source: str | None = None


class PlaceStatus(ApiModel):
    """One place a job may run: a ServerTarget (SSH jobs) or a region (Jobs), with the
    expected grid intensity over the planned run and the expected grams (E x I + M)."""

    target: str | None = None
    region: str | None = None
    expected_intensity: float | None = None
    expected_grams: float | None = None


class PlacementStatus(ApiModel):
    """Where the job runs (or, while held, is planned to run) and the runner-up."""

    target: str | None = None
    region: str | None = None
    expected_intensity: float | None = None
    expected_grams: float | None = None
    candidates: int = Field(0, ge=0)
    runner_up: PlaceStatus | None = None


class SegmentStatus(ApiModel):
    """One run of an interruptible job, from its start (or resume) to its pause or end.

    ``workSeconds`` is the time its pods (or its script) ran; the figures after it are the
    segment's share of the SCI, measured when it paused."""

    start: datetime
    end: datetime | None = None
    work_seconds: float | None = Field(None, ge=0)
    mean_intensity: float | None = None
    cpu_core_seconds: float | None = Field(None, ge=0)
    energy_k_wh: float | None = Field(None, alias="energyKWh")
    cpu_k_wh: float | None = Field(None, alias="cpuKWh")
    memory_k_wh: float | None = Field(None, alias="memoryKWh")
    gpu_k_wh: float | None = Field(None, alias="gpuKWh")
    operational_grams: float | None = None
    embodied_grams: float | None = None
    avoided_grams: float | None = None


class CarbonAwareJobStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    state: str | None = None
    region: str | None = None
    planned_start_time: datetime | None = None
    planned_start_display: str | None = Field(None, max_length=32)
    latest_start_time: datetime | None = None
    latest_start_bound: LatestStartBound | None = None
    release_decided_time: datetime | None = None
    release_time: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observed_generation: int | None = None
    intensity: IntensityStatus | None = None
    intensity_display: str | None = Field(None, max_length=32)
    job_name: str | None = None
    pod_name: str | None = None
    placement: PlacementStatus | None = None
    sci: SciStatus | None = None
    sci_display: str | None = Field(None, max_length=128)
    segments: list[SegmentStatus] = Field(default_factory=list)
    work_done_seconds: float | None = Field(None, ge=0)
    interruptions: int | None = Field(None, ge=0)
