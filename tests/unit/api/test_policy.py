"""CarbonAwarePolicy: which Jobs a policy governs and what governing changes (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from carbonaware.api import labels
from carbonaware.api.policy import (
    CarbonAwarePolicySpec,
    NamedPolicy,
    PolicyMode,
    admission_for,
    governing,
    named_policies,
)
from carbonaware.handlers.work import schedule_from_annotations


def policy(name: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> NamedPolicy:
    spec.setdefault("mode", "Enforce")
    return NamedPolicy(name, created, CarbonAwarePolicySpec.model_validate(spec))


def job(labels_: dict[str, str] | None = None, *, suspend: bool | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"metadata": {"name": "j", "namespace": "ns"}, "spec": {}}
    if labels_ is not None:
        body["metadata"]["labels"] = labels_
    if annotations is not None:
        body["metadata"]["annotations"] = annotations
    if suspend is not None:
        body["spec"]["suspend"] = suspend
    return body


def test_enforce_suspends_and_marks_the_job_as_a_managed_plain_job() -> None:
    found = admission_for(
        job(), [policy("p", schedule={"policy": "Threshold", "maxIntensity": 90})]
    )
    assert found is not None
    assert found.suspend is True
    assert found.labels == {labels.MANAGED: "true"}
    assert found.annotations == {
        labels.POLICY: "Threshold",
        labels.MAX_INTENSITY: "90",
        labels.EXPECTED_DURATION_SECONDS: "3600",
        labels.GOVERNING_POLICY: "p",
        labels.POLICY_MODE: "Enforce",
    }


def test_shadow_only_labels_and_annotates() -> None:
    found = admission_for(job(), [policy("p", mode="Shadow")])
    assert found is not None
    assert found.mode is PolicyMode.SHADOW
    assert found.suspend is False
    assert found.labels == {labels.MANAGED: labels.MANAGED_SHADOW}
    assert found.annotations[labels.POLICY_MODE] == "Shadow"


def test_the_annotations_are_what_the_plain_job_path_reads_back() -> None:
    spec = {"policy": "Forecast", "maxDelaySeconds": 21600, "expectedDurationSeconds": 900,
            "interruptible": {"minRunSeconds": 600, "maxInterruptions": 2}}  # fmt: skip
    found = admission_for(job(), [policy("p", schedule=spec, region="DE", priority=7)])
    assert found is not None
    schedule = schedule_from_annotations(found.annotations)
    assert (
        schedule
        == CarbonAwarePolicySpec.model_validate({"mode": "Enforce", "schedule": spec}).schedule
    )
    assert (found.annotations[labels.REGION], found.annotations[labels.PRIORITY]) == ("DE", "7")
    assert json.loads(found.annotations[labels.INTERRUPTIBLE])["minRunSeconds"] == 600


def test_the_jobs_own_annotations_win() -> None:
    own = {labels.MAX_DELAY_SECONDS: "60"}
    found = admission_for(job(annotations=own), [policy("p", schedule={"maxDelaySeconds": 7200})])
    assert found is not None
    assert labels.MAX_DELAY_SECONDS not in found.annotations  # the patch leaves the Job's value


@pytest.mark.parametrize(
    "body",
    [
        job({labels.MANAGED: "true"}),  # opted in by hand
        job({labels.MANAGED: "child"}),  # a CarbonAwareJob's own Job
        job({labels.EXEMPT: "true"}),
        job(suspend=True),  # suspended by its author: releasing it would override them
    ],
)
def test_jobs_that_are_never_governed(body: dict[str, Any]) -> None:
    assert admission_for(body, [policy("p")]) is None


def test_the_selector_chooses_and_the_oldest_matching_policy_governs() -> None:
    batch = policy("batch", "2026-02-01T00:00:00Z", selector={"matchLabels": {"tier": "batch"}})
    everything = policy("everything", "2026-03-01T00:00:00Z")
    older = policy("older", "2026-01-01T00:00:00Z", selector={"matchLabels": {"tier": "web"}})
    policies = [everything, batch, older]
    assert governing(policies, {"tier": "batch"}) == batch
    assert governing(policies, {"tier": "web"}) == older
    assert governing(policies, {}) == everything
    assert governing([batch], {}) is None
    same_time = [policy("b"), policy("a")]
    assert governing(same_time, {}).name == "a"  # type: ignore[union-attr]


def test_a_policy_has_no_deadline() -> None:
    with pytest.raises(ValidationError, match="maxDelaySeconds"):
        CarbonAwarePolicySpec.model_validate(
            {"mode": "Enforce", "schedule": {"deadlineTime": "2030-01-01T00:00:00Z"}}
        )


def test_invalid_listed_policies_are_named_and_left_out() -> None:
    items = [
        {"metadata": {"name": "good", "creationTimestamp": "t"}, "spec": {"mode": "Shadow"}},
        {"metadata": {"name": "bad"}, "spec": {"mode": "Sometimes"}},
    ]
    valid, invalid = named_policies(items)
    assert [p.name for p in valid] == ["good"]
    assert invalid == ["bad"]


def test_a_webhook_port_needs_a_certificate_directory() -> None:
    from carbonaware.config import OperatorSettings

    with pytest.raises(ValidationError, match="CARBONAWARE_WEBHOOK_CERT_DIR"):
        OperatorSettings(webhook_port=9443)
    assert OperatorSettings(webhook_port=9443, webhook_cert_dir="/certs").webhook_port == 9443
