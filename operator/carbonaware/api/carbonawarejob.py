"""``CarbonAwareJob`` (``carbonaware.io/v1alpha1``): a delay-tolerant run held for a cleaner grid.

Mirrors ``crds/carbonawarejob.yaml`` field for field (the status in ``jobstatus``);
``tests/unit/api`` checks they agree.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from carbonaware.api.base import ApiModel
from carbonaware.api.intensity import IntensityIndex
from carbonaware.api.selector import LabelSelector, valid_labels

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


class LatestStartBound(enum.StrEnum):
    """Which bound set a job's latest start (``status.latestStartBound``)."""

    DEADLINE = "Deadline"  # deadlineTime - expectedDurationSeconds
    MAX_DELAY = "MaxDelay"  # creation + maxDelaySeconds
    DEFAULT_MAX_DELAY = "DefaultMaxDelay"  # creation + 24 h: neither field is set
    MAX_HOLD = "MaxHold"  # creation + one year: no hold is longer, whatever the deadline


MAX_INTERRUPTIONS = 1000


class Interruptible(ApiModel):
    """``spec.schedule.interruptible``: the run may pause in dirty hours and resume in clean
    ones, still finishing by its deadline (Forecast policy only). ``expectedDurationSeconds``
    is then the work: run time, pauses not counted."""

    min_run_seconds: int = Field(ge=60, le=MAX_SECONDS)
    max_interruptions: int | None = Field(None, ge=0, le=MAX_INTERRUPTIONS)
    resume_overhead_seconds: int = Field(0, ge=0, le=MAX_SECONDS)


class Schedule(ApiModel):
    policy: SchedulePolicy = SchedulePolicy.FORECAST
    max_delay_seconds: int | None = Field(None, ge=0, le=MAX_SECONDS)
    deadline_time: datetime | None = None
    expected_duration_seconds: int = Field(DEFAULT_EXPECTED_DURATION_SECONDS, ge=1, le=MAX_SECONDS)
    max_intensity: int | None = Field(None, ge=0, le=MAX_INTENSITY)
    max_index: IndexLevel | None = None
    interruptible: Interruptible | None = None

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
        if self.interruptible is not None and self.policy is not SchedulePolicy.FORECAST:
            raise ValueError("interruptible may only be set with policy Forecast")
        return self

    def latest_finish(self, created: datetime) -> datetime:
        """When the run must be finished: its latest start plus its expected duration."""
        return self.latest_start(created) + timedelta(seconds=self.expected_duration_seconds)

    def latest_start(self, created: datetime) -> datetime:
        """The latest moment the run may start (see :meth:`latest_start_bound`)."""
        return self.latest_start_bound(created)[0]

    def latest_start_bound(self, created: datetime) -> tuple[datetime, LatestStartBound]:
        """The latest start and the bound that set it.

        ``deadlineTime - expectedDurationSeconds`` and ``creation + maxDelaySeconds`` each
        bound the hold when set, and the earlier wins; with ``deadlineTime`` alone the
        deadline alone bounds it; with neither, the hold lasts at most 24 h. No hold lasts
        more than a year. Never before creation: a deadline already too close means "start
        at once".
        """
        bounds: list[tuple[datetime, LatestStartBound]] = []
        if self.max_delay_seconds is not None:
            bounds.append(
                (created + timedelta(seconds=self.max_delay_seconds), LatestStartBound.MAX_DELAY)
            )
        if self.deadline_time is not None:
            try:
                by_deadline = self.deadline_time - timedelta(seconds=self.expected_duration_seconds)
            except OverflowError:  # a deadline near year 1: long past, start at once
                by_deadline = created
            bounds.append((by_deadline, LatestStartBound.DEADLINE))
        if not bounds:
            bounds.append(
                (
                    created + timedelta(seconds=DEFAULT_MAX_DELAY_SECONDS),
                    LatestStartBound.DEFAULT_MAX_DELAY,
                )
            )
        # A deadline years ahead is almost certainly a typo; no hold outlasts maxDelaySeconds'
        # own limit. Listed last, so a bound at the same moment keeps its own name.
        bounds.append((created + timedelta(seconds=MAX_SECONDS), LatestStartBound.MAX_HOLD))
        moment, bound = min(bounds, key=lambda item: item[0])
        return max(moment, created), bound


class ObjectRef(ApiModel):
    name: str = Field(min_length=1, max_length=253)


class EnvVar(ApiModel):
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str = Field("", max_length=32768)


class SshRun(ApiModel):
    target_ref: ObjectRef | None = None
    target_selector: LabelSelector | None = None
    working_dir: str = Field(".", min_length=1, max_length=4096)
    command: str | None = Field(None, min_length=1, max_length=65536)
    script: str | None = Field(None, min_length=1, max_length=262144)
    env: list[EnvVar] = Field(default_factory=list, max_length=128)
    timeout_seconds: int = Field(86400, ge=1, le=MAX_SECONDS)

    @model_validator(mode="after")
    def _command_or_script(self) -> Self:
        if (self.target_ref is None) == (self.target_selector is None):
            raise ValueError("exactly one of ssh.targetRef or ssh.targetSelector must be set")
        if (self.command is None) == (self.script is None):
            raise ValueError("exactly one of ssh.command or ssh.script must be set")
        names = [item.name for item in self.env]
        if len(set(names)) != len(names):
            raise ValueError("ssh.env names must be unique (the CRD's list-map key)")
        return self


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# JobSpec counts the CRD checks, with their least allowed value.
JOB_COUNTS = {
    "parallelism": 0,
    "completions": 0,
    "backoffLimit": 0,
    "ttlSecondsAfterFinished": 0,
    "activeDeadlineSeconds": 1,
}


class TemplateMetadata(ApiModel):
    """The labels and annotations of a Job or pod template: string maps, as the API has them."""

    labels: dict[str, str] | None = Field(None, max_length=64)
    annotations: dict[str, str] | None = None

    @field_validator("labels")
    @classmethod
    def _labels_as_kubernetes_allows(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return valid_labels(value)


def _containers_problem(pod: dict[str, Any], field: str, *, required: bool) -> str | None:
    where = f"jobTemplate.spec.template.spec.{field}"
    containers = pod.get(field)
    if containers is None and not required:
        return None
    if not isinstance(containers, list) or (required and not containers):
        return f"{where} must list at least one container"
    for container in containers:
        if not isinstance(container, dict):
            return f"{where} must hold container objects"
        name, image = container.get("name"), container.get("image")
        if not isinstance(name, str) or len(name) > 63 or not DNS_LABEL.match(name):
            return f"{where}[].name must be a DNS label (lower-case letters, digits and '-')"
        if not isinstance(image, str) or not image:
            return f"{where}[].image must be set"
    return None


def _job_spec_problem(spec: dict[str, Any]) -> str | None:
    for field, least in JOB_COUNTS.items():
        value = spec.get(field)
        if value is not None and (type(value) is not int or value < least):
            return f"jobTemplate.spec.{field} must be a whole number of at least {least}"
    if spec.get("completionMode") not in (None, "NonIndexed", "Indexed"):
        return "jobTemplate.spec.completionMode must be NonIndexed or Indexed"
    if spec.get("suspend") is True:
        return "jobTemplate.spec.suspend must not be true"
    return None


def _template_problem(spec: dict[str, Any]) -> str | None:
    """What in ``jobTemplate.spec`` the CRD refuses, for objects that reach the operator
    some other way (an older CRD, a hand-edited object); None when it is fine."""
    template = spec.get("template")
    where = "jobTemplate.spec.template"
    if not isinstance(template, dict):
        return f"{where} must be a pod template (an object with spec.containers)"
    if "metadata" in template:
        try:
            TemplateMetadata.model_validate(template["metadata"], strict=True)
        except ValueError:
            return f"{where}.metadata must hold labels and annotations as string maps"
    pod = template.get("spec")
    if not isinstance(pod, dict):
        return f"{where}.spec must be a pod spec (an object with containers)"
    problem = _containers_problem(pod, "containers", required=True) or _containers_problem(
        pod, "initContainers", required=False
    )
    if problem is not None:
        return problem
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        return f"{where}.spec.restartPolicy must be Never or OnFailure"
    return _job_spec_problem(spec)


class JobTemplate(ApiModel):
    """A ``batch/v1`` JobTemplateSpec. The CRD checks what a mistake would break at release
    (pod template metadata, containers, restart policy, counts); the Job API checks the rest
    when the Job is created."""

    metadata: TemplateMetadata | None = None
    spec: dict[str, Any]

    @model_validator(mode="after")
    def _as_the_crd_allows(self) -> Self:
        problem = _template_problem(self.spec)
        if problem is not None:
            raise ValueError(problem)
        return self


class FunctionalUnit(ApiModel):
    name: str = Field("run", min_length=1, max_length=128)
    quantity: int = Field(1, ge=1, le=10**12)


class SciSpec(ApiModel):
    functional_unit: FunctionalUnit = Field(default_factory=FunctionalUnit)


REGION_LABEL = "topology.kubernetes.io/region"


class PlacementRegion(ApiModel):
    """A region a Job may run in and the nodes that are in it (by default, the nodes
    labelled ``topology.kubernetes.io/region: <region>``)."""

    region: str = Field(min_length=1, max_length=64)
    node_selector: dict[str, str] | None = Field(None, max_length=16)

    @field_validator("node_selector")
    @classmethod
    def _labels_as_kubernetes_allows(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return valid_labels(value, "nodeSelector: ")

    def selector(self) -> dict[str, str]:
        """The nodeSelector a released Job's pods get for this region."""
        return dict(self.node_selector) if self.node_selector else {REGION_LABEL: self.region}


class Placement(ApiModel):
    regions: list[PlacementRegion] = Field(min_length=1, max_length=16)

    @field_validator("regions")
    @classmethod
    def _regions_unique(cls, value: list[PlacementRegion]) -> list[PlacementRegion]:
        names = [entry.region for entry in value]
        if len(set(names)) != len(names):
            raise ValueError("placement.regions must name each region once (the list-map key)")
        return value


class CarbonAwareJobSpec(ApiModel):
    description: str | None = Field(None, max_length=4096)
    region: str | None = Field(None, min_length=1, max_length=64)
    schedule: Schedule = Field(default_factory=Schedule)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)
    job_template: JobTemplate | None = None
    ssh: SshRun | None = None
    placement: Placement | None = None
    sci: SciSpec = Field(default_factory=SciSpec)

    @model_validator(mode="after")
    def _exactly_one_workload(self) -> Self:
        if (self.job_template is None) == (self.ssh is None):
            raise ValueError("exactly one of spec.jobTemplate or spec.ssh must be set")
        if self.placement is not None and self.job_template is None:
            raise ValueError(
                "spec.placement must only be set with spec.jobTemplate (a Job); SSH jobs "
                "choose among ServerTargets with spec.ssh.targetSelector"
            )
        if self.placement is not None and self.region is not None:
            raise ValueError("spec.region and spec.placement must not both be set")
        return self
