"""Interruptible jobs once released: each tick's run-or-pause decision from the status, the
order of writes (status first, then the child), what a restart re-applies, and the status
documents of the first and last segments."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from carbonaware.api.carbonawarejob import Interruptible
from carbonaware.api.conditions import ConditionType, JobState, Reason, find_condition
from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import SpecError
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.release import release_plain_job
from carbonaware.handlers.segmentdocs import closed_at_end, opened, summed_estimate
from carbonaware.handlers.segmented import (
    adopt,
    decide_runs,
    segment_jobs,
    segmented_of,
    work_so_far,
)
from carbonaware.handlers.state import SegmentedRun, WorkKind
from carbonaware.handlers.work import schedule_from_annotations
from carbonaware.scheduling.interruptible import RunReason
from carbonaware.scheduling.view import ForecastView
from carbonaware.sci.estimate import SciEstimate

from .test_release import DECISION, NOW, FakeKube, setup

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
RULES = {"minRunSeconds": 1800}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def released_body(segments: list[dict[str, Any]], **rules: Any) -> dict[str, Any]:
    """``train``, released at NOW - 1 h, 3 h of work due by NOW + 5 h."""
    body = copy.deepcopy(FakeKube().obj)
    body["spec"]["schedule"] = {
        "policy": "Forecast",
        "expectedDurationSeconds": 3 * 3600,
        "interruptible": {**RULES, **rules},
    }
    body["status"] = {
        "releaseTime": stamp(NOW - HOUR),
        "latestStartTime": stamp(NOW + 2 * HOUR),
        "region": "GB",
        "jobName": "train",
        "segments": segments,
        "conditions": [{"type": "Released", "status": "True", "reason": "LowCarbonSegment"}],
    }
    return body


def run_of(segments: list[dict[str, Any]], **rules: Any) -> SegmentedRun:
    ctx, _ = setup(FakeKube())
    run = segmented_of(ctx, released_body(segments, **rules))
    assert run is not None
    return run


def snapshot(values: list[float]) -> dict[str, RegionSnapshot]:
    current = IntensityPoint(NOW, NOW + 30 * MINUTE, values[0], "test", is_forecast=False)
    return {
        "GB": RegionSnapshot(
            "GB",
            NOW,
            current,
            (),
            ForecastView(now=NOW, origin=NOW, step=30 * MINUTE, values=values),
            None,
        )
    }


def test_the_run_is_read_from_the_status_deadline_from_latest_start_plus_work() -> None:
    run = run_of([{"start": stamp(NOW - HOUR)}])
    assert run.deadline == NOW + 5 * HOUR
    assert run.work_seconds == 3 * 3600
    assert run.running
    assert run.child_name == "train"
    assert run.rules == Interruptible(min_run_seconds=1800)
    assert work_so_far(run, NOW) == 3600


def test_bodies_that_are_not_running_interruptible_work_are_not_segmented() -> None:
    ctx, _ = setup(FakeKube())
    plain = released_body([{"start": stamp(NOW)}])
    del plain["spec"]["schedule"]["interruptible"]
    finished = released_body([{"start": stamp(NOW)}])
    finished["status"]["completionTime"] = stamp(NOW)
    held = released_body([])
    del held["status"]["releaseTime"]
    assert [segmented_of(ctx, body) for body in (plain, finished, held)] == [None] * 3


def test_work_counts_closed_segments_and_the_open_one_less_its_resume_overhead() -> None:
    run = run_of(
        [
            {"start": stamp(NOW - 3 * HOUR), "end": stamp(NOW - 2 * HOUR), "workSeconds": 3000},
            {"start": stamp(NOW - HOUR)},
        ],
        resumeOverheadSeconds=600,
    )
    assert run.interruptions == 1
    assert work_so_far(run, NOW) == 3000 + 3600 - 600


def test_a_running_job_past_its_minimum_run_pauses_for_cleaner_hours_later() -> None:
    run = run_of([{"start": stamp(NOW - HOUR)}])  # 1 h of 3 done, 5 h left
    [decision] = decide_runs([run], snapshot([400] * 2 + [50] * 8), NOW, MINUTE)
    assert not decision.run
    assert decision.reason is RunReason.WAITING_FOR_LOWER_INTENSITY


def test_a_running_job_inside_its_minimum_run_keeps_running() -> None:
    run = run_of([{"start": stamp(NOW - 10 * MINUTE)}])
    [decision] = decide_runs([run], snapshot([400] * 2 + [50] * 8), NOW, MINUTE)
    assert decision.run
    assert decision.reason is RunReason.MINIMUM_RUN


def test_a_paused_job_resumes_when_the_remaining_work_just_fits() -> None:
    # 2 h of work left and 2 h to the deadline: the guard runs it whatever the forecast says.
    run = run_of(
        [{"start": stamp(NOW - 4 * HOUR), "end": stamp(NOW - 3 * HOUR), "workSeconds": 3600}]
    )
    run.deadline = NOW + 2 * HOUR
    [decision] = decide_runs([run], snapshot([900] * 4 + [10] * 8), NOW, MINUTE)
    assert decision.run
    assert decision.reason is RunReason.DEADLINE_REACHED


async def test_a_pause_writes_the_status_then_suspends_the_job_and_a_resume_unsuspends() -> None:
    kube = FakeKube()
    ctx, _ = setup(kube)
    ctx.registry.forget(("CarbonAwareJob", "ns", "train"))
    kube.obj = released_body([{"start": stamp(NOW - HOUR)}])
    order: list[str] = []
    kube.patch_job = lambda ns, name, patch: _record(order, f"suspend={patch['spec']['suspend']}")  # type: ignore[method-assign]
    original = kube.patch_status

    async def patch_status(*args: Any, **kwargs: Any) -> dict[str, Any]:
        order.append("status")
        return await original(*args, **kwargs)

    kube.patch_status = patch_status  # type: ignore[method-assign]
    adopt(ctx, copy.deepcopy(kube.obj))
    [job] = segment_jobs(ctx, snapshot([400] * 2 + [50] * 8), NOW)
    await job()
    assert order == ["status", "suspend=True"]
    status = kube.obj["status"]
    assert status["state"] == JobState.PAUSED.value
    assert status["interruptions"] == 1
    assert status["segments"][0]["end"] == stamp(NOW)
    assert status["segments"][0]["workSeconds"] == 0.0  # no pod ran in this fake
    paused = find_condition(status["conditions"], ConditionType.PAUSED)
    assert paused is not None
    assert paused["status"] == "True"
    assert paused["reason"] == "WaitingForLowerIntensity"
    # Nothing changes while the plan says wait; then the clean hours come.
    assert segment_jobs(ctx, snapshot([400] * 2 + [50] * 8), NOW + MINUTE) == []
    order.clear()
    later = NOW + HOUR
    [job] = segment_jobs(ctx, snapshot([50] * 10), later)
    await job()
    assert order == ["status", "suspend=False"]
    status = kube.obj["status"]
    assert status["state"] == JobState.RUNNING.value
    assert status["segments"][-1] == {"start": stamp(later)}
    running = find_condition(status["conditions"], ConditionType.RUNNING)
    assert running is not None
    assert running["status"] == "True"


async def test_after_a_restart_the_first_decision_is_applied_to_the_child_again() -> None:
    """The status says paused; the Job may not be suspended (stopped between the two
    writes): the first tick suspends it again without writing a second pause."""
    kube = FakeKube()
    ctx, _ = setup(kube)
    kube.obj = released_body(
        [{"start": stamp(NOW - 2 * HOUR), "end": stamp(NOW - HOUR), "workSeconds": 3600}]
    )
    order: list[str] = []
    kube.patch_job = lambda ns, name, patch: _record(order, f"suspend={patch['spec']['suspend']}")  # type: ignore[method-assign]
    adopt(ctx, copy.deepcopy(kube.obj))
    [job] = segment_jobs(ctx, snapshot([400] * 2 + [50] * 8), NOW)
    await job()
    assert order == ["suspend=True"]
    assert kube.obj["status"].get("interruptions") is None  # nothing rewritten
    assert segment_jobs(ctx, snapshot([400] * 2 + [50] * 8), NOW + MINUTE) == []


async def _record(order: list[str], what: str) -> dict[str, Any]:
    order.append(what)
    return {}


def test_the_first_segment_opens_at_release_with_a_running_condition() -> None:
    doc = opened({"conditions": [], "observedGeneration": 2}, NOW, Reason.LOW_CARBON_SEGMENT, "m")
    assert doc["segments"] == [{"start": stamp(NOW)}]
    assert doc["workDoneSeconds"] == 0
    assert doc["interruptions"] == 0
    assert [(c["type"], c["status"]) for c in doc["conditions"]] == [("Running", "True")]


def test_the_last_segment_closes_at_the_end_counting_from_its_pods_start() -> None:
    status = {
        "segments": [
            {"start": stamp(NOW - 3 * HOUR), "end": stamp(NOW - 2 * HOUR), "workSeconds": 3500.0},
            {"start": stamp(NOW - HOUR)},
        ]
    }
    doc = closed_at_end(status, NOW, {"operationalGrams": 5.0}, NOW - HOUR + 2 * MINUTE)
    last = doc["segments"][-1]
    assert last["end"] == stamp(NOW)
    assert last["workSeconds"] == 3600 - 120
    assert last["operationalGrams"] == 5.0
    assert doc["workDoneSeconds"] == 3500 + 3480
    assert doc["interruptions"] == 1


def test_the_sci_sums_the_segments() -> None:
    last = SciEstimate(
        energy_kwh=0.5, operational_grams=20.0, embodied_grams=2.0, total_grams=22.0,
        per_unit_grams=11.0, functional_unit="2 epochs", avoided_grams=3.0, method="m",
        cpu_core_seconds=100.0, intensity_g_per_kwh=40.0, cpu_kwh=0.4, memory_kwh=0.1,
    )  # fmt: skip
    earlier = [
        {"energyKWh": 0.25, "cpuKWh": 0.2, "memoryKWh": 0.05, "operationalGrams": 10.0,
         "embodiedGrams": 1.0, "cpuCoreSeconds": 50.0, "avoidedGrams": 4.0},
        {"energyKWh": 0.25, "cpuKWh": 0.2, "memoryKWh": 0.05, "operationalGrams": 12.0,
         "embodiedGrams": 1.0, "cpuCoreSeconds": 50.0},
    ]  # fmt: skip
    total = summed_estimate(last, earlier, quantity=2.0)
    assert total.energy_kwh == pytest.approx(1.0)
    assert total.cpu_kwh == pytest.approx(0.8)
    assert total.memory_kwh == pytest.approx(0.2)
    assert total.operational_grams == pytest.approx(42.0)
    assert total.total_grams == pytest.approx(46.0)
    assert total.per_unit_grams == pytest.approx(23.0)
    assert total.cpu_core_seconds == pytest.approx(200.0)
    assert total.avoided_grams == pytest.approx(7.0)
    assert summed_estimate(last, [], quantity=2.0) is last


def test_segmented_work_kind_and_key() -> None:
    run = run_of([{"start": stamp(NOW)}])
    assert run.kind is WorkKind.CARBON_AWARE_JOB
    assert run.key == ("CarbonAwareJob", "ns", "train")


def test_a_released_plain_job_is_read_from_its_annotations() -> None:
    ctx, _ = setup(FakeKube())
    job = {
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "j1",
            "creationTimestamp": stamp(NOW - 2 * HOUR),
            "annotations": {
                "carbonaware.io/interruptible": '{"minRunSeconds": 600}',
                "carbonaware.io/expected-duration-seconds": "7200",
                "carbonaware.io/release-time": stamp(NOW - HOUR),
                "carbonaware.io/latest-start-time": stamp(NOW + HOUR),
                "carbonaware.io/region": "DE",
                "carbonaware.io/segments": json.dumps([{"start": stamp(NOW - HOUR)}]),
            },
        },
        "spec": {"suspend": False},
        "status": {},
    }
    run = segmented_of(ctx, job, WorkKind.JOB)
    assert run is not None
    assert (run.kind, run.child_name, run.region) == (WorkKind.JOB, "nightly", "DE")
    assert run.deadline == NOW + 3 * HOUR
    assert run.running
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert segmented_of(ctx, job, WorkKind.JOB) is None
    job["status"] = {}
    job["metadata"]["annotations"]["carbonaware.io/interruptible"] = "yes"
    assert segmented_of(ctx, job, WorkKind.JOB) is None


def test_interruptible_annotations_say_what_must_change() -> None:
    with pytest.raises(SpecError, match="must be a JSON object such as"):
        schedule_from_annotations({"carbonaware.io/interruptible": '{"minRunSeconds": 5}'})
    with pytest.raises(SpecError, match=r"must only be set with carbonaware\.io/policy Forecast"):
        schedule_from_annotations(
            {
                "carbonaware.io/interruptible": '{"minRunSeconds": 600}',
                "carbonaware.io/policy": "Threshold",
                "carbonaware.io/max-intensity": "100",
            }
        )


async def test_a_released_interruptible_plain_job_opens_its_first_segment_in_annotations() -> None:
    kube = FakeKube()
    ctx, work = setup(kube)
    patches: list[dict[str, Any]] = []

    async def patch_job(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        patches.append(patch)
        return {}

    kube.patch_job = patch_job  # type: ignore[method-assign]
    plain = dataclasses.replace(
        work, kind=WorkKind.JOB, interruptible=Interruptible(min_run_seconds=600)
    )
    await release_plain_job(ctx, plain, DECISION, snapshot=None)
    [patch] = patches
    annotations = patch["metadata"]["annotations"]
    assert patch["spec"] == {"suspend": False}
    assert json.loads(annotations["carbonaware.io/segments"]) == [{"start": stamp(NOW)}]
    assert annotations["carbonaware.io/interruptions"] == "0"
    assert annotations["carbonaware.io/work-done-seconds"] == "0"
