"""Deciding for held work and recording its plan (status, or annotations on a plain Job)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from carbonaware.api import display
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.scheduling.firstsegment import decide_first_segment
from carbonaware.scheduling.policy import Decision, JobRequest, decide, with_overrides


def request_of(work: HeldWork) -> JobRequest:
    return JobRequest(
        policy=work.policy,
        created=work.created,
        latest_start=work.latest_start,
        expected_duration=timedelta(seconds=work.expected_duration_seconds),
        max_intensity=work.max_intensity,
        max_index=work.max_index,
        priority=work.priority,
    )


def decide_for(
    ctx: OperatorContext, work: HeldWork, snapshot: RegionSnapshot | None, now: datetime
) -> Decision:
    """The policy's decision as a person's overrides change it (``api.overrides``); the
    horizon is the longest a next tick may take to come."""
    if work.interruptible is not None:
        duration = timedelta(seconds=work.expected_duration_seconds)
        decision = decide_first_segment(
            work.interruptible,
            work=duration,
            deadline=work.latest_start + duration,
            view=snapshot.view if snapshot else None,
            current=snapshot.current if snapshot else None,
            now=now,
            tick=ctx.horizon(),
            provider_problem=snapshot.error if snapshot else None,
        )
        return with_overrides(decision, work.overrides, now)
    decision = decide(
        request_of(work),
        snapshot.view if snapshot else None,
        snapshot.current if snapshot else None,
        now,
        ctx.horizon(),
        provider_problem=snapshot.error if snapshot else None,
    )
    return with_overrides(decision, work.overrides, now)


def display_update(
    work: HeldWork, snapshot: RegionSnapshot | None, now: datetime
) -> dict[str, Any] | None:
    """What a held CarbonAwareJob's status says about "now" that is out of date, if anything:
    the current intensity (the value the metric shows) and the relative planned start. Plain
    Jobs have no such columns. Each changes a few times an hour at most (the provider's
    period, ``display.relative_start``'s steps), so refreshing them is no patch storm."""
    if work.kind is not WorkKind.CARBON_AWARE_JOB or snapshot is None or snapshot.current is None:
        return None
    status = work.body.get("status") or {}
    current = round(snapshot.current.intensity, 2)
    wanted = {
        "intensityDisplay": display.intensity(current),
        "plannedStartDisplay": display.relative_start(work.planned_start, now),
    }
    recorded = status.get("intensity") or {}
    if recorded.get("current") == current and all(status.get(k) == v for k, v in wanted.items()):
        return None
    return {**wanted, "intensity": {"current": current, "source": snapshot.current.source}}


async def write_display(ctx: OperatorContext, work: HeldWork, doc: dict[str, Any]) -> None:
    """Merge-patch the refreshed "now" values. Caller holds the object's lock."""
    written = await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
    work.body["status"] = written.get("status") or work.body.get("status")


def place_of(placement: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """The (target, region) a ``status.placement`` names."""
    return (placement or {}).get("target"), (placement or {}).get("region")


def plan_changed(work: HeldWork, decision: Decision, reason: Reason, now: datetime) -> bool:
    """Whether the plan differs from the one recorded. A job already due (waiting for a slot
    or the release cap) keeps its recorded planned start: rewriting it to "now" at every look
    would be a write, and for a plain Job a new event, each time."""
    if work.held_reason != reason.value:
        return True
    if work.placed and place_of(work.placement) != place_of(
        (work.body.get("status") or {}).get("placement")
    ):
        return True
    if work.planned_start is not None and work.planned_start <= now >= decision.planned_start:
        return False
    return work.planned_start != decision.planned_start


FORECAST_REASONS = (Reason.WAITING_FOR_LOWER_INTENSITY, Reason.WAITING_FOR_THRESHOLD)


def forecast_note(snapshot: RegionSnapshot | None, reason: Reason) -> str:
    """Which forecast sources a plan trusted at which leads, when it planned on the blend."""
    view = snapshot.view if snapshot is not None else None
    if reason in FORECAST_REASONS and view is not None and view.source.startswith("blend"):
        return f" Forecast: {view.source}."
    return ""


async def write_held(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    snapshot: RegionSnapshot | None,
    now: datetime,
    *,
    reason: Reason | None = None,
    message: str | None = None,
) -> None:
    """Record a (new) plan for a held job. Caller holds the object's lock."""
    body_status = work.body.get("status") or {}
    intensity = body_status.get("intensity") or {}
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    reason = reason or decision.reason
    message = message or decision.message
    if work.placed:
        message += status_docs.placement_message(work.placement, "Planned")
    message += forecast_note(snapshot, reason)
    if snapshot is not None and snapshot.warning:
        message = f"{message} Warning: {snapshot.warning}."
    doc = status_docs.held(
        body_status.get("conditions") or [],
        reason=reason,
        message=message,
        now=now,
        generation=work.generation,
        region=work.region,
        latest_start=work.latest_start,
        latest_start_bound=work.latest_start_bound,
        planned_start=decision.planned_start,
        planned_window_mean=decision.planned_window_mean,
        current=current,
        source=snapshot.source if snapshot else None,
        at_creation=intensity.get("atCreation", current),
    )
    if work.placed:
        doc["placement"] = work.placement  # None clears a place that is gone
    if work.kind is WorkKind.CARBON_AWARE_JOB:
        written = await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
        work.body["status"] = written.get("status", doc)
    else:
        annotations = status_docs.plain_job_annotations(doc, reason=reason)
        if annotations.get("carbonaware.io/intensity-at-creation") is None and current is not None:
            annotations["carbonaware.io/intensity-at-creation"] = f"{current:g}"
        current_annotations = (work.body.get("metadata") or {}).get("annotations") or {}
        changed = {k: v for k, v in annotations.items() if current_annotations.get(k) != v}
        if changed:  # an unchanged write would only trigger this Job's handlers again
            written = await ctx.kube.patch_job(
                work.namespace, work.name, {"metadata": {"annotations": changed}}
            )
            work.body["metadata"] = written.get("metadata") or work.body.get("metadata", {})
    announce_hold_change(ctx, work, reason, message)
    work.planned_start = decision.planned_start
    work.held_reason = reason.value


def announce_hold_change(
    ctx: OperatorContext, work: HeldWork, reason: Reason, message: str
) -> None:
    """An Event when a hold override starts or ends holding (who asked is in the message)."""
    was_held_on_request = work.held_reason == Reason.HELD_ON_REQUEST.value
    if reason is Reason.HELD_ON_REQUEST and not was_held_on_request:
        events.info(ctx.kube, work.body, reason=Reason.HELD_ON_REQUEST.value, message=message)
    elif was_held_on_request and reason is not Reason.HELD_ON_REQUEST:
        events.info(
            ctx.kube, work.body, reason="HoldRemoved",
            message=f"The hold annotation was removed. {reason.value}: {message}",
        )  # fmt: skip
