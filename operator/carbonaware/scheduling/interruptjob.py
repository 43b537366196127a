"""The job, the state and the decision of interruptible work (see
:mod:`~carbonaware.scheduling.interruptible`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class RunState(enum.StrEnum):
    """Where the job stands at this tick."""

    WAITING = "Waiting"
    """Never run: its first start costs no overhead."""
    RUNNING = "Running"
    PAUSED = "Paused"


class RunReason(enum.StrEnum):
    """Why the job runs or waits this tick (CamelCase, as condition reasons are)."""

    LOW_CARBON_SEGMENT = "LowCarbonSegment"
    WAITING_FOR_LOWER_INTENSITY = "WaitingForLowerIntensity"
    MINIMUM_RUN = "MinimumRun"
    NO_INTERRUPTIONS_LEFT = "NoInterruptionsLeft"
    DEADLINE_REACHED = "DeadlineReached"
    FORECAST_UNAVAILABLE = "ForecastUnavailable"
    COMPLETE = "Complete"


@dataclass(frozen=True, slots=True)
class InterruptibleJob:
    """One interruptible job at one tick.

    ``remaining`` is the run time still needed (work not yet done, plus whatever is left of
    the overhead of a resume in progress); ``deadline`` the latest finish; ``interruptions``
    the pauses so far; ``running_for`` how long the current segment has run (RUNNING only).
    """

    remaining: timedelta
    deadline: datetime
    min_run: timedelta = timedelta(0)
    max_interruptions: int | None = None
    interruptions: int = 0
    resume_overhead: timedelta = timedelta(0)
    state: RunState = RunState.WAITING
    running_for: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.min_run < timedelta(0) or self.resume_overhead < timedelta(0):
            raise ValueError("min_run and resume_overhead must not be negative")
        if self.max_interruptions is not None and self.max_interruptions < 0:
            raise ValueError("max_interruptions must not be negative")
        if self.interruptions < 0 or self.running_for < timedelta(0):
            raise ValueError("interruptions and running_for must not be negative")

    @property
    def pauses_left(self) -> int | None:
        if self.max_interruptions is None:
            return None
        return max(0, self.max_interruptions - self.interruptions)

    @property
    def need_if_idle(self) -> timedelta:
        """Run time needed from the moment it runs again, if it does not run now."""
        if self.state is RunState.WAITING:
            return self.remaining
        return self.remaining + self.resume_overhead

    @property
    def latest_resume(self) -> datetime:
        """The last moment it may be idle: after it, it runs to the end."""
        return self.deadline - self.need_if_idle

    @property
    def min_segment(self) -> timedelta:
        """How long a run lasts at least: ``min_run``, and never less than a resume's
        overhead (a run paused before its overhead is spent would waste all of it)."""
        return max(self.min_run, self.resume_overhead)

    @property
    def may_pause(self) -> bool:
        """A running job may pause once its segment has run :attr:`min_segment`, with a
        pause left."""
        return self.running_for >= self.min_segment and self.pauses_left != 0


@dataclass(frozen=True, slots=True)
class Segment:
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class InterruptibleDecision:
    """Run or stay idle this tick, why, the plan from now and its expected mean intensity.

    ``segments`` are the planned runs from now (the first starts now when ``run``); their
    total is the remaining run time plus the overhead of each resume. ``expected_mean`` is
    the forecast's mean intensity over them, in gCO2e/kWh (None without a forecast, or when
    the plan was not asked for).
    """

    run: bool
    reason: RunReason
    segments: tuple[Segment, ...]
    expected_mean: float | None
    latest_resume: datetime
