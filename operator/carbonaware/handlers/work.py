"""Parsing watched objects into :class:`HeldWork` (CarbonAwareJobs and plain Jobs alike)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import (
    MAX_INTENSITY,
    MAX_PRIORITY,
    MAX_SECONDS,
    CarbonAwareJobSpec,
    IndexLevel,
    Schedule,
    SchedulePolicy,
)
from carbonaware.api.overrides import overrides_of
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
    labels.INTERRUPTIBLE: "interruptible",
}

# What each annotation must hold: the second half of every message about a bad value.
ANNOTATION_RULES = {
    labels.POLICY: f"must be one of {', '.join(SchedulePolicy)}",
    labels.MAX_DELAY_SECONDS: f"must be a whole number of seconds from 0 to {MAX_SECONDS}",
    labels.DEADLINE_TIME: "must be an RFC 3339 time with a zone, such as 2030-01-31T18:00:00Z",
    labels.EXPECTED_DURATION_SECONDS: f"must be a whole number of seconds from 1 to {MAX_SECONDS}",
    labels.MAX_INTENSITY: f"must be a whole number of gCO2e/kWh from 0 to {MAX_INTENSITY}",
    labels.MAX_INDEX: f"must be one of {', '.join(IndexLevel)}",
    labels.PRIORITY: f"must be a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}",
    labels.REGION: "must be a region key of at most 64 characters (GB, GB-13, DE...)",
    labels.INTERRUPTIBLE: (
        'must be a JSON object such as {"minRunSeconds": 3600, "maxInterruptions": 4, '
        '"resumeOverheadSeconds": 300}: minRunSeconds 60 to 31536000 (required), '
        "maxInterruptions 0 to 1000, resumeOverheadSeconds 0 to 31536000"
    ),
}
THRESHOLD_ANNOTATIONS = (labels.MAX_INTENSITY, labels.MAX_INDEX)
# Plain ASCII digits only: int() would also take "1_000" or other scripts' digits.
WHOLE_NUMBER = re.compile(r"[+-]?[0-9]{1,19}")
MAX_REGION_LENGTH = 64
SHOWN_VALUE_LENGTH = 64


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


def held_body(body: Any) -> dict[str, Any]:
    """The object as the index of held work keeps it: all but ``metadata.managedFields``.

    Those field-ownership records are for the API server; nothing here reads them, and
    with thousands of held jobs they would be a large share of the index's memory
    (bench/scale.py measures the operator's RSS with 10,000 held).
    """
    kept = dict(body)
    meta = kept.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        kept["metadata"] = {key: value for key, value in meta.items() if key != "managedFields"}
    return kept


def recorded_plan(status: Any) -> tuple[datetime | None, str | None]:
    """The planned start and Held reason last written to a status (to skip rewriting them)."""
    planned = status.get("plannedStartTime")
    reason = next(
        (c.get("reason") for c in status.get("conditions") or [] if c.get("type") == "Held"),
        None,
    )
    return (parse_time(planned) if planned else None), reason


def work_from_carbonawarejob(
    body: Any, spec: CarbonAwareJobSpec, *, region: str, created: datetime | None = None
) -> HeldWork:
    """``created``: the creation time in operator time (default: ``creationTimestamp``)."""
    planned_start, held_reason = recorded_plan(body.get("status") or {})
    work = _held_work(
        body,
        WorkKind.CARBON_AWARE_JOB,
        spec.schedule,
        region=region,
        priority=spec.priority,
        target=job_target(body),
        created=created,
        planned_start=planned_start,
        held_reason=held_reason,
    )
    if spec.ssh is not None and spec.ssh.target_selector is not None:
        work.selector = spec.ssh.target_selector
    if spec.placement is not None:
        work.regions = tuple(spec.placement.regions)
    return work


def job_target(body: Any) -> TargetKey | None:
    """The ServerTarget of an SSH job: ``spec.ssh.targetRef``, or for a ``targetSelector``
    the one recorded in ``status.placement`` (chosen at release, or planned while held)."""
    ssh = (body.get("spec") or {}).get("ssh")
    if not isinstance(ssh, Mapping):
        return None
    name = (ssh.get("targetRef") or {}).get("name") or (
        (body.get("status") or {}).get("placement") or {}
    ).get("target")
    return (str((body.get("metadata") or {}).get("namespace")), str(name)) if name else None


def _held_work(
    body: Any,
    kind: WorkKind,
    schedule: Schedule,
    *,
    region: str,
    priority: int,
    target: TargetKey | None,
    created: datetime | None,
    planned_start: datetime | None,
    held_reason: str | None,
) -> HeldWork:
    meta = body["metadata"]
    created = created or created_at(body)
    latest_start, bound = schedule.latest_start_bound(created)
    return HeldWork(
        kind=kind,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        region=region,
        policy=schedule.policy,
        created=created,
        latest_start=latest_start,
        latest_start_bound=bound.value,
        expected_duration_seconds=schedule.expected_duration_seconds,
        max_intensity=float(schedule.max_intensity) if schedule.max_intensity is not None else None,
        max_index=schedule.max_index.as_index() if schedule.max_index else None,
        priority=priority,
        target=target,
        planned_start=planned_start,
        held_reason=held_reason,
        body=held_body(body),
        overrides=overrides_of(meta),
        interruptible=schedule.interruptible,
    )


def bad_annotation(key: str, value: object) -> str:
    """``annotation <key> must ..., got '<value>'``: what is wrong and what to write instead."""
    shown = str(value)
    if len(shown) > SHOWN_VALUE_LENGTH:
        shown = shown[:SHOWN_VALUE_LENGTH] + "..."
    return f"annotation {key} {ANNOTATION_RULES[key]}, got {shown!r}"


def threshold_problem(annotations: dict[str, str]) -> str:
    """The message for a schedule whose fields are each fine but do not fit together."""
    present = [key for key in THRESHOLD_ANNOTATIONS if key in annotations]
    if present:
        names = " and ".join(f"annotation {key}" for key in present)
        return (
            f"{names} must only be set with {labels.POLICY} Threshold; remove "
            f"{'it' if len(present) == 1 else 'them'} or set {labels.POLICY} to Threshold"
        )
    return (
        f"annotation {labels.POLICY} Threshold must come with {labels.MAX_INTENSITY} "
        f"(gCO2e/kWh) or {labels.MAX_INDEX} ({', '.join(IndexLevel)})"
    )


def schedule_from_annotations(annotations: dict[str, str]) -> Schedule:
    """The schedule of a plain Job, from its ``carbonaware.io/...`` annotations.

    Raises :class:`SpecError` naming every annotation that must change, and nothing else
    whatever the annotations hold (they are free text written by users).
    """
    raw: dict[str, Any] = {
        field: annotations[key] for key, field in SCHEDULE_ANNOTATIONS.items() if key in annotations
    }
    if "interruptible" in raw:
        with contextlib.suppress(ValueError):  # not JSON: the model refuses the text
            raw["interruptible"] = json.loads(raw["interruptible"])
    try:
        return Schedule.model_validate(raw)
    except ValidationError as exc:
        inverse = {field: key for key, field in SCHEDULE_ANNOTATIONS.items()}
        parts: list[str] = []
        for problem in exc.errors():
            key = inverse.get(str(problem["loc"][0])) if problem["loc"] else None
            if key:
                message = bad_annotation(key, annotations[key])
            elif "interruptible" in str(problem["msg"]):
                message = (
                    f"annotation {labels.INTERRUPTIBLE} must only be set with {labels.POLICY} "
                    f"Forecast; remove it or set {labels.POLICY} to Forecast"
                )
            else:
                message = threshold_problem(annotations)
            if message not in parts:
                parts.append(message)
        raise SpecError("; ".join(parts)) from exc


def priority_from_annotations(annotations: dict[str, str]) -> int:
    text = annotations.get(labels.PRIORITY)
    if text is None:
        return 0
    if WHOLE_NUMBER.fullmatch(text.strip()) is None:
        raise SpecError(bad_annotation(labels.PRIORITY, text))
    priority = int(text)
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise SpecError(bad_annotation(labels.PRIORITY, text))
    return priority


def region_from_annotations(annotations: dict[str, str], default_region: str) -> str:
    region = annotations.get(labels.REGION)
    if not region:
        return default_region
    if len(region) > MAX_REGION_LENGTH:
        raise SpecError(bad_annotation(labels.REGION, region))
    return region


def recorded_planned_start(annotations: dict[str, str]) -> datetime | None:
    """The planned start the operator wrote last time; anything unreadable is rewritten."""
    text = annotations.get(labels.PLANNED_START_TIME)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.utcoffset() is not None else None


def work_from_plain_job(
    body: Any, *, default_region: str, created: datetime | None = None
) -> HeldWork:
    """A managed plain Job as held work. Bad annotations raise :class:`SpecError` (all of
    them in one message); nothing else escapes, so the caller can mark the Job and go on."""
    meta = body["metadata"]
    annotations: dict[str, str] = dict(meta.get("annotations") or {})
    problems: list[str] = []
    schedule: Schedule | None = None
    priority = 0
    region = default_region
    try:
        schedule = schedule_from_annotations(annotations)
    except SpecError as exc:
        problems.append(str(exc))
    try:
        priority = priority_from_annotations(annotations)
    except SpecError as exc:
        problems.append(str(exc))
    try:
        region = region_from_annotations(annotations, default_region)
    except SpecError as exc:
        problems.append(str(exc))
    if problems or schedule is None:
        raise SpecError("; ".join(problems))
    return _held_work(
        body,
        WorkKind.JOB,
        schedule,
        region=region,
        priority=priority,
        target=None,
        created=created,
        planned_start=recorded_planned_start(annotations),
        held_reason=annotations.get(labels.REASON),
    )
