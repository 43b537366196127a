"""The operator on the real local control plane: hold, release, track, survive SIGKILL.

Grid intensity comes from a local server speaking the UK Carbon Intensity API, whose values
each test controls; Job pods run on kwok nodes and complete on their own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .grid import Intensity, grid, operator_for
from .operatorproc import (
    OperatorProcess,
    caj,
    condition,
    free_port,
    get,
    operator_env,
    suspended_job,
    ticked,
    wait_for,
    when,
)
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[OperatorProcess]:
    _, server = grid
    process = operator_for(crds, server, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


def test_threshold_job_is_held_then_released_and_succeeds(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    crds.apply(caj("train", {"policy": "Threshold", "maxIntensity": 100}), namespace=namespace)

    held = wait_for(
        lambda: (c := condition(get(crds, "caj", namespace, "train"), "Held"))
        and c["status"] == "True"
        and c,
        timeout=30,
        what="the Held condition",
    )
    assert held["reason"] == "WaitingForThreshold"
    obj = get(crds, "caj", namespace, "train")
    assert obj["status"]["state"] == "Held"
    assert obj["status"]["intensity"]["atCreation"] == 300
    assert obj["status"]["latestStartTime"]
    assert "jobName" not in obj["status"]
    assert crds.kubectl_json("get", "jobs", "-n", namespace)["items"] == []

    intensity.now = 50.0  # the grid turns clean
    done = wait_for(
        lambda: (o := get(crds, "caj", namespace, "train")).get("status", {}).get("state")
        == "Succeeded"
        and o,
        timeout=60,
        what="the job to succeed",
    )
    status = done["status"]
    assert condition(done, "Released")["reason"] == "ThresholdMet"  # type: ignore[index]
    assert condition(done, "Complete")["status"] == "True"  # type: ignore[index]
    assert status["intensity"]["atRelease"] == 50
    assert status["intensity"]["atCreation"] == 300
    created = when(done["metadata"]["creationTimestamp"])
    assert created <= when(status["releaseTime"]) <= when(status["startTime"])
    assert when(status["startTime"]) <= when(status["completionTime"])
    job = get(crds, "job", namespace, status["jobName"])
    assert job["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    assert job["metadata"]["labels"]["carbonaware.io/job-uid"] == done["metadata"]["uid"]
    events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "train"}
    assert {"Held", "Released", "Succeeded"} <= reasons

    # SCI of the run: every field, consistent, and the same figures on the Job and its pods.
    sci = status["sci"]
    assert set(sci) == {
        "energyKWh", "operationalGrams", "embodiedGrams", "totalGrams", "perUnitGrams",
        "functionalUnit", "avoidedGrams", "method", "cpuCoreSeconds",
        "cpuKWh", "memoryKWh", "energySource", "intensitySource",
    }  # fmt: skip
    assert sci["intensitySource"] == "ukci"
    assert sci["energySource"] in {"modelled", "reservation"}
    assert sci["energyKWh"] > 0
    assert sci["cpuCoreSeconds"] > 0
    assert sci["totalGrams"] == pytest.approx(sci["operationalGrams"] + sci["embodiedGrams"])
    assert sci["perUnitGrams"] == pytest.approx(sci["totalGrams"])  # R = one run
    assert sci["functionalUnit"] == "1 run"
    assert sci["operationalGrams"] == pytest.approx(sci["energyKWh"] * 50, rel=0.01)
    assert "ccf-linear(aws:" in sci["method"] or "ccf-linear(gcp:" in sci["method"]
    assert status["intensity"]["runMean"] == 50
    selector = f"batch.kubernetes.io/job-name={status['jobName']}"
    pods = crds.kubectl_json("get", "pods", "-n", namespace, "-l", selector)["items"]
    assert pods
    job = get(crds, "job", namespace, status["jobName"])
    for annotated in [job, *pods]:
        annotations = annotated["metadata"]["annotations"]
        assert float(annotations["carbonaware.io/sci-grams"]) == pytest.approx(
            sci["totalGrams"], rel=1e-4
        )
        assert float(annotations["carbonaware.io/energy-kwh"]) == pytest.approx(
            sci["energyKWh"], rel=1e-4
        )
        assert "carbonaware.io/cpu-core-seconds" in annotations


def test_forecast_job_waits_for_the_planned_window(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    now = datetime.now(UTC)
    intensity.low_from = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    crds.apply(
        caj("nightly", {"policy": "Forecast", "maxDelaySeconds": 12 * 3600,
                        "expectedDurationSeconds": 1800}),
        namespace=namespace,
    )  # fmt: skip
    obj = wait_for(
        lambda: (o := get(crds, "caj", namespace, "nightly"))
        .get("status", {})
        .get("plannedStartTime")
        and o,
        timeout=30,
        what="a planned start",
    )
    assert condition(obj, "Held")["reason"] == "WaitingForLowerIntensity"  # type: ignore[index]
    assert when(obj["status"]["plannedStartTime"]) == intensity.low_from
    assert obj["status"]["intensity"]["plannedWindowMean"] == 40

    intensity.low_from = now - timedelta(hours=1)  # the low window is now
    released = wait_for(
        lambda: (o := get(crds, "caj", namespace, "nightly")).get("status", {}).get("releaseTime")
        and o,
        timeout=30,
        what="release in the low window",
    )
    assert condition(released, "Released")["reason"] == "LowCarbonWindow"  # type: ignore[index]


def test_spec_edit_while_held_replans(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    crds.apply(caj("edit", {"policy": "Threshold", "maxIntensity": 100}), namespace=namespace)
    first = wait_for(
        lambda: get(crds, "caj", namespace, "edit").get("status", {}).get("latestStartTime"),
        timeout=30,
        what="a latest start",
    )
    crds.kubectl("patch", "caj", "edit", "-n", namespace, "--type=merge",
                 "-p", json.dumps({"spec": {"schedule": {"maxDelaySeconds": 600}}}))  # fmt: skip
    second = wait_for(
        lambda: (t := get(crds, "caj", namespace, "edit").get("status", {}).get("latestStartTime"))
        != first
        and t,
        timeout=30,
        what="the re-planned latest start",
    )
    created = when(get(crds, "caj", namespace, "edit")["metadata"]["creationTimestamp"])
    assert when(second) == created + timedelta(seconds=600)


def test_provider_down_releases_at_latest_start(crds: Any, namespace: str, tmp_path: Path) -> None:
    port = free_port()
    env = operator_env(crds.kubeconfig, providers="ukci", ukci_base_url="http://127.0.0.1:9",
                       provider_cache_ttl_seconds=1, tick_seconds=2, metrics_port=port,
                       metrics_address="127.0.0.1")  # fmt: skip
    process = OperatorProcess(env, tmp_path / "operator.log")
    process.start()
    try:
        # Created once the operator ticks, so that it sees the job before its latest start.
        wait_for(lambda: ticked(port), timeout=60, what="the operator's first tick")
        crds.apply(caj("blind", {"policy": "Forecast", "maxDelaySeconds": 20}), namespace=namespace)
        held = wait_for(lambda: condition(get(crds, "caj", namespace, "blind"), "Held"),
                        timeout=30, what="Held")  # fmt: skip
        assert (held["status"], held["reason"]) == ("True", "ForecastUnavailable"), held
        obj = wait_for(
            lambda: (o := get(crds, "caj", namespace, "blind")).get("status", {}).get("releaseTime")
            and o,
            timeout=60,
            what="release at the latest start",
        )
    finally:
        process.stop()
    status = obj["status"]
    assert condition(obj, "Released")["reason"] in ("ProviderUnavailable", "DeadlineReached")  # type: ignore[index]
    assert when(status["releaseTime"]) <= when(status["latestStartTime"])
    assert when(status["latestStartTime"]) == when(
        obj["metadata"]["creationTimestamp"]
    ) + timedelta(seconds=20)


def test_immediate_and_plain_suspended_job(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    crds.apply(caj("now", {"policy": "Immediate"}), namespace=namespace)
    plain = suspended_job(
        "plain",
        labels={"carbonaware.io/managed": "true"},
        annotations={"carbonaware.io/policy": "Threshold", "carbonaware.io/max-intensity": "100"},
    )
    crds.apply(plain, namespace=namespace)
    released = wait_for(
        lambda: (o := get(crds, "caj", namespace, "now")).get("status", {}).get("releaseTime")
        and o,
        timeout=30,
        what="the Immediate job's release",
    )
    assert condition(released, "Released")["reason"] == "Immediate"  # type: ignore[index]
    annotations = wait_for(
        lambda: (a := get(crds, "job", namespace, "plain")["metadata"].get("annotations", {})).get(
            "carbonaware.io/state"
        )
        == "Held"
        and a,
        timeout=30,
        what="the plain Job held",
    )
    assert annotations["carbonaware.io/reason"] == "WaitingForThreshold"
    assert get(crds, "job", namespace, "plain")["spec"]["suspend"] is True
    intensity.now = 50.0
    job = wait_for(
        lambda: (j := get(crds, "job", namespace, "plain"))["spec"]["suspend"] is False and j,
        timeout=30,
        what="the plain Job unsuspended",
    )
    assert job["metadata"]["annotations"]["carbonaware.io/reason"] == "ThresholdMet"

    def plain_complete() -> bool:
        conditions = get(crds, "job", namespace, "plain").get("status", {}).get("conditions", [])
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    wait_for(plain_complete, timeout=60, what="the plain Job to complete")


def test_deleting_the_resource_deletes_its_job(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    crds.apply(caj("gone", {"policy": "Immediate"}), namespace=namespace)
    job_name = wait_for(
        lambda: get(crds, "caj", namespace, "gone").get("status", {}).get("jobName"),
        timeout=30, what="the Job",
    )  # fmt: skip
    crds.kubectl("delete", "caj", "gone", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not any(j["metadata"]["name"] == job_name
                        for j in crds.kubectl_json("get", "jobs", "-n", namespace)["items"]),
        timeout=60, what="garbage collection of the Job",
    )  # fmt: skip


def test_sigkill_while_releasing_200_jobs_loses_and_duplicates_nothing(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, _ = grid
    count = 200
    manifests = [
        caj(f"batch-{i:03d}", {"policy": "Threshold", "maxIntensity": 100}) for i in range(count)
    ]
    listing = {"apiVersion": "v1", "kind": "List", "items": manifests}
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(listing))

    def held() -> int:
        items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
        return sum(1 for o in items if o.get("status", {}).get("state") == "Held")

    wait_for(lambda: held() == count, timeout=120, what="all 200 jobs held")
    intensity.now = 50.0

    def jobs() -> list[dict[str, Any]]:
        return list(crds.kubectl_json("get", "jobs", "-n", namespace)["items"])

    first = wait_for(
        lambda: len(jobs()) >= 10 and len(jobs()), timeout=60, what="releases to start"
    )
    operator.kill()
    in_flight = len(jobs())
    operator.start()

    def all_released() -> bool:
        items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
        return len(items) == count and all(o.get("status", {}).get("releaseTime") for o in items)

    try:
        wait_for(all_released, timeout=180, what="every job released after the restart")
    except AssertionError:
        items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
        waiting = [(o["metadata"]["name"], o.get("status")) for o in items
                   if not o.get("status", {}).get("releaseTime")]  # fmt: skip
        print(f"{len(waiting)} not released, e.g. {waiting[:3]}\n{operator.log()[-20000:]}")
        raise
    owners = Counter(j["metadata"]["labels"]["carbonaware.io/job-uid"] for j in jobs())
    uids = {o["metadata"]["uid"] for o in crds.kubectl_json("get", "caj", "-n", namespace)["items"]}
    assert set(owners) == uids, "every CarbonAwareJob has a Job"
    assert max(owners.values()) == 1, "no CarbonAwareJob has two Jobs"
    assert first < count, "the kill happened mid-release"
    assert in_flight < count, "the kill happened mid-release"


def test_release_cap_and_priority_order_releases(
    crds: Any, namespace: str, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> None:
    """With a cap of 2 releases per tick, 6 jobs that fall due together go 2 a tick, higher
    priority first."""
    intensity, server = grid
    env = operator_env(
        crds.kubeconfig, providers="ukci", ukci_base_url=server.url,
        provider_cache_ttl_seconds=1, tick_seconds=3, release_cap_per_tick=2,
    )  # fmt: skip
    process = OperatorProcess(env, tmp_path / "operator.log")
    process.start()
    try:
        manifests = [
            caj(f"capped-{i}", {"policy": "Threshold", "maxIntensity": 100}, priority=i)
            for i in range(6)
        ]
        listing = {"apiVersion": "v1", "kind": "List", "items": manifests}
        crds.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(listing))

        def states() -> list[str]:
            items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
            return [o.get("status", {}).get("state", "") for o in items]

        wait_for(lambda: states().count("Held") == 6, timeout=60, what="all six held")
        intensity.now = 50.0  # all six fall due at the same tick

        def released() -> list[dict[str, Any]] | None:
            items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
            done = [o for o in items if o.get("status", {}).get("releaseTime")]
            return items if len(done) == 6 else None

        items = wait_for(released, timeout=90, what="all six released")
    finally:
        process.stop()
    ticks = releases_by_tick(items, tick_seconds=3)
    assert all(len(tick) <= 2 for tick in ticks), f"at most 2 per tick: {ticks}"
    assert len(ticks) >= 3, f"six releases need three ticks: {ticks}"
    priorities = [priority for tick in ticks for priority in sorted(tick, reverse=True)]
    assert priorities == [5, 4, 3, 2, 1, 0], f"higher priority first: {ticks}"


def releases_by_tick(items: list[dict[str, Any]], tick_seconds: float) -> list[list[int]]:
    """The priorities released in each tick, in tick order. A tick's releases run concurrently
    and each stamps ``releaseTime`` (whole seconds) when its child is created, so one tick's
    stamps may differ by a second, in any order; ticks start ``tick_seconds`` apart, so a gap
    of more than half a tick (2 s here, rounded) starts the next one."""
    stamped = sorted(
        ((datetime.fromisoformat(o["status"]["releaseTime"].replace("Z", "+00:00")), o)
         for o in items),
        key=lambda pair: pair[0],
    )  # fmt: skip
    ticks: list[list[int]] = []
    previous: datetime | None = None
    for moment, obj in stamped:
        if previous is None or (moment - previous).total_seconds() > tick_seconds / 2:
            ticks.append([])
        ticks[-1].append(int(obj["spec"]["priority"]))
        previous = moment
    return ticks
