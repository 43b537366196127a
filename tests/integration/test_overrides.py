"""Overrides on the real local control plane: release-now, hold (and hold: force) and cancel,
set with ``kubectl annotate`` on CarbonAwareJobs and on managed plain Jobs, each recorded in
a condition (or the Job's annotations) and an Event naming who asked (the field manager,
``kubectl-annotate``). And a release-now that races with the loop's own release: exactly one
child, one release.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels
from carbonaware.runners.jobs import child_name

from .grid import Intensity, grid, operator_for
from .operatorproc import (
    OperatorProcess,
    caj,
    condition,
    get,
    long_job_template,
    suspended_job,
    wait_for,
)
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]

THRESHOLD = {"policy": "Threshold", "maxIntensity": 100}
WHO = "kubectl-annotate"


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = operator_for(crds, grid[1], tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


def annotate(plane: Any, kind: str, namespace: str, name: str, *pairs: str) -> None:
    plane.kubectl("annotate", "--overwrite", kind, name, "-n", namespace, *pairs)


def state(plane: Any, namespace: str, name: str) -> str | None:
    return (get(plane, "caj", namespace, name).get("status") or {}).get("state")


def reason_of(plane: Any, namespace: str, name: str, type_: str) -> str | None:
    found = condition(get(plane, "caj", namespace, name), type_)
    return None if found is None or found["status"] != "True" else found["reason"]


def events(plane: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    items = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def event_messages(plane: Any, namespace: str, name: str, reason: str) -> list[str]:
    return [e["message"] for e in events(plane, namespace, name) if e["reason"] == reason]


def jobs_owned_by(plane: Any, namespace: str, uid: str) -> list[dict[str, Any]]:
    items = plane.kubectl_json("get", "jobs", "-n", namespace)["items"]
    return [
        job
        for job in items
        if any(ref["uid"] == uid for ref in job["metadata"].get("ownerReferences") or [])
    ]


def job_annotations(plane: Any, namespace: str, name: str) -> dict[str, str]:
    return dict(get(plane, "job", namespace, name)["metadata"].get("annotations") or {})


def wait_held(plane: Any, namespace: str, name: str, reason: str) -> None:
    wait_for(
        lambda: reason_of(plane, namespace, name, "Held") == reason,
        timeout=30,
        what=f"{name} held ({reason})",
    )


# --------------------------------------------------------------------------- CarbonAwareJob


def test_release_now_releases_a_held_job_at_once_and_says_who_asked(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(caj("urgent", THRESHOLD), namespace=namespace)
    wait_held(crds, namespace, "urgent", "WaitingForThreshold")
    annotate(crds, "caj", namespace, "urgent", f"{labels.RELEASE_NOW}=true")
    wait_for(
        lambda: state(crds, namespace, "urgent") == "Succeeded",
        timeout=60,
        what="the released job to succeed",
    )
    released = condition(get(crds, "caj", namespace, "urgent"), "Released")
    assert released is not None
    assert released["reason"] == "ManualRelease"
    assert WHO in released["message"]
    (message,) = event_messages(crds, namespace, "urgent", "Released")
    assert message.startswith("ManualRelease: ")
    assert WHO in message


def test_hold_keeps_a_job_that_is_due_until_it_is_removed(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    crds.apply(caj("wait", THRESHOLD), namespace=namespace)
    wait_held(crds, namespace, "wait", "WaitingForThreshold")
    annotate(crds, "caj", namespace, "wait", f"{labels.HOLD}=true")
    wait_held(crds, namespace, "wait", "HeldOnRequest")
    held = condition(get(crds, "caj", namespace, "wait"), "Held")
    assert held is not None
    assert WHO in held["message"]
    intensity.now = 50.0  # the threshold is met: the loop would release it now
    # Many ticks (1 s each) pass with the threshold met; the job stays held.
    with pytest.raises(AssertionError):
        wait_for(
            lambda: state(crds, namespace, "wait") != "Held",
            timeout=8,
            what="a release despite the hold",
        )
    assert (
        jobs_owned_by(crds, namespace, get(crds, "caj", namespace, "wait")["metadata"]["uid"]) == []
    )
    crds.kubectl("annotate", "caj", "wait", "-n", namespace, f"{labels.HOLD}-")
    wait_for(
        lambda: reason_of(crds, namespace, "wait", "Released") == "ThresholdMet",
        timeout=30,
        what="the release once the hold is removed",
    )
    assert WHO in event_messages(crds, namespace, "wait", "HeldOnRequest")[0]
    (released,) = event_messages(crds, namespace, "wait", "Released")
    assert released.startswith("ThresholdMet: ")


def test_the_deadline_ends_a_hold_but_not_a_forced_one(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    schedule = {**THRESHOLD, "maxDelaySeconds": 10, "expectedDurationSeconds": 60}
    for name, value in (("soft", "true"), ("forced", "force")):
        body = caj(name, schedule)
        body["metadata"]["annotations"] = {labels.HOLD: value}
        crds.apply(body, namespace=namespace)
    wait_held(crds, namespace, "forced", "HeldOnRequest")
    wait_for(
        lambda: reason_of(crds, namespace, "soft", "Released") == "DeadlineReached",
        timeout=45,
        what="the deadline to release the job held without force",
    )
    forced = get(crds, "caj", namespace, "forced")
    assert forced["status"]["state"] == "Held"
    message = condition(forced, "Held")["message"]  # type: ignore[index]
    assert "past any deadline" in message
    assert jobs_owned_by(crds, namespace, forced["metadata"]["uid"]) == []


def test_cancel_ends_a_held_job_and_a_running_one_whose_job_is_deleted(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(caj("idle", THRESHOLD), namespace=namespace)
    crds.apply(
        caj("busy", {"policy": "Immediate"}, jobTemplate=long_job_template()), namespace=namespace
    )
    wait_held(crds, namespace, "idle", "WaitingForThreshold")
    wait_for(
        lambda: state(crds, namespace, "busy") == "Running",
        timeout=60,
        what="the long job to run",
    )
    busy_uid = get(crds, "caj", namespace, "busy")["metadata"]["uid"]
    assert len(jobs_owned_by(crds, namespace, busy_uid)) == 1
    for name in ("idle", "busy"):
        annotate(crds, "caj", namespace, name, f"{labels.CANCEL}=true")
    for name in ("idle", "busy"):
        wait_for(
            lambda name=name: reason_of(crds, namespace, name, "Failed") == "Cancelled",  # type: ignore[misc]
            timeout=30,
            what=f"{name} cancelled",
        )
        obj = get(crds, "caj", namespace, name)
        assert obj["status"]["state"] == "Failed"
        assert WHO in condition(obj, "Failed")["message"]  # type: ignore[index]
        assert WHO in event_messages(crds, namespace, name, "Cancelled")[0]
    assert condition(get(crds, "caj", namespace, "idle"), "Held")["status"] == "False"  # type: ignore[index]
    wait_for(
        lambda: jobs_owned_by(crds, namespace, busy_uid) == [],
        timeout=30,
        what="the running job's Job to be deleted",
    )
    # It stays Failed/Cancelled (the deleted child is not taken for a lost run).
    assert reason_of(crds, namespace, "busy", "Failed") == "Cancelled"
    assert not event_messages(crds, namespace, "busy", "ChildDeleted")


def test_a_release_now_racing_the_loops_own_release_makes_one_child_each(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    names = [f"race-{index}" for index in range(6)]
    for name in names:
        crds.apply(caj(name, THRESHOLD), namespace=namespace)
    for name in names:
        wait_held(crds, namespace, name, "WaitingForThreshold")
    intensity.now = 50.0  # the loop releases them at its next tick...
    for name in names:  # ...while the annotations ask for the same
        annotate(crds, "caj", namespace, name, f"{labels.RELEASE_NOW}=true")
    for name in names:
        wait_for(
            lambda name=name: state(crds, namespace, name) == "Succeeded",  # type: ignore[misc]
            timeout=60,
            what=f"{name} to succeed",
        )
    for name in names:
        obj = get(crds, "caj", namespace, name)
        owned = jobs_owned_by(crds, namespace, obj["metadata"]["uid"])
        assert [job["metadata"]["name"] for job in owned] == [child_name(name)]
        assert len(event_messages(crds, namespace, name, "Released")) == 1
        assert reason_of(crds, namespace, name, "Released") in ("ThresholdMet", "ManualRelease")


# --------------------------------------------------------------------------- plain Jobs


def managed_job(name: str, **annotations: str) -> dict[str, Any]:
    return suspended_job(
        name,
        labels={labels.MANAGED: "true"},
        annotations={labels.POLICY: "Threshold", labels.MAX_INTENSITY: "100", **annotations},
    )


def test_release_now_hold_and_cancel_on_managed_plain_jobs(
    crds: Any, namespace: str, operator: OperatorProcess
) -> None:
    crds.apply(managed_job("plain-now"), namespace=namespace)
    crds.apply(managed_job("plain-cancel"), namespace=namespace)
    long = managed_job("plain-running", **{labels.POLICY: "Immediate"})
    del long["metadata"]["annotations"][labels.MAX_INTENSITY]
    long["spec"]["template"]["metadata"] = long_job_template()["spec"]["template"]["metadata"]
    held = managed_job("plain-held", **{labels.POLICY: "Immediate", labels.HOLD: "true"})
    del held["metadata"]["annotations"][labels.MAX_INTENSITY]
    for body in (long, held):
        crds.apply(body, namespace=namespace)

    def reason(name: str) -> str | None:
        return job_annotations(crds, namespace, name).get(labels.REASON)

    for name in ("plain-now", "plain-cancel"):
        wait_for(lambda name=name: reason(name) == "WaitingForThreshold", timeout=30,  # type: ignore[misc]
                 what=f"{name} held")  # fmt: skip
    # hold on an Immediate Job: it is not released until the annotation goes.
    wait_for(lambda: reason("plain-held") == "HeldOnRequest", timeout=30, what="held on request")
    assert get(crds, "job", namespace, "plain-held")["spec"]["suspend"] is True
    # Set when the Job was applied: kubectl apply's field manager asked.
    assert (
        "kubectl-client-side-apply"
        in event_messages(crds, namespace, "plain-held", "HeldOnRequest")[0]
    )

    annotate(crds, "job", namespace, "plain-now", f"{labels.RELEASE_NOW}=true")
    wait_for(lambda: reason("plain-now") == "ManualRelease", timeout=30, what="manual release")
    assert get(crds, "job", namespace, "plain-now")["spec"]["suspend"] is False
    assert WHO in event_messages(crds, namespace, "plain-now", "Released")[0]

    crds.kubectl("annotate", "job", "plain-held", "-n", namespace, f"{labels.HOLD}-")
    wait_for(lambda: reason("plain-held") == "Immediate", timeout=30, what="hold removed")
    assert get(crds, "job", namespace, "plain-held")["spec"]["suspend"] is False

    wait_for(
        lambda: get(crds, "job", namespace, "plain-running")["status"].get("active"),
        timeout=60,
        what="the running plain Job's pod",
    )
    for name in ("plain-cancel", "plain-running"):
        annotate(crds, "job", namespace, name, f"{labels.CANCEL}=true")
    for name in ("plain-cancel", "plain-running"):
        wait_for(lambda name=name: reason(name) == "Cancelled", timeout=30,  # type: ignore[misc]
                 what=f"{name} cancelled")  # fmt: skip
        assert job_annotations(crds, namespace, name)[labels.STATE] == "Failed"
        assert get(crds, "job", namespace, name)["spec"]["suspend"] is True
        assert WHO in event_messages(crds, namespace, name, "Cancelled")[0]
    wait_for(
        lambda: not get(crds, "job", namespace, "plain-running")["status"].get("active"),
        timeout=60,
        what="the cancelled Job's pod to stop",
    )


# --------------------------------------------------------------------------- numbers that agree


def test_a_held_jobs_intensity_column_follows_the_grid(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    """The Intensity column of a Held job is the intensity now, not the one at first sight."""
    intensity, _ = grid
    crds.apply(caj("waiting", THRESHOLD), namespace=namespace)
    wait_held(crds, namespace, "waiting", "WaitingForThreshold")
    status = get(crds, "caj", namespace, "waiting")["status"]
    assert (status["intensity"]["current"], status["intensityDisplay"]) == (300, "300 gCO2e/kWh")
    intensity.now = 250.0  # still above the threshold: the plan does not change
    wait_for(
        lambda: get(crds, "caj", namespace, "waiting")["status"].get("intensityDisplay")
        == "250 gCO2e/kWh",
        timeout=30,
        what="the held job's intensity to follow the grid",
    )
    status = get(crds, "caj", namespace, "waiting")["status"]
    assert status["intensity"]["current"] == 250
    assert status["intensity"]["atCreation"] == 300
    assert status["state"] == "Held"
    printed = crds.kubectl("get", "caj", "waiting", "-n", namespace).stdout
    assert "250 gCO2e/kWh" in printed
