"""Two replicas with kopf peering: one acts, the other stands by, and takes over when the
active one dies, without releasing anything twice.

kopf's peering CRD and the ClusterKopfPeering object come from the Helm chart (rendered with
``replicaCount=2``). Both replicas run ``carbonaware run --peering NAME --priority N``
cluster-wide. The low-priority replica starts first, alone, and holds jobs: its in-memory
index of held work then outlives its pause, which is what the refresh loop must not act on
when it resumes (handlers/loop.py re-reads it). Those jobs' Jobs are deleted by the TTL
controller once finished, so no watch event tells the resuming replica they were released.
Then:

1. the high-priority replica starts: the low one's log says it paused (kopf, and the refresh
   loop); jobs held before and after are released by the high one only, once each, when the
   grid turns clean;
2. the high-priority replica is SIGKILLed: after kopf's peering lifetime (60 s) at most, the
   low one resumes, releases what is due exactly once, and releases nothing the high one
   had released already. The handover time is measured and bounded by the lifetime plus two
   ticks plus slack for a loaded machine.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .operatorproc import (
    QUICK_JOB_TEMPLATE,
    REPO_ROOT,
    OperatorProcess,
    caj,
    free_port,
    operator_env,
    scrape_metrics,
    wait_for,
)
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "carbon-aware-operator"
PEERING_CRD = "clusterkopfpeerings.kopf.dev"
LIFETIME = 60.0  # kopf's default settings.peering.lifetime, which the operator keeps
TICK = 1.0
# The gate reads the peering object once per tick and acts at the next one; the rest is for
# process scheduling on a loaded CI machine.
HANDOVER_BOUND = LIFETIME + 2 * TICK + 15.0
DIRTY, CLEAN = 300.0, 50.0


def held_count(port: int, namespace: str) -> int:
    """Held CarbonAwareJobs of ``namespace`` in a replica's ``carbonaware_jobs`` gauge."""
    try:
        samples = scrape_metrics(port, timeout=5)
    except OSError:
        return -1
    for (name, pairs), value in samples.items():
        labels = dict(pairs)
        if (
            name == "carbonaware_jobs"
            and labels.get("namespace") == namespace
            and labels.get("state") == "Held"
        ):
            return int(value)
    return 0


def render(plane: Any, release: str, template: str) -> dict[str, Any]:
    """One template of the chart, as installed with two replicas."""
    rendered = subprocess.run(
        [str(plane.binaries.helm), "template", release, str(CHART), "--set", "replicaCount=2",
         "--show-only", f"templates/{template}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    document: dict[str, Any] = yaml.safe_load(rendered)
    return document


class Replica:
    """One operator process in the peering, with its own log and metrics port."""

    def __init__(self, plane: Any, ukapi: UkApiServer, workdir: Path, name: str, priority: int,
                 peering: str) -> None:  # fmt: skip
        self.name = name
        self.metrics_port = free_port()
        env = operator_env(
            plane.kubeconfig,
            providers="ukci",
            ukci_base_url=ukapi.url,
            provider_cache_ttl_seconds=1,
            default_region="GB",
            tick_seconds=TICK,
            metrics_port=self.metrics_port,
            metrics_address="127.0.0.1",
        )
        self.process = OperatorProcess(
            env, workdir / f"{name}.log", "--peering", peering, "--priority", str(priority)
        )

    def log(self) -> str:
        return self.process.log()

    def released(self, namespace: str) -> Counter[str]:
        """Objects this replica logged a release of, with how many times."""
        pattern = re.compile(rf"released CarbonAwareJob {re.escape(namespace)}/(\S+):")
        return Counter(pattern.findall(self.log()))


@pytest.fixture(scope="module")
def peering_crd(crds: Any) -> Iterator[Any]:
    """kopf's cluster-wide peering CRD from the chart; removed afterwards if we added it, so a
    later ``helm install`` of the chart in this cluster can own it."""
    existing = crds.kubectl("get", "crd", PEERING_CRD, check=False).returncode == 0
    if not existing:
        crds.apply(render(crds, "ha", "peering-crd.yaml"))
        crds.kubectl("wait", "--for=condition=Established", f"crd/{PEERING_CRD}",
                     "--timeout=60s")  # fmt: skip
    yield crds
    if not existing:
        crds.kubectl("delete", "crd", PEERING_CRD, "--wait=true", "--timeout=120s")


@pytest.fixture
def peering(peering_crd: Any) -> Iterator[str]:
    """A ClusterKopfPeering object from the chart, named after a fresh release."""
    document = render(peering_crd, f"ha{secrets.token_hex(3)}", "kopfpeering.yaml")
    assert document["kind"] == "ClusterKopfPeering"
    peering_crd.apply(document)
    name: str = document["metadata"]["name"]
    yield name
    peering_crd.kubectl("delete", "clusterkopfpeering", name, "--wait=false", check=False)


class Grid:
    def __init__(self) -> None:
        self.value = DIRTY

    def __call__(self, start: Any) -> float:
        return self.value


@pytest.fixture
def grid() -> Iterator[tuple[Grid, UkApiServer]]:
    intensity = Grid()
    with serve_uk_api(intensity) as server:
        yield intensity, server


# Jobs that the TTL controller deletes 5 s after they finish: the standby then gets no watch
# event of them when it resumes, only its index says they are held.
SHORT_LIVED = {"spec": {**QUICK_JOB_TEMPLATE["spec"], "ttlSecondsAfterFinished": 5}}


def create(
    plane: Any,
    namespace: str,
    names: list[str],
    schedule: dict[str, Any],
    template: dict[str, Any] = QUICK_JOB_TEMPLATE,
) -> None:
    items = [caj(name, schedule, jobTemplate=template) for name in names]
    listing = {"apiVersion": "v1", "kind": "List", "items": items}
    plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(listing))


WAITING = {"policy": "Threshold", "maxIntensity": 100, "maxDelaySeconds": 3600}


def test_one_replica_acts_and_the_standby_takes_over(
    crds: Any,
    namespace: str,
    peering: str,
    grid: tuple[Grid, UkApiServer],
    tmp_path: Path,
) -> None:
    intensity, ukapi = grid
    low = Replica(crds, ukapi, tmp_path, "low", 10, peering)
    high = Replica(crds, ukapi, tmp_path, "high", 100, peering)

    def states() -> dict[str, dict[str, Any]]:
        items = crds.kubectl_json("get", "caj", "-n", namespace)["items"]
        return {o["metadata"]["name"]: o.get("status") or {} for o in items}

    def all_in(names: list[str], state: str) -> bool:
        current = states()
        return all(current.get(n, {}).get("state") == state for n in names)

    def jobs_of(names: list[str]) -> list[str]:
        children = crds.kubectl_json("get", "jobs", "-n", namespace)["items"]
        return [j["metadata"]["name"] for j in children if j["metadata"]["name"] in names]

    def released(names: list[str]) -> dict[str, str] | None:
        current = states()
        times = {n: current.get(n, {}).get("releaseTime") for n in names}
        return times if all(times.values()) else None  # type: ignore[return-value]

    low.process.start()
    try:
        # ---- the low-priority replica alone: it holds work in its own index
        first = [f"first-{i:02d}" for i in range(20)]
        create(crds, namespace, first, WAITING, SHORT_LIVED)
        create(crds, namespace, ["solo"], {"policy": "Immediate"})
        wait_for(lambda: all_in(first, "Held"), timeout=90, what="the first jobs held by low")
        wait_for(lambda: released(["solo"]), timeout=60, what="low releasing an Immediate job")

        # ---- the high-priority replica joins: low pauses, high acts
        high.process.start()
        wait_for(lambda: "Pausing operations in favour of" in low.log(), timeout=90,
                 what="kopf in low pausing for high")  # fmt: skip
        wait_for(lambda: "refresh loop paused" in low.log(), timeout=30,
                 what="low's refresh loop pausing")  # fmt: skip
        second = [f"second-{i:02d}" for i in range(5)]
        create(crds, namespace, second, WAITING)
        wait_for(lambda: held_count(high.metrics_port, namespace) == 25, timeout=90,
                 what="high holding the 25 jobs")  # fmt: skip
        intensity.value = CLEAN
        times_by_high = wait_for(lambda: released(first + second), timeout=60,
                                 what="the held jobs released")  # fmt: skip
        assert set(high.released(namespace)) == set(first + second)
        assert max(high.released(namespace).values()) == 1
        assert set(low.released(namespace)) == {"solo"}, "the paused replica released nothing"
        wait_for(
            lambda: all_in(first, "Succeeded") and not jobs_of(first),
            timeout=90,
            what="the first jobs finished and their Jobs deleted by the TTL controller",
        )

        # ---- high dies: low takes over after the peering lifetime
        intensity.value = DIRTY
        third = [f"third-{i:02d}" for i in range(10)]
        create(crds, namespace, third, WAITING)
        wait_for(lambda: all_in(third, "Held"), timeout=60, what="the third jobs held")
        wait_for(lambda: held_count(high.metrics_port, namespace) == 10, timeout=60,
                 what="high holding the third jobs")  # fmt: skip
        before = low.log()
        counts = {line: before.count(line) for line in (RESUMED, LOOP_ACTIVE)}
        killed = time.monotonic()
        high.process.kill()
        create(crds, namespace, ["after-kill"], {"policy": "Immediate"})
        handover = measure_handover(low, counts, killed)
        released_after = wait_for(lambda: released(["after-kill"]), timeout=60,
                                  what="low releasing a job created after the kill")  # fmt: skip
        first_release = time.monotonic() - killed
        intensity.value = CLEAN
        wait_for(lambda: released(third), timeout=60, what="low releasing the third jobs")
        wait_for(lambda: all_in(first + second + third + ["solo", "after-kill"], "Succeeded"),
                 timeout=120, what="every job Succeeded")  # fmt: skip
        print(
            f"handover after SIGKILL of the active replica: kopf resumed after "
            f"{handover['kopf']:.1f} s, the refresh loop after {handover['loop']:.1f} s, a new "
            f"job released after {first_release:.1f} s (bound {HANDOVER_BOUND:.0f} s)"
        )
        assert released_after
        assert handover["loop"] <= HANDOVER_BOUND
        assert handover["kopf"] <= HANDOVER_BOUND
    finally:
        high.process.kill()
        low.process.stop()
        print("---- low\n" + low.log()[-4000:])
        print("---- high\n" + high.log()[-4000:])

    # Exactly once, by the right replica: logs, Events, Jobs, release times.
    by_low = low.released(namespace)
    assert set(by_low) == {"solo", "after-kill", *third}, by_low
    assert max(by_low.values()) == 1
    assert not set(by_low) & set(high.released(namespace))
    final = states()
    for name, when in times_by_high.items():
        assert final[name]["releaseTime"] == when, f"{name} was released again"
    events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
    released_events = Counter(
        e["involvedObject"]["name"] for e in events if e["reason"] == "Released"
    )
    assert set(released_events) == set(final)
    assert max(released_events.values()) == 1, released_events
    children = crds.kubectl_json("get", "jobs", "-n", namespace, "-l", "carbonaware.io/job-uid")
    owners = Counter(j["metadata"]["labels"]["carbonaware.io/job-uid"] for j in children["items"])
    assert len(owners) == len(final) - len(first), "one Job each, none again for the TTL'd ones"
    assert max(owners.values()) == 1


RESUMED = "Resuming operations after the pause"  # kopf
LOOP_ACTIVE = "refresh loop active"  # handlers/peering.py


def measure_handover(low: Replica, before: dict[str, int], killed: float) -> dict[str, float]:
    """Seconds from the kill until kopf in ``low`` resumed and until its refresh loop did
    (the first new line of each in its log; ``before`` counts them at the kill)."""
    seen: dict[str, float] = {}

    def check() -> bool:
        log = low.log()
        for key, line in (("kopf", RESUMED), ("loop", LOOP_ACTIVE)):
            if key not in seen and log.count(line) > before[line]:
                seen[key] = time.monotonic() - killed
        return len(seen) == 2

    wait_for(check, timeout=HANDOVER_BOUND + 60, what="low to take over", interval=0.2)
    return seen
