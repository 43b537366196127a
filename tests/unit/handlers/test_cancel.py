"""The cancel override against a fake API server that records the order of calls: the
status is written before the child is deleted (so the deletion is not taken for a lost
run), only a child owned by the job's UID is deleted, and a finished job is left alone.
The same on a real API server: tests/integration/test_overrides.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any, cast

from carbonaware.api.overrides import Overrides
from carbonaware.config import OperatorSettings
from carbonaware.handlers.cancel import cancel_carbonawarejob, cancel_plain_job
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.metrics import Metrics

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BY = Overrides(cancel=True, cancel_by="kubectl-annotate")
POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}


class FakeKube:
    def __init__(self, status: dict[str, Any] | None = None) -> None:
        self.obj: dict[str, Any] = {
            "metadata": {"name": "train", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": POD}}}},
            "status": status or {},
        }
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    async def patch_status(
        self, plural: str, namespace: str, name: str, doc: dict[str, Any]
    ) -> dict[str, Any]:
        self.calls.append("status")
        self.obj["status"] = {k: v for k, v in {**self.obj["status"], **doc}.items() if v}
        return copy.deepcopy(self.obj)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.jobs.get(name))

    async def delete_job(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append(f"delete {name} {uid}")

    async def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"patch {patch}")
        return {}

    async def create_event(self, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.calls.append(f"event {kwargs['reason']}: {kwargs['message']}")
        return {}


def context(kube: FakeKube) -> OperatorContext:
    metrics = Metrics()
    return OperatorContext(
        settings=OperatorSettings(tick_seconds=60),
        kube=cast(Any, kube),
        metrics=metrics,
        provider=cast(Any, None),
        intensity=RegionIntensity(cast(Any, None), metrics),
        clock=lambda: NOW,
    )


def child(owner_uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "train",
            "namespace": "ns",
            "uid": "job-uid",
            "ownerReferences": [{"uid": owner_uid}],
        }
    }


def reasons(kube: FakeKube) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in kube.obj["status"]["conditions"]}


async def test_a_held_job_ends_failed_cancelled_and_not_held() -> None:
    held = {"conditions": [{"type": "Held", "status": "True", "reason": "Pending",
                            "message": "", "lastTransitionTime": "2026-03-01T11:00:00Z"}],
            "plannedStartTime": "2026-03-01T15:00:00Z"}  # fmt: skip
    kube = FakeKube(held)
    ctx = context(kube)
    await cancel_carbonawarejob(ctx, copy.deepcopy(kube.obj), BY)
    await asyncio_settle()
    assert kube.obj["status"]["state"] == "Failed"
    assert reasons(kube) == {"Held": "Cancelled", "Failed": "Cancelled"}
    assert "plannedStartTime" not in kube.obj["status"]
    assert not any(call.startswith("delete") for call in kube.calls)
    assert any("kubectl-annotate" in call for call in kube.calls if call.startswith("event"))
    assert ctx.registry.was_released("u1")


async def test_a_running_job_is_recorded_before_its_own_child_is_deleted() -> None:
    kube = FakeKube({"releaseTime": "2026-03-01T11:00:00Z", "jobName": "train"})
    kube.jobs["train"] = child("u1")
    await cancel_carbonawarejob(context(kube), copy.deepcopy(kube.obj), BY)
    assert kube.calls[:2] == ["status", "delete train job-uid"]
    assert "Job train and its pods are deleted" in kube.obj["status"]["conditions"][0]["message"]


async def test_a_job_of_the_same_name_owned_by_someone_else_is_not_deleted() -> None:
    kube = FakeKube({"releaseTime": "2026-03-01T11:00:00Z"})
    kube.jobs["train"] = child("another-uid")
    await cancel_carbonawarejob(context(kube), copy.deepcopy(kube.obj), BY)
    assert kube.calls[0] == "status"
    assert not any(call.startswith("delete") for call in kube.calls)


async def test_a_delete_that_failed_after_the_record_is_done_on_the_retry() -> None:
    kube = FakeKube({"releaseTime": "2026-03-01T11:00:00Z"})
    kube.jobs["train"] = child("u1")
    ctx = context(kube)
    await cancel_carbonawarejob(ctx, copy.deepcopy(kube.obj), BY)
    kube.calls.clear()
    await cancel_carbonawarejob(ctx, copy.deepcopy(kube.obj), BY)
    assert kube.calls == ["delete train job-uid"]


async def test_a_finished_job_is_left_alone() -> None:
    kube = FakeKube({"completionTime": "2026-03-01T11:00:00Z", "state": "Succeeded"})
    await cancel_carbonawarejob(context(kube), copy.deepcopy(kube.obj), BY)
    assert kube.calls == []


async def test_a_running_plain_job_is_suspended_again() -> None:
    kube = FakeKube()
    kube.jobs["etl"] = {
        "metadata": {"name": "etl", "namespace": "ns", "uid": "j1",
                     "annotations": {"carbonaware.io/release-time": "2026-03-01T11:00:00Z"}},
        "spec": {"suspend": False},
    }  # fmt: skip
    await cancel_plain_job(context(kube), copy.deepcopy(kube.jobs["etl"]), BY)
    (patch,) = [call for call in kube.calls if call.startswith("patch")]
    assert "'suspend': True" in patch
    assert "'carbonaware.io/reason': 'Cancelled'" in patch


async def test_a_held_plain_job_stays_suspended_and_is_marked() -> None:
    kube = FakeKube()
    kube.jobs["etl"] = {
        "metadata": {"name": "etl", "namespace": "ns", "uid": "j1"},
        "spec": {"suspend": True},
    }
    await cancel_plain_job(context(kube), copy.deepcopy(kube.jobs["etl"]), BY)
    (patch,) = [call for call in kube.calls if call.startswith("patch")]
    assert "suspend" not in patch
    assert "'carbonaware.io/state': 'Failed'" in patch


async def asyncio_settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)
