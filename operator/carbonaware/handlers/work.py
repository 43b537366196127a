"""Parsing watched objects into :class:`HeldWork` (CarbonAwareJobs and plain Jobs alike)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import CarbonAwareJobSpec, Schedule
from carbonaware.errors import SpecError
from carbonaware.handlers.state import HeldWork, TargetKey, WorkKind

# Annotation on a plain Job -> field of Schedule
SCHEDULE_ANNOTATIONS = {
    labels.POLICY: "policy",
    labels.MAX_DELAY_SECONDS: "maxDelaySeconds",
    labels.DEADLINE_TIME: "deadlineTime",
    labels.EXPECTED_DURATION_SECONDS: "expectedDurationSeconds",
    labels.MAX_INTENSITY: "maxIntensity",
    labels.MAX_INDEX: "maxIndex",
}


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the API server writes it (``2024-05-01T10:00:00Z``), in UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


def optional_time(text: Any) -> datetime | None:
    return parse_time(text) if isinstance(text, str) and text else None


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """One sentence per problem, naming the field the user must change."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(step) for step in problem["loc"] if step)
        parts.append(f"{prefix}{'.' if where else ''}{where}: {problem['msg']}")
    return "; ".join(parts)


def parse_spec(spec: Any) -> CarbonAwareJobSpec:
    try:
        return CarbonAwareJobSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, "spec")) from exc


def created_at(body: Any) -> datetime:
    stamp = body.get("metadata", {}).get("creationTimestamp")
    return parse_time(stamp) if stamp else datetime.now(UTC)


def recorded_plan(status: Any) -> tuple[datetime | None, str | None]:
    """The planned start and Held reason last written to a status (to skip rewriting them)."""
    planned = status.get("plannedStartTime")
    reason = next(
        (c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Held"),
        None,
    )
    return (parse_time(planned) if planned else None), reason


def work_from_carbonawarejob(body: Any, spec: CarbonAwareJobSpec, *, region: str) -> HeldWork:
    meta = body["metadata"]
    planned_start, held_reason = recorded_plan(body.get("status") or {})
    created = created_at(body)
    schedule = spec.schedule
    target: TargetKey | None = (meta["namespace"], spec.ssh.target_ref.name) if spec.ssh else None
    return HeldWork(
        kind=WorkKind.CARBON_AWARE_JOB,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        region=region,
        policy=schedule.policy,
        created=created,
        latest_start=schedule.latest_start(created),
        expected_duration_seconds=schedule.expected_duration_seconds,
        max_intensity=float(schedule.max_intensity) if schedule.max_intensity is not None else None,
        max_index=schedule.max_index.as_index() if schedule.max_index else None,
        priority=spec.priority,
        target=target,
        planned_start=planned_start,
        held_reason=held_reason,
        body=dict(body),
    )


def schedule_from_annotations(annotations: dict[str, str]) -> Schedule:
    """The schedule of a plain Job, from its ``carbonaware.io/...`` annotations."""
    raw = {
        field: annotations[key] for key, field in SCHEDULE_ANNOTATIONS.items() if key in annotations
    }
    try:
        return Schedule.model_validate(raw)
    except ValidationError as exc:
        inverse = {field: key for key, field in SCHEDULE_ANNOTATIONS.items()}
        parts = []
        for problem in exc.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            parts.append(f"annotation {inverse.get(field, 'schedule')}: {problem['msg']}")
        raise SpecError("; ".join(parts)) from exc


def work_from_plain_job(body: Any, *, default_region: str) -> HeldWork:
    meta = body["metadata"]
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    schedule = schedule_from_annotations(annotations)
    try:
        priority = int(annotations.get(labels.PRIORITY, "0"))
    except ValueError as exc:
        raise SpecError(f"annotation {labels.PRIORITY} must be an integer") from exc
    created = created_at(body)
    planned = annotations.get(labels.PLANNED_START_TIME)
    return HeldWork(
        kind=WorkKind.JOB,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        region=annotations.get(labels.REGION) or default_region,
        policy=schedule.policy,
        created=created,
        latest_start=schedule.latest_start(created),
        expected_duration_seconds=schedule.expected_duration_seconds,
        max_intensity=float(schedule.max_intensity) if schedule.max_intensity is not None else None,
        max_index=schedule.max_index.as_index() if schedule.max_index else None,
        priority=priority,
        target=None,
        planned_start=parse_time(planned) if planned else None,
        held_reason=annotations.get(labels.REASON),
        body=dict(body),
    )
