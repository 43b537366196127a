"""Condition types, reasons and the status vocabulary shared by both resources.

Types are adjectives or past participles; reasons are CamelCase words (Kubernetes API
conventions). The printer column ``State`` is derived from the conditions.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from pydantic import Field

from carbonaware.api.base import ApiModel


class ConditionType(enum.StrEnum):
    HELD = "Held"
    RELEASED = "Released"
    COMPLETE = "Complete"
    FAILED = "Failed"
    # Interruptible jobs once released: exactly one of the two is True until the run ends
    RUNNING = "Running"
    PAUSED = "Paused"
    REACHABLE = "Reachable"
    HOST_KEY_CHECKED = "HostKeyChecked"


class Reason(enum.StrEnum):
    # Held
    PENDING = "Pending"  # first sight, before the first decision
    WAITING_FOR_LOWER_INTENSITY = "WaitingForLowerIntensity"
    WAITING_FOR_THRESHOLD = "WaitingForThreshold"
    TARGET_BUSY = "TargetBusy"
    FORECAST_UNAVAILABLE = "ForecastUnavailable"
    CREATE_REJECTED = "CreateRejected"  # the API server refused the Job or runner pod
    HELD_ON_REQUEST = "HeldOnRequest"  # the carbonaware.io/hold annotation
    # Held while no ServerTarget its targetSelector selects is reachable; Failed at the latest
    # start if none is by then
    NO_TARGET_AVAILABLE = "NoTargetAvailable"
    # Released
    LOW_CARBON_WINDOW = "LowCarbonWindow"
    THRESHOLD_MET = "ThresholdMet"
    DEADLINE_REACHED = "DeadlineReached"
    IMMEDIATE = "Immediate"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    MANUAL_RELEASE = "ManualRelease"  # the carbonaware.io/release-now annotation
    # Interruptible jobs: why a run goes on (Running) or waits (Paused); also
    # WaitingForLowerIntensity, DeadlineReached, ForecastUnavailable
    LOW_CARBON_SEGMENT = "LowCarbonSegment"  # now is in the plan's cleanest segments
    MINIMUM_RUN = "MinimumRun"  # the run has not lasted minRunSeconds yet
    NO_INTERRUPTIONS_LEFT = "NoInterruptionsLeft"  # maxInterruptions pauses were used
    LONGER_THAN_EXPECTED = "LongerThanExpected"  # ran expectedDurationSeconds, not done yet
    # Complete / Failed
    SUCCEEDED = "Succeeded"
    JOB_FAILED = "JobFailed"
    INVALID_SPEC = "InvalidSpec"
    TARGET_NOT_FOUND = "TargetNotFound"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # the key Secret is not of type ssh-auth
    HOST_NOT_ALLOWED = "HostNotAllowed"  # the host is outside the operator's allow-list
    TIMED_OUT = "TimedOut"
    CHILD_DELETED = "ChildDeleted"  # the Job or runner pod was deleted before it finished
    RUN_LOST = "RunLost"  # the server lost the run (rebooted): its outcome is unknown
    CANCELLED = "Cancelled"  # the run was stopped on request
    INTERNAL_ERROR = "InternalError"  # the operator could not process the object (a bug)
    # ServerTarget
    CONNECTED = "Connected"
    UNREACHABLE = "Unreachable"
    AUTH_FAILED = "AuthFailed"
    HOST_KEY_MISMATCH = "HostKeyMismatch"
    HOST_KEY_CHECK_DISABLED = "HostKeyCheckDisabled"
    HOST_KEY_VERIFIED = "HostKeyVerified"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class JobState(enum.StrEnum):
    """One word for the printer column, derived from the conditions."""

    HELD = "Held"
    RELEASED = "Released"
    RUNNING = "Running"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Condition(ApiModel):
    """A ``metav1.Condition``."""

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field("", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = Field(None, ge=0)


def _as_dict(condition: Condition | dict[str, object]) -> dict[str, object]:
    if isinstance(condition, Condition):
        return condition.to_api()
    return dict(condition)


def set_condition(
    conditions: list[dict[str, object]] | list[Condition],
    *,
    type: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[dict[str, object]]:
    """Return ``conditions`` with ``type`` set, keeping ``lastTransitionTime`` unless the
    status flips (metav1.Condition semantics). The list stays ordered by first appearance.
    """
    updated: list[dict[str, object]] = []
    found = False
    for existing in map(_as_dict, conditions):
        if existing.get("type") == type.value:
            found = True
            transition = existing.get("lastTransitionTime")
            if existing.get("status") != status.value or not transition:
                transition = format_time(now)
            existing = _condition(type, status, reason, message, transition, generation)
        updated.append(existing)
    if not found:
        updated.append(_condition(type, status, reason, message, format_time(now), generation))
    return updated


def _condition(
    type_: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: str,
    transition: object,
    generation: int | None,
) -> dict[str, object]:
    condition: dict[str, object] = {
        "type": type_.value,
        "status": status.value,
        "reason": reason.value,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def find_condition(
    conditions: list[dict[str, object]] | None, type_: ConditionType
) -> dict[str, object] | None:
    for condition in conditions or []:
        if condition.get("type") == type_.value:
            return condition
    return None


def is_true(conditions: list[dict[str, object]] | None, type_: ConditionType) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == ConditionStatus.TRUE.value


def derive_state(conditions: list[dict[str, object]] | None, *, running: bool) -> JobState:
    """The printer column's one word: Failed/Succeeded win, then Running, Released, Held."""
    if is_true(conditions, ConditionType.FAILED):
        return JobState.FAILED
    if is_true(conditions, ConditionType.COMPLETE):
        return JobState.SUCCEEDED
    if is_true(conditions, ConditionType.RELEASED):
        if is_true(conditions, ConditionType.PAUSED):
            return JobState.PAUSED
        return JobState.RUNNING if running else JobState.RELEASED
    return JobState.HELD


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, second precision, as the API server writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
