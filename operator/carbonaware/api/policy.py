"""``CarbonAwarePolicy`` (``carbonaware.io/v1alpha1``): carbon-aware defaults for the plain
Jobs of one namespace, applied without changing their manifests.

The operator's mutating admission webhook looks up the policies of a Job's namespace when the
Job is created. The oldest policy whose ``selector`` matches governs it (an absent selector
matches every Job). ``mode: Enforce`` creates the Job suspended, labelled and annotated as a
managed plain Job with the policy's schedule, so the operator holds and releases it;
``mode: Shadow`` only labels and annotates it, so it runs at once and the operator records
what the policy would have done. A Job's own ``carbonaware.io/...`` schedule annotations win
over the policy's. Jobs labelled ``carbonaware.io/exempt: "true"``, Jobs already managed, and
Jobs created suspended are never governed. Mirrors ``crds/carbonawarepolicy.yaml``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from pydantic import Field, model_validator

from carbonaware.api import labels
from carbonaware.api.base import ApiModel
from carbonaware.api.carbonawarejob import MAX_PRIORITY, Schedule
from carbonaware.api.selector import LabelSelector

KIND = "CarbonAwarePolicy"
PLURAL = "carbonawarepolicies"


class PolicyMode(enum.StrEnum):
    ENFORCE = "Enforce"  # hold governed Jobs (created suspended, released by the operator)
    SHADOW = "Shadow"  # hold nothing; record what holding would have done


class CarbonAwarePolicySpec(ApiModel):
    mode: PolicyMode
    selector: LabelSelector | None = None
    schedule: Schedule = Field(default_factory=Schedule)
    region: str | None = Field(None, min_length=1, max_length=64)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)

    @model_validator(mode="after")
    def _no_deadline(self) -> Self:
        if self.schedule.deadline_time is not None:
            raise ValueError(
                "schedule.deadlineTime must not be set on a policy (one time cannot suit every "
                "Job): bound the hold with schedule.maxDelaySeconds"
            )
        return self

    def governs(self, job_labels: Mapping[str, str] | None) -> bool:
        return self.selector is None or self.selector.matches(job_labels)

    def annotations(self) -> dict[str, str]:
        """The schedule annotations of a managed plain Job that this policy stands for."""
        schedule = self.schedule
        found = {
            labels.POLICY: schedule.policy.value,
            labels.EXPECTED_DURATION_SECONDS: str(schedule.expected_duration_seconds),
        }
        if schedule.max_delay_seconds is not None:
            found[labels.MAX_DELAY_SECONDS] = str(schedule.max_delay_seconds)
        if schedule.max_intensity is not None:
            found[labels.MAX_INTENSITY] = str(schedule.max_intensity)
        if schedule.max_index is not None:
            found[labels.MAX_INDEX] = schedule.max_index.value
        if schedule.interruptible is not None:
            found[labels.INTERRUPTIBLE] = json.dumps(
                schedule.interruptible.to_api(), separators=(",", ":")
            )
        if self.region is not None:
            found[labels.REGION] = self.region
        if self.priority:
            found[labels.PRIORITY] = str(self.priority)
        return found


@dataclass(frozen=True, slots=True)
class NamedPolicy:
    """A valid policy of a namespace: its name, creation time (RFC 3339) and spec."""

    name: str
    created: str
    spec: CarbonAwarePolicySpec


@dataclass(frozen=True, slots=True)
class Admission:
    """What governing a Job changes at its creation."""

    policy: str
    mode: PolicyMode
    labels: dict[str, str]
    annotations: dict[str, str]
    suspend: bool


def governing(policies: Iterable[NamedPolicy], job_labels: Mapping[str, str]) -> NamedPolicy | None:
    """The oldest policy (then the first by name) whose selector matches the Job's labels."""
    matching = [p for p in policies if p.spec.governs(job_labels)]
    return min(matching, key=lambda p: (p.created, p.name), default=None)


def ungoverned_reason(job: Mapping[str, Any]) -> str | None:
    """Why no policy may govern this Job, or None when one may."""
    meta = job.get("metadata") or {}
    job_labels = meta.get("labels") or {}
    if labels.MANAGED in job_labels:
        return "it is already managed"
    if str(job_labels.get(labels.EXEMPT, "")).lower() == "true":
        return f"it is labelled {labels.EXEMPT}"
    if (job.get("spec") or {}).get("suspend"):
        return "it was created suspended"
    return None


def admission_for(job: Mapping[str, Any], policies: Iterable[NamedPolicy]) -> Admission | None:
    """How the governing policy changes a Job being created; None leaves it as it is (pure)."""
    if ungoverned_reason(job) is not None:
        return None
    meta = job.get("metadata") or {}
    policy = governing(policies, meta.get("labels") or {})
    if policy is None:
        return None
    own = meta.get("annotations") or {}
    added = {k: v for k, v in policy.spec.annotations().items() if k not in own}
    added[labels.GOVERNING_POLICY] = policy.name
    added[labels.POLICY_MODE] = policy.spec.mode.value
    enforce = policy.spec.mode is PolicyMode.ENFORCE
    value = "true" if enforce else labels.MANAGED_SHADOW
    return Admission(policy.name, policy.spec.mode, {labels.MANAGED: value}, added, enforce)


def named_policies(items: Iterable[Mapping[str, Any]]) -> tuple[list[NamedPolicy], list[str]]:
    """The valid policies among listed objects, and the names of those that are not."""
    valid: list[NamedPolicy] = []
    invalid: list[str] = []
    for item in items:
        meta = item.get("metadata") or {}
        name = str(meta.get("name"))
        try:
            spec = CarbonAwarePolicySpec.model_validate(item.get("spec") or {})
        except ValueError:
            invalid.append(name)
            continue
        valid.append(NamedPolicy(name, str(meta.get("creationTimestamp") or ""), spec))
    return valid, invalid
