"""The release decision for one held job at one tick: pure, cheap, the same in the simulator.

Invariant kept by every branch: a job is never released after its latest start. The
operator only acts at ticks, so :func:`decide` releases whenever the next tick
(``now + tick``) would already be past the latest start, whatever the data says.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import Schedule, SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.durations import format_duration
from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.api.overrides import HoldMode, Overrides
from carbonaware.scheduling.view import ForecastView

UNIT = "gCO2e/kWh"


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What the policy needs to know about a held job (see ``Schedule`` in the API)."""

    policy: SchedulePolicy
    created: datetime
    latest_start: datetime
    expected_duration: timedelta
    max_intensity: float | None = None
    max_index: IntensityIndex | None = None
    priority: int = 0

    @classmethod
    def from_schedule(
        cls, schedule: Schedule, created: datetime, *, priority: int = 0
    ) -> JobRequest:
        """The request for a ``CarbonAwareJob`` spec created at ``created``."""
        return cls(
            policy=schedule.policy,
            created=created,
            latest_start=schedule.latest_start(created),
            expected_duration=timedelta(seconds=schedule.expected_duration_seconds),
            max_intensity=float(schedule.max_intensity)
            if schedule.max_intensity is not None
            else None,
            max_index=schedule.max_index.as_index() if schedule.max_index is not None else None,
            priority=priority,
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """Release now or keep holding, why, and when the policy expects to start.

    ``planned_start`` feeds ``status.plannedStartTime`` (``now`` when released);
    ``planned_window_mean`` is the expected mean intensity over the planned run, in
    gCO2e/kWh, when a forecast gave one. ``message`` is a sentence for the condition;
    ``provider_problem`` (why the provider gave no data, e.g. an unknown region) is quoted
    in it when the decision was made without data.
    """

    release: bool
    reason: Reason
    planned_start: datetime
    planned_window_mean: float | None
    latest_start: datetime
    expected_duration: timedelta
    mean_now: float | None = None
    threshold: str | None = None
    provider_problem: str | None = None
    requested_by: str | None = None
    """Who set the override this decision follows (release-now or hold), if any."""
    forced: bool = False
    """A hold that the deadline does not end (``carbonaware.io/hold: force``)."""
    intensity_now: float | None = None
    """The region's current intensity, the one value called "now" everywhere (status
    ``intensity.current``, the ``carbonaware_grid_intensity_grams_per_kwh`` metric).
    ``mean_now`` may be a window mean (a run started now), and is labelled so."""

    @property
    def message(self) -> str:
        return _message(self)


def decision_horizon(tick: timedelta, recent_gaps: Iterable[timedelta] = ()) -> timedelta:
    """How far ahead a decision must look to keep the deadline in a live loop.

    The next decision comes a tick later only in theory: a slow API server or a long tick
    makes it later. Looking twice the tick ahead, or one and a half times the longest gap
    seen lately when ticks have been slower than that, releases a job before a late next
    tick would miss its latest start. The price is a start up to two ticks early.
    """
    longest = max(recent_gaps, default=tick)
    return max(2 * tick, longest * 1.5)


def decide(
    job: JobRequest,
    view: ForecastView | None,
    current: IntensityPoint | None,
    now: datetime,
    tick: timedelta,
    *,
    provider_problem: str | None = None,
) -> Decision:
    """Decide for one job at ``now``; the next decision happens at ``now + tick``.

    ``view`` is the region's forecast (shared by every job of the region this tick) or None
    when the provider has none; ``current`` is the latest measured or estimated intensity.
    ``provider_problem`` is the provider's own explanation of missing data, passed through
    to the message of decisions that lack data (it never changes the decision).
    """
    if tick <= timedelta(0):
        raise ValueError("tick must be positive")
    if job.policy is SchedulePolicy.IMMEDIATE:
        decision = _decide_immediate(job, view, current, now)
    elif job.policy is SchedulePolicy.THRESHOLD:
        decision = _decide_threshold(job, view, current, now, tick)
    else:
        decision = _decide_forecast(job, view, current, now, tick)
    decision = dataclasses.replace(
        decision, intensity_now=current.intensity if current is not None else None
    )
    if provider_problem and decision.reason in _WITHOUT_DATA:
        return dataclasses.replace(decision, provider_problem=provider_problem)
    return decision


_WITHOUT_DATA = frozenset({Reason.FORECAST_UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE})
# Releases that keep the deadline: a plain hold override lets them through.
_DEADLINE_RELEASES = frozenset({Reason.DEADLINE_REACHED, Reason.PROVIDER_UNAVAILABLE})


def with_overrides(decision: Decision, overrides: Overrides, now: datetime) -> Decision:
    """The policy's ``decision`` as a person's overrides change it (see ``api.overrides``).

    release-now releases at once; hold keeps holding, except that a deadline release still
    goes unless the hold is forced; release-now wins over hold. Cancel is not a decision:
    the caller ends the job before deciding.
    """
    if overrides.release_now:
        return dataclasses.replace(
            decision,
            release=True,
            reason=Reason.MANUAL_RELEASE,
            planned_start=now,
            requested_by=overrides.release_now_by,
        )
    if overrides.hold is None:
        return decision
    forced = overrides.hold is HoldMode.FORCE
    if decision.release and decision.reason in _DEADLINE_RELEASES and not forced:
        return decision
    return dataclasses.replace(
        decision,
        release=False,
        reason=Reason.HELD_ON_REQUEST,
        planned_start=decision.latest_start,
        requested_by=overrides.hold_by,
        forced=forced,
    )


def _decide_immediate(
    job: JobRequest, view: ForecastView | None, current: IntensityPoint | None, now: datetime
) -> Decision:
    mean = _mean_now(job, view, current)
    return Decision(
        release=True,
        reason=Reason.IMMEDIATE,
        planned_start=now,
        planned_window_mean=mean,
        latest_start=job.latest_start,
        expected_duration=job.expected_duration,
        mean_now=mean,
    )


def _decide_forecast(
    job: JobRequest,
    view: ForecastView | None,
    current: IntensityPoint | None,
    now: datetime,
    tick: timedelta,
) -> Decision:
    latest = job.latest_start
    next_tick = now + tick
    planned = None
    mean_now = None
    if view is not None:
        slots = view.slots_for(job.expected_duration)
        planned = view.best_window(slots, view.last_start_slot(latest))
        mean_now = view.mean_now(slots)
    if planned is None or view is None:
        if next_tick > latest:
            return _release_at_latest(job, view, current, now)
        return Decision(
            release=False,
            reason=Reason.FORECAST_UNAVAILABLE,
            planned_start=latest,
            planned_window_mean=None,
            latest_start=latest,
            expected_duration=job.expected_duration,
            mean_now=current.intensity if current is not None else None,
        )
    start = view.start_of(planned.slot)
    if start < next_tick:
        return Decision(
            release=True,
            reason=Reason.LOW_CARBON_WINDOW,
            planned_start=now,
            planned_window_mean=planned.mean,
            latest_start=latest,
            expected_duration=job.expected_duration,
            mean_now=mean_now,
        )
    if next_tick > latest:  # unreachable while start <= latest; kept so the invariant is local
        return _release_at_latest(job, view, current, now)
    return Decision(
        release=False,
        reason=Reason.WAITING_FOR_LOWER_INTENSITY,
        planned_start=start,
        planned_window_mean=planned.mean,
        latest_start=latest,
        expected_duration=job.expected_duration,
        mean_now=mean_now,
    )


def _decide_threshold(
    job: JobRequest,
    view: ForecastView | None,
    current: IntensityPoint | None,
    now: datetime,
    tick: timedelta,
) -> Decision:
    latest = job.latest_start
    threshold = _threshold_text(job)
    if current is not None and _meets(job, current):
        mean = _mean_now(job, view, current)
        return Decision(
            release=True,
            reason=Reason.THRESHOLD_MET,
            planned_start=now,
            planned_window_mean=mean,
            latest_start=latest,
            expected_duration=job.expected_duration,
            mean_now=current.intensity,
            threshold=threshold,
        )
    if now + tick > latest:
        return _release_at_latest(job, view, current, now)
    planned_start = latest
    planned_mean = None
    if view is not None:
        last = view.last_start_slot(latest)
        slot = view.first_slot_meeting(
            last, max_intensity=job.max_intensity, max_index=job.max_index
        )
        if slot is not None and slot > 0:
            planned_start = view.start_of(slot)
            window = view.table(view.slots_for(job.expected_duration)).means
            if slot < len(window) and not math.isnan(window[slot]):
                planned_mean = window[slot]
    return Decision(
        release=False,
        reason=Reason.FORECAST_UNAVAILABLE if current is None else Reason.WAITING_FOR_THRESHOLD,
        planned_start=planned_start,
        planned_window_mean=planned_mean,
        latest_start=latest,
        expected_duration=job.expected_duration,
        mean_now=current.intensity if current is not None else None,
        threshold=threshold,
    )


def _release_at_latest(
    job: JobRequest, view: ForecastView | None, current: IntensityPoint | None, now: datetime
) -> Decision:
    """The latest start has come: release whatever the data, saying whether there was any."""
    no_data = view is None and current is None
    mean = _mean_now(job, view, current)
    return Decision(
        release=True,
        reason=Reason.PROVIDER_UNAVAILABLE if no_data else Reason.DEADLINE_REACHED,
        planned_start=now,
        planned_window_mean=mean,
        latest_start=job.latest_start,
        expected_duration=job.expected_duration,
        mean_now=mean,
        threshold=_threshold_text(job) if job.policy is SchedulePolicy.THRESHOLD else None,
    )


def _meets(job: JobRequest, current: IntensityPoint) -> bool:
    if job.max_intensity is not None and current.intensity <= job.max_intensity:
        return True
    return (
        job.max_index is not None and current.index is not None and current.index <= job.max_index
    )


def _mean_now(
    job: JobRequest, view: ForecastView | None, current: IntensityPoint | None
) -> float | None:
    if view is not None:
        mean = view.mean_now(view.slots_for(job.expected_duration))
        if mean is not None:
            return mean
    return current.intensity if current is not None else None


def _threshold_text(job: JobRequest) -> str:
    parts = []
    if job.max_intensity is not None:
        parts.append(f"at most {job.max_intensity:g} {UNIT}")
    if job.max_index is not None:
        parts.append(f"index {job.max_index.api_name} or lower")
    return " or ".join(parts) or "no threshold"


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _grams(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} {UNIT}"


def _problem(decision: Decision) -> str:
    return f" ({decision.provider_problem})" if decision.provider_problem else ""


def _message(decision: Decision) -> str:
    """A sentence for the condition message that says what happens next and why."""
    reason = decision.reason
    run = format_duration(decision.expected_duration)
    latest = _time(decision.latest_start)
    if reason is Reason.IMMEDIATE:
        return "Released at once: the policy is Immediate."
    if reason is Reason.MANUAL_RELEASE:
        return (
            f"Released on request: annotation {labels.RELEASE_NOW} set by "
            f"{decision.requested_by} (intensity now {_grams(decision.intensity_now)})."
        )
    if reason is Reason.HELD_ON_REQUEST and decision.forced:
        return (
            f"Held on request past any deadline: annotation {labels.HOLD}=force set by "
            f"{decision.requested_by}; it is released only when the annotation is removed."
        )
    if reason is Reason.HELD_ON_REQUEST:
        return (
            f"Held on request: annotation {labels.HOLD} set by {decision.requested_by}; "
            f'the deadline still releases it at {latest} (set the annotation to "force" '
            "to hold past it, remove it to let the policy decide)."
        )
    if reason is Reason.LOW_CARBON_WINDOW:
        return (
            f"Released: starting now is the lowest-carbon {run} window before the latest start "
            f"{latest} (expected {run} window mean {_grams(decision.planned_window_mean)}; "
            f"intensity now {_grams(decision.intensity_now)})."
        )
    if reason is Reason.LOW_CARBON_SEGMENT:
        return (
            f"Released: now is in the lowest-carbon segments that give the {run} of run time "
            f"before the deadline (expected mean {_grams(decision.planned_window_mean)}; "
            f"intensity now {_grams(decision.intensity_now)}); it may pause in dirtier hours."
        )
    if reason is Reason.THRESHOLD_MET:
        return (
            f"Released: the grid intensity now is {_grams(decision.intensity_now)}, within the "
            f"threshold ({decision.threshold})."
        )
    if reason is Reason.DEADLINE_REACHED:
        return (
            f"Released at the latest start {latest} so the run can meet its deadline "
            f"(intensity now {_grams(decision.intensity_now)})."
        )
    if reason is Reason.PROVIDER_UNAVAILABLE:
        return (
            f"Released at the latest start {latest} without any intensity data: the provider "
            f"gave neither a forecast nor a current value{_problem(decision)}."
        )
    if reason is Reason.WAITING_FOR_LOWER_INTENSITY:
        return (
            f"Held for the lower-carbon window starting {_time(decision.planned_start)} "
            f"(expected {run} window mean {_grams(decision.planned_window_mean)}, against a "
            f"{run} window mean of {_grams(decision.mean_now)} if started now; intensity now "
            f"{_grams(decision.intensity_now)}); it starts by {latest} at the latest."
        )
    if reason is Reason.WAITING_FOR_THRESHOLD:
        expected = (
            f"; the forecast expects it from {_time(decision.planned_start)}"
            if decision.planned_start < decision.latest_start
            else ""
        )
        return (
            f"Held until the grid intensity is {decision.threshold} (now "
            f"{_grams(decision.intensity_now)}){expected}; it starts by {latest} at the latest."
        )
    if reason is Reason.NO_TARGET_AVAILABLE:
        return (
            "Held: no ServerTarget that spec.ssh.targetSelector selects in this namespace is "
            f"known and reachable; the job fails at its latest start {latest} if none is by then."
        )
    if reason is Reason.FORECAST_UNAVAILABLE:
        missing = "current intensity" if decision.threshold else "forecast before the latest start"
        return (
            f"Held: the provider has no usable {missing} for this region{_problem(decision)}; "
            f"the job is released by {latest} at the latest whatever happens."
        )
    return f"{reason.value}: latest start {latest}."
