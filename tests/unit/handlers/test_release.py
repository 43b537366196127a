"""The release of a CarbonAwareJob against an API server that changes under it.

A fake API server records every call; the races it stages cannot be timed on a real one:
an edit landing between the read and the write that fixes the spec, a create refused by a
quota or an admission policy, a child whose name belongs to someone else, and an exception
nobody foresaw in one object.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from carbonaware.api.carbonawarejob import PlacementRegion, SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.selector import LabelSelector
from carbonaware.config import OperatorSettings
from carbonaware.errors import KubernetesError
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.refusal import backing_off
from carbonaware.handlers.release import release
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.metrics import Metrics
from carbonaware.scheduling.policy import Decision

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
SPEC = {"schedule": {"policy": "Immediate"}, "jobTemplate": {"spec": {"template": {"spec": POD}}}}


class FakeKube:
    """One CarbonAwareJob ``train`` and its Jobs; ``on_read`` runs after each read of it."""

    def __init__(self) -> None:
        self.obj: dict[str, Any] = {
            "metadata": {
                "name": "train",
                "namespace": "ns",
                "uid": "u1",
                "generation": 1,
                "resourceVersion": "10",
                "creationTimestamp": "2024-05-01T11:00:00Z",
            },
            "spec": copy.deepcopy(SPEC),
        }
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.create_error: KubernetesError | None = None
        self.on_read: Any = None

    def edit(self, **spec: Any) -> None:
        meta = self.obj["metadata"]
        self.obj["spec"] = {**self.obj["spec"], **spec}
        meta["generation"] += 1
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append("get")
        body = copy.deepcopy(self.obj)
        if self.on_read is not None:
            hook, self.on_read = self.on_read, None
            hook()
        return body

    async def patch_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append("status" if resource_version is None else "status-if-unchanged")
        if (
            resource_version is not None
            and resource_version != self.obj["metadata"]["resourceVersion"]
        ):
            raise KubernetesError("conflict", status=409)
        merged = {**(self.obj.get("status") or {}), **status}
        self.obj["status"] = {k: v for k, v in merged.items() if v is not None}
        return copy.deepcopy(self.obj)

    async def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        if self.create_error is not None:
            raise self.create_error
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise KubernetesError("exists", status=409)
        self.jobs[name] = body
        return body

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def create_event(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append("event")
        return {}


def setup(kube: FakeKube) -> tuple[OperatorContext, HeldWork]:
    metrics = Metrics()
    ctx = OperatorContext(
        settings=OperatorSettings(tick_seconds=60),
        kube=cast(Any, kube),
        metrics=metrics,
        provider=cast(Any, None),
        intensity=RegionIntensity(cast(Any, None), metrics),
        clock=lambda: NOW,
    )
    work = HeldWork(
        kind=WorkKind.CARBON_AWARE_JOB,
        namespace="ns",
        name="train",
        uid="u1",
        region="GB",
        policy=SchedulePolicy.IMMEDIATE,
        created=NOW,
        latest_start=NOW + timedelta(hours=1),
        expected_duration_seconds=3600,
        max_intensity=None,
        max_index=None,
        priority=0,
        target=None,
        planned_start=None,
        held_reason=None,
        body=copy.deepcopy(kube.obj),
    )
    ctx.registry.hold(work)
    return ctx, work


DECISION = Decision(
    release=True,
    reason=Reason.IMMEDIATE,
    planned_start=NOW,
    planned_window_mean=None,
    latest_start=NOW + timedelta(hours=1),
    expected_duration=timedelta(hours=1),
)


async def test_a_release_fixes_the_spec_then_creates_then_records() -> None:
    kube = FakeKube()
    ctx, work = setup(kube)
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    assert kube.calls[:4] == ["get", "status-if-unchanged", "create", "status"]
    assert kube.obj["status"]["releaseTime"] == "2024-05-01T12:00:00Z"
    assert kube.obj["status"]["releaseDecidedTime"]
    (job,) = kube.jobs.values()
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert job["metadata"]["annotations"]["carbonaware.io/parent-generation"] == "1"
    assert ctx.registry.get(work.key) is None
    assert ctx.registry.tracked_work(work.key) is not None


async def test_an_edit_landing_before_the_spec_is_fixed_is_planned_again_not_released() -> None:
    kube = FakeKube()
    ctx, work = setup(kube)
    kube.on_read = lambda: kube.edit(jobTemplate={"spec": {"template": {"spec": {**POD, "x": 1}}}})
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    assert "create" not in kube.calls, "no child from the spec that was just replaced"
    assert not kube.jobs
    assert "releaseTime" not in (kube.obj.get("status") or {})
    again = ctx.registry.get(work.key)
    assert again is not None
    assert again.generation == 2, "held again with the edited spec"


async def test_an_edit_before_the_plan_was_read_is_planned_again() -> None:
    kube = FakeKube()
    ctx, work = setup(kube)
    kube.edit(description="changed")
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    assert kube.calls == ["get"]
    again = ctx.registry.get(work.key)
    assert again is not None
    assert again.generation == 2


async def test_a_quota_refusal_keeps_the_job_held_editable_and_backing_off() -> None:
    kube = FakeKube()
    kube.create_error = KubernetesError(
        'create Job ns/train: 403 jobs.batch "train" is forbidden: exceeded quota: limit',
        status=403,
    )
    ctx, work = setup(kube)
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    status = kube.obj["status"]
    assert status["state"] == "Held"
    assert "releaseDecidedTime" not in status, "the spec may be fixed again"
    held = next(c for c in status["conditions"] if c["type"] == "Held")
    assert held["reason"] == "CreateRejected"
    assert "exceeded quota" in held["message"]
    assert ctx.registry.get(work.key) is work
    assert backing_off(work)
    assert work.rejections == 1


async def test_an_admission_refusal_that_cannot_pass_fails_the_job() -> None:
    kube = FakeKube()
    kube.create_error = KubernetesError(
        "create Job ns/train: 422 ValidatingAdmissionPolicy 'p' with binding 'b' denied "
        "request: not here",
        status=422,
    )
    ctx, work = setup(kube)
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    failed = next(c for c in kube.obj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "CreateRejected"
    assert "not here" in failed["message"]
    assert ctx.registry.get(work.key) is None


async def test_a_child_name_taken_by_someone_else_is_a_refusal_not_success() -> None:
    kube = FakeKube()
    kube.jobs["train"] = {"metadata": {"name": "train", "ownerReferences": []}}
    ctx, work = setup(kube)
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    held = next(c for c in kube.obj["status"]["conditions"] if c["type"] == "Held")
    assert held["reason"] == "CreateRejected"
    assert "does not belong" in held["message"]
    assert "releaseTime" not in kube.obj["status"]


async def test_an_unforeseen_exception_fails_that_object_only() -> None:
    kube = FakeKube()
    ctx, work = setup(kube)
    async with contained(ctx, work.key, work.body, "release"):
        raise AttributeError("'str' object has no attribute 'get'")
    failed = next(c for c in kube.obj["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InternalError"
    assert "AttributeError" in failed["message"]
    assert "release" in failed["message"]
    assert ctx.registry.get(work.key) is None
    assert ctx.registry.was_released("u1"), "never picked up again"


async def test_a_job_placed_in_a_region_gets_that_regions_node_selector() -> None:
    kube = FakeKube()
    kube.obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    ctx, work = setup(kube)
    work.body = copy.deepcopy(kube.obj)
    work.regions = (PlacementRegion(region="DE"), PlacementRegion(region="PJM"))
    work.region, work.node_selector = "PJM", {"topology.kubernetes.io/region": "PJM"}
    work.placement = {"target": None, "region": "PJM", "expectedIntensity": 90.0,
                      "expectedGrams": None, "candidates": 2,
                      "runnerUp": {"target": None, "region": "DE", "expectedIntensity": 300.0,
                                   "expectedGrams": None}}  # fmt: skip
    await release(ctx, work, DECISION, snapshot=None, now=NOW)
    (job,) = kube.jobs.values()
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {
        "disk": "ssd",
        "topology.kubernetes.io/region": "PJM",
    }
    assert job["metadata"]["annotations"]["carbonaware.io/region"] == "PJM"
    status = kube.obj["status"]
    assert status["region"] == "PJM"
    runner_up = {k: v for k, v in status["placement"]["runnerUp"].items() if v is not None}
    assert runner_up == {"region": "DE", "expectedIntensity": 300.0}  # nulls: merge-patch removals
    released = next(c for c in status["conditions"] if c["type"] == "Released")
    assert (
        "Placed in region PJM, the lowest expected grid intensity of 2 places"
        in (released["message"])
    )
    assert "runner-up in region DE: 300 gCO2e/kWh." in released["message"]


async def test_an_ssh_job_whose_selector_found_no_target_fails_at_its_latest_start() -> None:
    kube = FakeKube()
    kube.obj["spec"] = {
        "schedule": {"policy": "Forecast"},
        "ssh": {"targetSelector": {"matchLabels": {"pool": "gpu"}}, "command": "true"},
    }
    ctx, work = setup(kube)
    work.body = copy.deepcopy(kube.obj)
    work.selector = LabelSelector.model_validate({"matchLabels": {"pool": "gpu"}})
    due = dataclasses.replace(DECISION, reason=Reason.NO_TARGET_AVAILABLE)
    await release(ctx, work, due, snapshot=None, now=NOW)
    assert "create" not in kube.calls
    status = kube.obj["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "NoTargetAvailable")
    assert "pool=gpu" in failed["message"]
    assert ctx.registry.get(work.key) is None
