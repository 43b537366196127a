"""What real clusters and users do to the operator, on the real local control plane.

- an object that an older, looser schema let in must fail alone: the loop, the other jobs
  and the process carry on (with a release cap, the case that used to crash-loop);
- ``deadlineTime`` alone bounds the hold (no 24 h cap), and the status says which bound;
- a CarbonAwareJob deleted and re-applied under the same name is never touched by the old
  one's runner pod;
- a child Job deleted while it runs, or while the operator is down, ends the job
  ``ChildDeleted`` (the watch event, and the periodic reconcile when the event is gone);
- runs already going count against ``maxConcurrent`` right after a restart;
- plain Jobs waiting for the release cap are not rewritten at every look;
- a key Secret of another type, or a host outside the allow-list, is never used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from .grid import Intensity, grid, operator_for
from .manifests import fake_target, ssh_caj
from .operatorproc import (
    CRDS,
    QUICK_JOB_TEMPLATE,
    OperatorProcess,
    caj,
    get,
    long_job_template,
    status_condition,
    status_of,
    suspended_job,
    wait_for,
    when,
)
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]


def state_of(plane: Any, namespace: str, name: str) -> str | None:
    return status_of(plane, "caj", namespace, name).get("state")


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = operator_for(crds, grid[1], tmp_path / "operator.log", reconcile_seconds=2)
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


# --------------------------------------------------------------------------- containment


def loosened_crd() -> dict[str, Any]:
    """The CarbonAwareJob CRD as an older release had it: an untyped pod template."""
    crd = yaml.safe_load((CRDS / "carbonawarejob.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    job_spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "jobTemplate"
    ]["properties"]["spec"]
    job_spec["properties"]["template"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return dict(crd)


MALFORMED_TEMPLATES = {
    "metadata-text": {
        "metadata": "oops",
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    },
    "labels-list": {
        "metadata": {"labels": ["a"]},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    },
    "spec-text": {"spec": "busybox"},
}


def test_objects_an_older_schema_let_in_fail_alone_and_the_operator_carries_on(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> None:
    """Helm never upgrades CRDs: a cluster can run this operator under an older CRD that let
    an untyped pod template in. Each such object must fail alone."""
    crds.apply(loosened_crd())
    # A release cap puts every release through the loop: one bad object used to stop it.
    process = operator_for(crds, grid[1], tmp_path / "operator.log", release_cap_per_tick=1)
    try:
        for name, pod_template in MALFORMED_TEMPLATES.items():
            template = {"spec": {"backoffLimit": 0, "template": pod_template}}
            crds.apply(
                caj(name, {"policy": "Immediate"}, jobTemplate=template), namespace=namespace
            )
        crds.apply(
            caj("control", {"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE),
            namespace=namespace,
        )
        process.start()
        for name in MALFORMED_TEMPLATES:
            failed = wait_for(
                lambda n=name: status_condition(status_of(crds, "caj", namespace, n), "Failed"),
                timeout=60,
                what=f"{name} to fail",
            )
            assert failed["reason"] == "InvalidSpec", failed
            assert "jobTemplate.spec.template" in failed["message"], failed
        wait_for(
            lambda: state_of(crds, namespace, "control") == "Succeeded",
            timeout=90,
            what="the valid job to succeed beside them",
        )
        events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
        warned = {e["involvedObject"]["name"] for e in events if e["reason"] == "InvalidSpec"}
        assert set(MALFORMED_TEMPLATES) <= warned
        assert process.alive(), process.log()[-3000:]
        assert "refresh loop died" not in process.log()
        jobs = crds.kubectl_json("get", "jobs", "-n", namespace)["items"]
        assert not [j for j in jobs if j["metadata"]["name"] in MALFORMED_TEMPLATES]
    finally:
        process.stop()
        crds.delete_namespace(namespace)  # objects the current CRD could not update
        crds.kubectl("apply", "-f", str(CRDS / "carbonawarejob.yaml"))
        print(process.log()[-20000:])


# --------------------------------------------------------------------------- deadlines


def test_a_deadline_alone_bounds_the_hold_beyond_a_day(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    deadline = (datetime.now(UTC) + timedelta(hours=40)).replace(microsecond=0)
    schedule = {
        "policy": "Threshold",
        "maxIntensity": 10,
        "deadlineTime": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    crds.apply(caj("weekend", schedule), namespace=namespace)
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "weekend")).get("latestStartTime") and s,
        timeout=30,
        what="the plan",
    )
    assert when(status["latestStartTime"]) == deadline - timedelta(hours=1)
    assert status["latestStartBound"] == "Deadline"
    assert status["state"] == "Held"

    crds.apply(caj("default", {"policy": "Threshold", "maxIntensity": 10}), namespace=namespace)
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "default")).get("latestStartTime") and s,
        timeout=30,
        what="the plan",
    )
    created = when(get(crds, "caj", namespace, "default")["metadata"]["creationTimestamp"])
    assert when(status["latestStartTime"]) == created + timedelta(hours=24)
    assert status["latestStartBound"] == "DefaultMaxDelay"


# --------------------------------------------------------------------------- children


def test_the_old_runner_pod_of_a_recreated_job_never_touches_the_new_one(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    """`kubectl delete caj x && kubectl apply -f x.yaml`: the garbage collector deletes the old
    runner pod only after the new object exists; its events belong to the old UID."""
    fake_target(crds, namespace)
    crds.apply(ssh_caj("nightly"), namespace=namespace)
    pod = wait_for(
        lambda: status_of(crds, "caj", namespace, "nightly").get("podName"),
        timeout=30,
        what="the first runner pod",
    )
    old_uid = get(crds, "pod", namespace, pod)["metadata"]["labels"]["carbonaware.io/job-uid"]
    crds.kubectl("delete", "caj", "nightly", "-n", namespace, "--wait=false")
    crds.apply(ssh_caj("nightly", {"policy": "Threshold", "maxIntensity": 10}), namespace=namespace)
    new_uid = get(crds, "caj", namespace, "nightly")["metadata"]["uid"]
    assert new_uid != old_uid
    wait_for(
        lambda: not [
            p
            for p in crds.kubectl_json("get", "pods", "-n", namespace)["items"]
            if p["metadata"]["labels"].get("carbonaware.io/job-uid") == old_uid
        ],
        timeout=60,
        what="the garbage collector to delete the old runner pod",
    )
    time.sleep(3)  # the operator's reaction to the old pod's deletion would land now
    new = get(crds, "caj", namespace, "nightly")
    assert new["metadata"]["uid"] == new_uid
    assert new["status"]["state"] == "Held", new["status"]
    assert status_condition(new["status"], "Failed") is None
    assert "completionTime" not in new["status"]
    assert not [
        p
        for p in crds.kubectl_json("get", "pods", "-n", namespace)["items"]
        if p["metadata"]["labels"].get("carbonaware.io/job-uid") == new_uid
    ]


def test_a_child_job_deleted_while_it_runs_fails_the_job(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(
        caj("doomed", {"policy": "Immediate"}, jobTemplate=long_job_template()), namespace=namespace
    )
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "doomed")).get("jobName") and s,
        timeout=30,
        what="the Job",
    )
    crds.kubectl("delete", "job", status["jobName"], "-n", namespace)
    failed = wait_for(
        lambda: status_condition(status_of(crds, "caj", namespace, "doomed"), "Failed"),
        timeout=30,
        what="ChildDeleted",
    )
    assert failed["reason"] == "ChildDeleted"
    assert status["jobName"] in failed["message"]
    assert state_of(crds, namespace, "doomed") == "Failed"


def test_a_child_deleted_while_the_operator_was_down_is_found_by_the_reconcile(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(
        caj("orphan", {"policy": "Immediate"}, jobTemplate=long_job_template()), namespace=namespace
    )
    status = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "orphan")).get("jobName") and s,
        timeout=30,
        what="the Job",
    )
    operator.kill()
    crds.kubectl("delete", "job", status["jobName"], "-n", namespace, "--wait=true")
    operator.start()  # no event will ever say the Job is gone: only the reconcile can tell
    failed = wait_for(
        lambda: status_condition(status_of(crds, "caj", namespace, "orphan"), "Failed"),
        timeout=60,
        what="ChildDeleted",
    )
    assert failed["reason"] == "ChildDeleted"


# --------------------------------------------------------------------------- restarts


def test_runner_pods_count_against_max_concurrent_right_after_a_restart(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    fake_target(crds, namespace, max_concurrent=1)
    crds.apply(ssh_caj("first"), namespace=namespace)
    wait_for(
        lambda: status_of(crds, "caj", namespace, "first").get("podName"),
        timeout=30,
        what="the first runner pod",
    )
    operator.kill()
    crds.apply(ssh_caj("second"), namespace=namespace)  # seen first thing after the restart
    operator.start()
    held = wait_for(
        lambda: status_condition(status_of(crds, "caj", namespace, "second"), "Held"),
        timeout=30,
        what="the second job's plan",
    )
    assert held["reason"] == "TargetBusy", held
    time.sleep(3)  # a few ticks: still busy
    assert not status_of(crds, "caj", namespace, "second").get("releaseTime")
    runner_pods = crds.kubectl_json("get", "pods", "-n", namespace)["items"]
    assert len(runner_pods) == 1

    crds.kubectl("delete", "caj", "first", "-n", namespace, "--wait=true")
    wait_for(
        lambda: status_of(crds, "caj", namespace, "second").get("podName"),
        timeout=60,
        what="the second job once the slot frees",
    )


def test_plain_jobs_waiting_for_the_release_cap_are_not_rewritten(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> None:
    process = operator_for(
        crds, grid[1], tmp_path / "operator.log", release_cap_per_tick=1, tick_seconds=4
    )
    process.start()
    try:
        annotations = {"carbonaware.io/policy": "Immediate"}
        names = [f"plain-{i}" for i in range(4)]
        for name in names:
            crds.apply(
                suspended_job(
                    name, labels={"carbonaware.io/managed": "true"}, annotations=annotations
                ),
                namespace=namespace,
            )
        versions: dict[str, set[str]] = {name: set() for name in names}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            for job in crds.kubectl_json("get", "jobs", "-n", namespace)["items"]:
                name = job["metadata"]["name"]
                if name in versions and job["spec"].get("suspend"):
                    versions[name].add(job["metadata"]["resourceVersion"])
            if all(not get(crds, "job", namespace, n)["spec"].get("suspend") for n in names):
                break
            time.sleep(0.2)
        assert all(not get(crds, "job", namespace, n)["spec"].get("suspend") for n in names)
        # While suspended each Job was written at most twice by the operator (its plan, then
        # nothing until its release), however many ticks it waited for the cap.
        assert max(len(seen) for seen in versions.values()) <= 3, versions
    finally:
        process.stop()


# --------------------------------------------------------------------------- security


def test_only_ssh_key_secrets_and_allowed_hosts_are_used(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> None:
    process = operator_for(
        crds,
        grid[1],
        tmp_path / "operator.log",
        ssh_allowed_hosts="10.99.0.0/16,*.build.example.com",
        ssh_probe_seconds=2,
    )
    process.start()
    try:
        fake_target(
            crds,
            namespace,
            name="wrong-secret",
            host="10.99.0.5",
            secret="registry",
            secret_type="Opaque",
        )
        fake_target(crds, namespace, name="outside", host="192.0.2.7")
        for name in ("wrong-secret", "outside"):
            crds.apply(ssh_caj(f"job-{name}", target=name), namespace=namespace)
        expected = {"wrong-secret": "SecretNotAllowed", "outside": "HostNotAllowed"}
        for name, reason in expected.items():
            failed = wait_for(
                lambda n=name: status_condition(
                    status_of(crds, "caj", namespace, f"job-{n}"), "Failed"
                ),
                timeout=30,
                what=f"job-{name} to fail",
            )
            assert failed["reason"] == reason, failed
            reachable = wait_for(
                lambda n=name: status_condition(
                    status_of(crds, "servertarget", namespace, n), "Reachable"
                ),
                timeout=30,
                what=f"the probe of {name}",
            )
            assert reachable["status"] == "False"
            assert reachable["reason"] == reason
        assert crds.kubectl_json("get", "pods", "-n", namespace)["items"] == []
    finally:
        process.stop()
