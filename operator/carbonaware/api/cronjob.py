"""``CarbonAwareCronJob`` (``carbonaware.io/v1alpha1``): recurring work with a window around
each nominal time.

Each period it creates one CarbonAwareJob from ``jobTemplate``, ``windowBeforeSeconds``
before the nominal time, whose latest start is ``windowAfterSeconds`` after it: the run may
start before its nominal time when the grid is cleaner then. The rest follows batch/v1
CronJob (``schedule``, ``timeZone``, ``startingDeadlineSeconds``, ``concurrencyPolicy``,
``suspend``, history limits). Mirrors ``crds/carbonawarecronjob.yaml``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from carbonaware.api.base import ApiModel
from carbonaware.api.carbonawarejob import MAX_SECONDS, CarbonAwareJobSpec, TemplateMetadata

KIND = "CarbonAwareCronJob"
PLURAL = "carbonawarecronjobs"

MAX_HISTORY = 100
# batch/v1 CronJob's descriptors (robfig/cron); "@every" and "@reboot" are not schedules.
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
SCHEDULE_HINT = (
    "schedule must be a cron expression of five fields (minute hour day-of-month month "
    "day-of-week, e.g. '0 2 * * *') or one of " + ", ".join(DESCRIPTORS)
)


class ConcurrencyPolicy(enum.StrEnum):
    """What a new period does while an earlier run is held or running (as CronJob's)."""

    ALLOW = "Allow"
    FORBID = "Forbid"  # skip the new period
    REPLACE = "Replace"  # delete the earlier run, then create the new one


def valid_schedule(text: str) -> str:
    """``text`` if batch/v1 CronJob would accept it as a schedule, else ValueError."""
    cleaned = " ".join(text.split())
    if cleaned.startswith("@"):
        if cleaned.lower() not in DESCRIPTORS:
            raise ValueError(SCHEDULE_HINT)
        return cleaned.lower()
    if cleaned.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ValueError("schedule must not name a time zone: set spec.timeZone instead")
    if len(cleaned.split(" ")) != 5 or not croniter.is_valid(cleaned):
        raise ValueError(SCHEDULE_HINT)
    return cleaned


def zone_of(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (UTC when unset), else ValueError."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"timeZone {name!r} is not an IANA time zone name (e.g. Europe/London, Etc/UTC)"
        ) from exc


class RunTemplate(ApiModel):
    """The CarbonAwareJob each period creates: its labels and annotations, and its spec."""

    metadata: TemplateMetadata | None = None
    spec: CarbonAwareJobSpec

    @model_validator(mode="after")
    def _window_comes_from_the_cron_job(self) -> Self:
        schedule = self.spec.schedule
        if schedule.deadline_time is not None or schedule.max_delay_seconds is not None:
            raise ValueError(
                "jobTemplate.spec.schedule must not set deadlineTime or maxDelaySeconds: each "
                "run's latest start is its nominal time plus spec.windowAfterSeconds"
            )
        return self


class CarbonAwareCronJobSpec(ApiModel):
    schedule: str = Field(min_length=1, max_length=256)
    time_zone: str | None = Field(None, min_length=1, max_length=64)
    window_before_seconds: int = Field(0, ge=0, le=MAX_SECONDS)
    window_after_seconds: int = Field(0, ge=0, le=MAX_SECONDS)
    starting_deadline_seconds: int | None = Field(None, ge=0, le=MAX_SECONDS)
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.ALLOW
    suspend: bool = False
    successful_jobs_history_limit: int = Field(3, ge=0, le=MAX_HISTORY)
    failed_jobs_history_limit: int = Field(1, ge=0, le=MAX_HISTORY)
    job_template: RunTemplate

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return valid_schedule(value)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        zone_of(value)
        return value

    def zone(self) -> ZoneInfo:
        return zone_of(self.time_zone)


class RunRef(ApiModel):
    """A run (CarbonAwareJob) of the cron job and the nominal time it is for."""

    name: str
    uid: str | None = None
    nominal_time: datetime


class CarbonAwareCronJobStatus(ApiModel):
    active: list[RunRef] = Field(default_factory=list)
    last_schedule_time: datetime | None = None
    last_successful_time: datetime | None = None
    next_schedule_time: datetime | None = None
    next_window_start: datetime | None = None
    observed_generation: int | None = None
