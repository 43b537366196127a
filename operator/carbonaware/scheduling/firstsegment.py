"""The first start of an interruptible job, as the single-start policy's :class:`Decision`.

A held interruptible job is released when now is in its plan's cleanest segments
(:func:`~carbonaware.scheduling.interruptible.decide_interruptible`, never run yet); its
latest start is its deadline minus its work, the same as a job that may not pause. From then
on ``handlers.segmented`` decides at every tick whether it runs or pauses.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from carbonaware.api.carbonawarejob import Interruptible
from carbonaware.api.conditions import Reason
from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.interruptible import (
    InterruptibleJob,
    RunReason,
    RunState,
    decide_interruptible,
)
from carbonaware.scheduling.policy import Decision
from carbonaware.scheduling.view import ForecastView

#: How each reason of the interruptible policy reads as a release or hold reason.
REASONS = {
    RunReason.LOW_CARBON_SEGMENT: Reason.LOW_CARBON_SEGMENT,
    RunReason.WAITING_FOR_LOWER_INTENSITY: Reason.WAITING_FOR_LOWER_INTENSITY,
    RunReason.MINIMUM_RUN: Reason.MINIMUM_RUN,
    RunReason.NO_INTERRUPTIONS_LEFT: Reason.NO_INTERRUPTIONS_LEFT,
    RunReason.DEADLINE_REACHED: Reason.DEADLINE_REACHED,
    RunReason.FORECAST_UNAVAILABLE: Reason.FORECAST_UNAVAILABLE,
    RunReason.COMPLETE: Reason.LONGER_THAN_EXPECTED,
}


def rules_job(
    rules: Interruptible,
    *,
    remaining: timedelta,
    deadline: datetime,
    interruptions: int = 0,
    state: RunState = RunState.WAITING,
    running_for: timedelta = timedelta(0),
) -> InterruptibleJob:
    """The policy's view of a job with ``spec.schedule.interruptible`` = ``rules``."""
    return InterruptibleJob(
        remaining=remaining,
        deadline=deadline,
        min_run=timedelta(seconds=rules.min_run_seconds),
        max_interruptions=rules.max_interruptions,
        interruptions=interruptions,
        resume_overhead=timedelta(seconds=rules.resume_overhead_seconds),
        state=state,
        running_for=running_for,
    )


def decide_first_segment(
    rules: Interruptible,
    *,
    work: timedelta,
    deadline: datetime,
    view: ForecastView | None,
    current: IntensityPoint | None,
    now: datetime,
    tick: timedelta,
    provider_problem: str | None = None,
) -> Decision:
    """Release now, or hold until the plan's first segment; never past ``deadline - work``."""
    job = rules_job(rules, remaining=work, deadline=deadline)
    decided = decide_interruptible(job, view, now, tick)
    reason = REASONS[decided.reason]
    if decided.run and reason is Reason.FORECAST_UNAVAILABLE:
        reason = Reason.DEADLINE_REACHED
    planned = decided.segments[0].start if decided.segments else decided.latest_resume
    decision = Decision(
        release=decided.run,
        reason=reason,
        planned_start=now if decided.run else max(planned, now),
        planned_window_mean=decided.expected_mean,
        latest_start=decided.latest_resume,
        expected_duration=work,
        intensity_now=current.intensity if current is not None else None,
    )
    if provider_problem and reason is Reason.FORECAST_UNAVAILABLE:
        return dataclasses.replace(decision, provider_problem=provider_problem)
    return decision
