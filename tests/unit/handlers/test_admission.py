"""The policy webhook's handler against a fake API: it patches what the governing policy
says, caches a namespace's policies, and fails open (never raises, never refuses a Job)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest

from carbonaware.api import labels
from carbonaware.config import OperatorSettings
from carbonaware.errors import KubernetesError
from carbonaware.handlers.admission import govern_job
from carbonaware.handlers.context import OperatorContext, PolicyCache
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.metrics import Metrics

ENFORCE = {"metadata": {"name": "hold", "creationTimestamp": "2026-01-01T00:00:00Z"},
           "spec": {"mode": "Enforce", "schedule": {"policy": "Forecast"}}}  # fmt: skip


class FakeKube:
    def __init__(self, policies: list[dict[str, Any]], *, error: Exception | None = None,
                 delay: float = 0.0) -> None:  # fmt: skip
        self.policies, self.error, self.delay = policies, error, delay
        self.lists = 0

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[Any]:
        assert plural == "carbonawarepolicies"
        self.lists += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.policies


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def memo_for(kube: FakeKube, clock: Clock | None = None) -> tuple[Any, Metrics]:
    metrics = Metrics()
    ctx = OperatorContext(
        settings=OperatorSettings(),
        kube=cast(Any, kube),
        metrics=metrics,
        provider=cast(Any, None),
        intensity=RegionIntensity(cast(Any, None), metrics),
        policies=PolicyCache(ttl=5.0, monotonic=clock or Clock()),
    )
    return SimpleNamespace(ctx=ctx), metrics


def job(**meta: Any) -> kopf.Body:
    return kopf.Body({"metadata": {"name": "j", "namespace": "ns", **meta}, "spec": {}})


def admitted(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "carbonaware_policy_admissions_total", {"namespace": "ns", "outcome": outcome}
    )
    return value or 0.0


async def govern(memo: Any, body: kopf.Body, *, dryrun: bool = False) -> list[Any]:
    patch = kopf.Patch(body=body)
    await govern_job(body=body, patch=patch, memo=memo, dryrun=dryrun)
    return list(patch.as_json_patch())


async def test_an_enforce_policy_suspends_labels_and_annotates_the_job() -> None:
    memo, metrics = memo_for(FakeKube([ENFORCE]))
    ops = await govern(memo, job())
    assert {"op": "add", "path": "/spec/suspend", "value": True} in ops
    (label_op,) = [op for op in ops if op["path"] == "/metadata/labels"]
    assert label_op["value"] == {labels.MANAGED: "true"}
    (annotation_op,) = [op for op in ops if op["path"] == "/metadata/annotations"]
    assert annotation_op["value"][labels.GOVERNING_POLICY] == "hold"
    assert admitted(metrics, "enforced") == 1


async def test_existing_labels_and_annotations_are_kept() -> None:
    memo, _ = memo_for(FakeKube([ENFORCE]))
    ops = await govern(memo, job(labels={"team": "ml"}, annotations={"owner": "me"}))
    paths = {op["path"] for op in ops}
    assert "/metadata/labels/carbonaware.io~1managed" in paths
    assert "/metadata/labels" not in paths  # added beside the Job's own, not replacing them
    assert "/metadata/annotations" not in paths


async def test_no_policy_no_change() -> None:
    memo, metrics = memo_for(FakeKube([]))
    assert await govern(memo, job()) == []
    assert admitted(metrics, "ungoverned") == 1


async def test_a_dry_run_is_patched_but_not_counted() -> None:
    memo, metrics = memo_for(FakeKube([ENFORCE]))
    assert await govern(memo, job(), dryrun=True)
    assert admitted(metrics, "enforced") == 0


@pytest.mark.parametrize(
    "kube",
    [
        FakeKube([], error=KubernetesError("forbidden", status=403)),
        FakeKube([], error=RuntimeError("a bug")),
        FakeKube([ENFORCE], delay=5.0),  # slower than the webhook's own limit
    ],
)
async def test_the_job_is_created_unchanged_when_policies_cannot_be_read(kube: FakeKube) -> None:
    memo, metrics = memo_for(kube)
    assert await govern(memo, job()) == []  # no exception: the API server gets "allowed"
    assert admitted(metrics, "error") == 1


async def test_an_unexpected_failure_changes_nothing_and_raises_nothing() -> None:
    assert await govern(SimpleNamespace(), job()) == []  # no context at all


async def test_a_namespaces_policies_are_listed_once_per_ttl() -> None:
    clock = Clock()
    kube = FakeKube([ENFORCE])
    memo, _ = memo_for(kube, clock)
    for _ in range(3):
        await govern(memo, job())
    assert kube.lists == 1
    clock.now += 5.0
    await govern(memo, job())
    assert kube.lists == 2
