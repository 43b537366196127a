"""``CarbonAwareJob`` (``carbonaware.io/v1alpha1``): a delay-tolerant run held for a cleaner grid.

Mirrors ``crds/carbonawarejob.yaml`` field for field; ``tests/unit/api`` checks they agree.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from carbonaware.api.base import ApiModel
from carbonaware.api.conditions import Condition
from carbonaware.api.intensity import IntensityIndex

KIND = "CarbonAwareJob"
PLURAL = "carbonawarejobs"

DEFAULT_MAX_DELAY_SECONDS = 86400
DEFAULT_EXPECTED_DURATION_SECONDS = 3600
MAX_SECONDS = 31_536_000  # one year: longer holds are almost certainly a unit mistake
MAX_INTENSITY = 5000  # gCO2e/kWh: above any real grid; larger values are a unit mistake
MAX_PRIORITY = 1_000_000  # priorities run from -MAX_PRIORITY to MAX_PRIORITY


class SchedulePolicy(enum.StrEnum):
    FORECAST = "Forecast"
    THRESHOLD = "Threshold"
    IMMEDIATE = "Immediate"


class IndexLevel(enum.StrEnum):
    """``maxIndex`` values; the provider's own bands, cleanest first."""

    VERY_LOW = "VeryLow"
    LOW = "Low"
    MODERATE = "Moderate"
    HIGH = "High"

    def as_index(self) -> IntensityIndex:
        return IntensityIndex.parse(self.value)


class Schedule(ApiModel):
    policy: SchedulePolicy = SchedulePolicy.FORECAST
    max_delay_seconds: int = Field(DEFAULT_MAX_DELAY_SECONDS, ge=0, le=MAX_SECONDS)
    deadline_time: datetime | None = None
    expected_duration_seconds: int = Field(DEFAULT_EXPECTED_DURATION_SECONDS, ge=1, le=MAX_SECONDS)
    max_intensity: int | None = Field(None, ge=0, le=MAX_INTENSITY)
    max_index: IndexLevel | None = None

    @field_validator("deadline_time")
    @classmethod
    def _deadline_has_a_zone(cls, value: datetime | None) -> datetime | None:
        """RFC 3339 times carry a zone (the CRD's ``date-time`` format insists on one)."""
        if value is not None and value.utcoffset() is None:
            raise ValueError(
                "deadlineTime must be an RFC 3339 time with a zone, e.g. 2030-01-31T18:00:00Z"
            )
        return value

    @model_validator(mode="after")
    def _threshold_fields(self) -> Self:
        has_threshold = self.max_intensity is not None or self.max_index is not None
        if has_threshold and self.policy is not SchedulePolicy.THRESHOLD:
            raise ValueError("maxIntensity and maxIndex may only be set with policy Threshold")
        if self.policy is SchedulePolicy.THRESHOLD and not has_threshold:
            raise ValueError("policy Threshold needs maxIntensity or maxIndex")
        return self

    def latest_start(self, created: datetime) -> datetime:
        """The latest moment the run may start: the earlier of the two bounds (DESIGN)."""
        bound = created + timedelta(seconds=self.max_delay_seconds)
        if self.deadline_time is not None:
            try:
                by_deadline = self.deadline_time - timedelta(seconds=self.expected_duration_seconds)
            except OverflowError:  # a deadline near year 1: long past, start at once
                by_deadline = created
            bound = min(bound, by_deadline)
        return max(bound, created)


class ObjectRef(ApiModel):
    name: str = Field(min_length=1, max_length=253)


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str = Field("", max_length=32768)


class SshRun(ApiModel):
    target_ref: ObjectRef
    working_dir: str = Field(".", min_length=1, max_length=4096)
    command: str | None = Field(None, min_length=1, max_length=65536)
    script: str | None = Field(None, min_length=1, max_length=262144)
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    timeout_seconds: int = Field(86400, ge=1, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _command_or_script(self) -> Self:
        if (self.command is None) == (self.script is None):
            raise ValueError("exactly one of ssh.command or ssh.script must be set")
        names = [item.name for item in self.env]
        if len(set(names)) != len(names):
            raise ValueError("ssh.env names must be unique (the CRD's list-map key)")
        return self


class JobTemplate(ApiModel):
    """A ``batch/v1`` JobTemplateSpec; its contents are validated by the Job API itself."""

    metadata: dict[str, Any] | None = None
    spec: dict[str, Any]

    @model_validator(mode="after")
    def _as_the_crd_allows(self) -> Self:
        """The few rules the CRD puts on an otherwise free-form template."""
        if self.metadata is not None and not set(self.metadata) <= {"labels", "annotations"}:
            raise ValueError("jobTemplate.metadata may only hold labels and annotations")
        if not isinstance(self.spec.get("template"), dict):
            raise ValueError("jobTemplate.spec.template must be set (a pod template)")
        if self.spec.get("suspend") is True:
            raise ValueError("jobTemplate.spec.suspend must not be true")
        return self


class FunctionalUnit(ApiModel):
    name: str = Field("run", min_length=1, max_length=128)
    quantity: int = Field(1, ge=1, le=10**12)


class SciSpec(ApiModel):
    functional_unit: FunctionalUnit = Field(default_factory=FunctionalUnit)


class CarbonAwareJobSpec(ApiModel):
    description: str | None = Field(None, max_length=4096)
    region: str | None = Field(None, min_length=1, max_length=64)
    schedule: Schedule = Field(default_factory=Schedule)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    job_template: JobTemplate | None = None
    ssh: SshRun | None = None
    sci: SciSpec = Field(default_factory=SciSpec)

    @model_validator(mode="after")
    def _exactly_one_workload(self) -> Self:
        if (self.job_template is None) == (self.ssh is None):
            raise ValueError("exactly one of spec.jobTemplate or spec.ssh must be set")
        return self


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


class CarbonAwareJobStatus(ApiModel):
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    state: str | None = None
    region: str | None = None
    planned_start_time: datetime | None = None
    latest_start_time: datetime | None = None
    release_time: datetime | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observed_generation: int | None = None
    intensity: IntensityStatus | None = None
    job_name: str | None = None
    pod_name: str | None = None
    sci: SciStatus | None = None
