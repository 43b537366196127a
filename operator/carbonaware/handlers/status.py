"""Status documents for each transition of a CarbonAwareJob, and their plain-Job annotations.

Pure functions: the handlers and the refresh loop decide, these say what to write. Every
write carries the full ``conditions`` list (a JSON merge patch replaces lists whole).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from carbonaware.api import display, labels
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    JobState,
    Reason,
    format_time,
    set_condition,
)
from carbonaware.handlers.segmentdocs import opened
from carbonaware.handlers.work import parse_time

Status = dict[str, Any]
Conditions = list[dict[str, object]]

RELEASE_REASONS = frozenset(
    {
        Reason.LOW_CARBON_WINDOW,
        Reason.LOW_CARBON_SEGMENT,
        Reason.THRESHOLD_MET,
        Reason.DEADLINE_REACHED,
        Reason.IMMEDIATE,
        Reason.PROVIDER_UNAVAILABLE,
    }
)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def held(
    conditions: Conditions,
    *,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None,
    region: str,
    latest_start: datetime,
    latest_start_bound: str | None = None,
    planned_start: datetime | None,
    planned_window_mean: float | None,
    current: float | None,
    source: str | None,
    at_creation: float | None,
) -> Status:
    updated = set_condition(
        conditions,
        type=ConditionType.HELD,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    updated = set_condition(
        updated,
        type=ConditionType.RELEASED,
        status=ConditionStatus.FALSE,
        reason=reason,
        message="Not released yet.",
        now=now,
        generation=generation,
    )
    intensity = {
        "current": _round(current),
        "atCreation": _round(at_creation),
        "plannedWindowMean": _round(planned_window_mean),
        "source": source,
    }
    return {
        "conditions": updated,
        "state": JobState.HELD.value,
        # Held again (a refused create, or a plan made after an interrupted release): the
        # spec may be edited again.
        "releaseDecidedTime": None,
        "region": region,
        "latestStartTime": format_time(latest_start),
        "latestStartBound": latest_start_bound,
        "plannedStartTime": format_time(planned_start) if planned_start else None,
        "plannedStartDisplay": display.relative_start(planned_start, now),
        "intensityDisplay": display.intensity(current),
        "observedGeneration": generation,
        "intensity": {k: v for k, v in intensity.items() if v is not None},
    }


def released(
    conditions: Conditions,
    *,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None,
    region: str,
    latest_start: datetime,
    current: float | None,
    source: str | None,
    at_creation: float | None,
    latest_start_bound: str | None = None,
    job_name: str | None = None,
    pod_name: str | None = None,
) -> Status:
    updated = set_condition(
        conditions,
        type=ConditionType.HELD,
        status=ConditionStatus.FALSE,
        reason=reason,
        # The policy's release messages already begin with "Released ...".
        message=message if message.startswith("Released") else f"Released: {message}",
        now=now,
        generation=generation,
    )
    updated = set_condition(
        updated,
        type=ConditionType.RELEASED,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    # Unknown values at release are written as null, which a merge patch turns into "remove":
    # a value and source seen while the job was held must not pass for the release's.
    intensity = {
        "current": _round(current),
        "atRelease": _round(current),
        "source": source,
    }
    if at_creation is not None:
        intensity["atCreation"] = _round(at_creation)
    status: Status = {
        "conditions": updated,
        "state": JobState.RELEASED.value,
        "region": region,
        "latestStartTime": format_time(latest_start),
        "latestStartBound": latest_start_bound,
        "releaseTime": format_time(now),
        "plannedStartTime": None,  # the plan is done; a merge patch null removes it
        "plannedStartDisplay": None,
        "intensityDisplay": display.intensity(current),
        "observedGeneration": generation,
        "intensity": intensity,
    }
    if job_name:
        status["jobName"] = job_name
    if pod_name:
        status["podName"] = pod_name
    return status


def failed(
    conditions: Conditions,
    *,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None,
) -> Status:
    updated = set_condition(
        conditions,
        type=ConditionType.FAILED,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    return {
        "conditions": updated,
        "state": JobState.FAILED.value,
        "observedGeneration": generation,
        "completionTime": format_time(now),
    }


def cancelled(
    conditions: Conditions, *, message: str, now: datetime, generation: int | None
) -> Status:
    """Ended on request (``carbonaware.io/cancel``): Failed, reason Cancelled, not held."""
    doc = failed(
        conditions, reason=Reason.CANCELLED, message=message, now=now, generation=generation
    )
    held_condition = next(
        (c for c in doc["conditions"] if c.get("type") == ConditionType.HELD.value), None
    )
    if held_condition is not None and held_condition.get("status") == ConditionStatus.TRUE.value:
        doc["conditions"] = set_condition(
            doc["conditions"],
            type=ConditionType.HELD,
            status=ConditionStatus.FALSE,
            reason=Reason.CANCELLED,
            message=message,
            now=now,
            generation=generation,
        )
    doc["plannedStartTime"] = None
    doc["plannedStartDisplay"] = None
    return doc


def sci_display(sci: dict[str, Any]) -> str | None:
    """``status.sciDisplay`` for a ``status.sci`` document."""
    return display.sci(sci.get("perUnitGrams"), sci.get("functionalUnit"))


def plain_job_annotations(status: Status, *, reason: Reason) -> dict[str, str | None]:
    """The same facts for a plain Job, which has no status of ours: annotations."""
    intensity = status.get("intensity") or {}

    def number(value: float | None) -> str | None:
        return None if value is None else f"{value:g}"

    return {
        labels.STATE: status.get("state"),
        labels.REASON: reason.value,
        labels.PLANNED_START_TIME: status.get("plannedStartTime"),
        labels.LATEST_START_TIME: status.get("latestStartTime"),
        labels.LATEST_START_BOUND: status.get("latestStartBound"),
        labels.RELEASE_TIME: status.get("releaseTime"),
        labels.INTENSITY_AT_CREATION: number(intensity.get("atCreation")),
        labels.INTENSITY_AT_RELEASE: number(intensity.get("atRelease")),
    }


def plain_job_failed_annotations(*, reason: Reason) -> dict[str, str | None]:
    """A plain Job the operator gives up on: it stays suspended, marked Failed."""
    return {labels.STATE: JobState.FAILED.value, labels.REASON: reason.value}


def released_from_child(parent: dict[str, Any], child: dict[str, Any]) -> Status | None:
    """The release a child's annotations record (``handlers.release.release_facts``), as the
    parent's status, when the operator stopped after creating the child and before writing
    the release. None when the parent's release is recorded or the child carries no facts."""
    status = parent.get("status") or {}
    facts = (child.get("metadata") or {}).get("annotations") or {}
    if status.get("releaseTime") or not facts.get(labels.RELEASE_TIME):
        return None
    try:
        reason = Reason(str(facts.get(labels.REASON)))
        released_at = parse_time(facts[labels.RELEASE_TIME])
        latest_start = parse_time(facts.get(labels.LATEST_START_TIME) or "")
        at_release = facts.get(labels.INTENSITY_AT_RELEASE)
        current = float(at_release) if at_release else None
        generation = int(facts.get(labels.PARENT_GENERATION) or "")
    except ValueError:
        return None  # not our facts: the child is followed without them
    intensity = status.get("intensity") or {}
    region = str(facts.get(labels.REGION) or status.get("region") or "")
    doc = released(
        status.get("conditions") or [],
        reason=reason,
        message=f"Released ({reason.value}); recorded from the child after the operator restarted.",
        now=released_at,
        generation=generation,
        region=region,
        latest_start=latest_start,
        current=current,
        source=intensity.get("source") if current is not None else None,
        at_creation=intensity.get("atCreation"),
        latest_start_bound=status.get("latestStartBound"),
    )
    if ((parent.get("spec") or {}).get("schedule") or {}).get("interruptible"):
        doc.update(opened(doc, released_at, reason, doc["conditions"][-1]["message"]))
    target = ((child.get("metadata") or {}).get("labels") or {}).get(labels.TARGET_NAME)
    if target and ((parent.get("spec") or {}).get("ssh") or {}).get("targetSelector") is not None:
        doc["placement"] = {"target": target, "region": region}
    return doc


def plain_job_cancelled_annotations() -> dict[str, str | None]:
    """A managed plain Job cancelled on request: Failed, Cancelled, no plan left."""
    return {
        labels.STATE: JobState.FAILED.value,
        labels.REASON: Reason.CANCELLED.value,
        labels.PLANNED_START_TIME: None,
    }


def placement_message(placement: dict[str, Any] | None, verb: str = "Placed") -> str:
    """Why this place (``status.placement``), for the condition message and the Event."""
    if not placement:
        return ""
    basis = "emissions" if placement.get("expectedGrams") is not None else "grid intensity"
    count = placement.get("candidates", 1)
    text = (
        f" {verb} {_where(placement)}, the lowest expected {basis} of {count} "
        f"place{'s' if count != 1 else ''}{_expected(placement)}"
    )
    runner_up = placement.get("runnerUp")
    if runner_up:
        text += f"; runner-up {_where(runner_up)}{_expected(runner_up)}"
    return text + "."


def _where(doc: dict[str, Any]) -> str:
    if doc.get("target"):
        return f"on ServerTarget {doc['target']} (region {doc.get('region')})"
    return f"in region {doc.get('region')}"


def _expected(doc: dict[str, Any]) -> str:
    parts = []
    if doc.get("expectedGrams") is not None:
        parts.append(f"{doc['expectedGrams']:g} gCO2e for the run")
    if doc.get("expectedIntensity") is not None:
        parts.append(f"{doc['expectedIntensity']:g} gCO2e/kWh")
    return f": {', '.join(parts)}" if parts else ""
