"""A create the API server refuses never loses the job (real ResourceQuota, real admission).

The quota is the built-in ResourceQuota admission (``count/jobs.batch``, ``count/pods``) with
the quota controller of kube-controller-manager; the denials are ValidatingAdmissionPolicies
(CEL, built into the API server): one that answers ``Forbidden`` (may be lifted: the job waits
and is released once it is) and one that answers ``Invalid`` (the object cannot be created as
written: the job ends Failed with the policy's message).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .grid import Intensity, grid, operator_for
from .manifests import fake_target, ssh_caj
from .operatorproc import OperatorProcess, caj, get, status_condition, status_of, wait_for
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]

POLICY_LABEL = "carbonaware-test/policy"
QUICK_POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = operator_for(crds, grid[1], tmp_path / "operator.log", ssh_mode="Pod")
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


def template(**labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"backoffLimit": 0, "template": {"spec": QUICK_POD}}
    return {"metadata": {"labels": labels}, "spec": spec} if labels else {"spec": spec}


def quota(plane: Any, namespace: str, hard: dict[str, str]) -> None:
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "limit"},
            "spec": {"hard": hard},
        },
        namespace=namespace,
    )
    wait_for(
        lambda: (get(plane, "resourcequota", namespace, "limit").get("status") or {}).get("hard"),
        timeout=60,
        what="the quota controller to compute the quota",
    )


def held_reason(plane: Any, namespace: str, name: str) -> dict[str, Any] | None:
    return status_condition(status_of(plane, "caj", namespace, name), "Held")


def warnings_about(plane: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    events = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e for e in events if e["involvedObject"]["name"] == name and e["type"] == "Warning"]


def test_a_job_refused_by_a_quota_waits_and_is_released_when_the_quota_frees(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    quota(crds, namespace, {"count/jobs.batch": "1"})
    blocker = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "blocker"},
        "spec": {"suspend": True, "template": {"spec": QUICK_POD}},
    }
    crds.apply(blocker, namespace=namespace)
    crds.apply(caj("train", {"policy": "Immediate"}, jobTemplate=template()), namespace=namespace)

    held = wait_for(
        lambda: (c := held_reason(crds, namespace, "train"))
        and c["reason"] == "CreateRejected"
        and c,
        timeout=60,
        what="the refused create to be recorded",
    )
    assert held["status"] == "True"
    assert "exceeded quota" in held["message"], held["message"]
    assert "count/jobs.batch" in held["message"]
    assert "trying again in" in held["message"]
    status = status_of(crds, "caj", namespace, "train")
    assert status["state"] == "Held"
    assert "releaseTime" not in status
    assert "releaseDecidedTime" not in status
    assert any("exceeded quota" in e["message"] for e in warnings_about(crds, namespace, "train"))
    # Still held, still the user's to edit: the spec is not frozen by a release that failed.
    crds.kubectl("label", "caj", "train", "-n", namespace, "edited=yes")
    crds.kubectl(
        "patch",
        "caj",
        "train",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"description": "waiting for quota"}}),
    )
    assert operator.alive()

    crds.kubectl("delete", "job", "blocker", "-n", namespace, "--wait=true")
    done = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "train")).get("releaseTime") and s,
        timeout=120,
        what="the release once the quota frees",
    )
    assert done["jobName"]
    assert (
        get(crds, "job", namespace, done["jobName"])["metadata"]["ownerReferences"][0]["uid"]
        == get(crds, "caj", namespace, "train")["metadata"]["uid"]
    )
    released = status_condition(done, "Released")
    assert released is not None
    assert released["reason"] == "Immediate"
    assert "Traceback" not in operator.log()


def test_a_runner_pod_refused_by_a_quota_keeps_the_ssh_job(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    quota(crds, namespace, {"count/pods": "0"})
    fake_target(crds, namespace)
    crds.apply(ssh_caj("backup"), namespace=namespace)
    held = wait_for(
        lambda: (c := held_reason(crds, namespace, "backup"))
        and c["reason"] == "CreateRejected"
        and c,
        timeout=60,
        what="the refused runner pod to be recorded",
    )
    assert "the runner pod" in held["message"]
    assert "exceeded quota" in held["message"]
    crds.kubectl("delete", "resourcequota", "limit", "-n", namespace)
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "backup")).get("podName") and s,
        timeout=120,
        what="the runner pod once the quota is gone",
    )
    assert status["releaseTime"]
    assert operator.alive()


def admission_policy(plane: Any, namespace: str, reason: str) -> str:
    """A ValidatingAdmissionPolicy denying Jobs labelled ``POLICY_LABEL`` in ``namespace``."""
    name = f"deny-{namespace}"
    plane.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["batch"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["jobs"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": f"!has(object.metadata.labels) || "
                        f"!('{POLICY_LABEL}' in object.metadata.labels)",
                        "message": "Jobs of the policy test are not allowed in this namespace",
                        "reason": reason,
                    }
                ],
            },
        }
    )
    plane.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    probe = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe", "labels": {POLICY_LABEL: "x"}},
        "spec": {"template": {"spec": QUICK_POD}},
    }

    def denied() -> bool:
        result = plane.kubectl(
            "create",
            "--dry-run=server",
            "-n",
            namespace,
            "-f",
            "-",
            input=json.dumps(probe),
            check=False,
        )
        return result.returncode != 0 and "not allowed in this namespace" in result.stderr

    wait_for(denied, timeout=60, what="the admission policy to be enforced")
    return name


def test_an_admission_policy_denial_that_cannot_pass_fails_the_job_with_its_message(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    policy = admission_policy(crds, namespace, "Invalid")
    try:
        denied = template(**{POLICY_LABEL: "y"})
        crds.apply(caj("denied", {"policy": "Immediate"}, jobTemplate=denied), namespace=namespace)
        crds.apply(
            caj("allowed", {"policy": "Immediate"}, jobTemplate=template()), namespace=namespace
        )
        failed = wait_for(
            lambda: status_condition(status_of(crds, "caj", namespace, "denied"), "Failed"),
            timeout=60,
            what="the denied job to fail",
        )
        assert failed["reason"] == "CreateRejected"
        assert "not allowed in this namespace" in failed["message"]
        assert "ValidatingAdmissionPolicy" in failed["message"]
        assert any(
            e["reason"] == "CreateRejected" for e in warnings_about(crds, namespace, "denied")
        )
        # The other job of the namespace is not disturbed.
        wait_for(
            lambda: status_of(crds, "caj", namespace, "allowed").get("releaseTime"),
            timeout=60,
            what="the allowed job's release",
        )
        assert operator.alive()
    finally:
        crds.kubectl(
            "delete",
            "validatingadmissionpolicybinding,validatingadmissionpolicy",
            policy,
            "--ignore-not-found",
        )


def test_an_admission_policy_that_forbids_holds_the_job_until_it_is_lifted(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    policy = admission_policy(crds, namespace, "Forbidden")
    try:
        forbidden = template(**{POLICY_LABEL: "y"})
        crds.apply(
            caj("waits", {"policy": "Immediate"}, jobTemplate=forbidden), namespace=namespace
        )
        held = wait_for(
            lambda: (c := held_reason(crds, namespace, "waits"))
            and c["reason"] == "CreateRejected"
            and c,
            timeout=60,
            what="the forbidden create to be recorded",
        )
        assert "not allowed in this namespace" in held["message"]
    finally:
        crds.kubectl("delete", "validatingadmissionpolicybinding", policy, "--ignore-not-found")
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "waits")).get("releaseTime") and s,
        timeout=120,
        what="the release once the policy is lifted",
    )
    assert status["jobName"]
    crds.kubectl("delete", "validatingadmissionpolicy", policy, "--ignore-not-found")
    assert operator.alive()
