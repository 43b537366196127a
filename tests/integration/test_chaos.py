"""The operator under crashes and API-server outages: nothing lost, nothing doubled, nothing
held past its latest start by more than a tick plus the time the operator was away.

A run (:class:`ChaosRun`) creates CarbonAwareJobs in waves with mixed policies (Immediate,
Threshold, Forecast) and deadlines (``maxDelaySeconds`` or ``deadlineTime``) spread over the
run, against a local UK Carbon Intensity API whose values move with the half hours and
whose forecast is revised during the run. Operator time runs 30 times as fast as the wall
clock (``CARBONAWARE_TIME_SCALE``, fixed origin so restarts keep it continuous), so one
run covers two hours of half-hourly periods in a few minutes; the tick is 1 s of wall time.

Faults, from a seeded random generator (the seed and every fault time are printed):

- ``test_sigkill_chaos``: 500 jobs, the operator process SIGKILLed at least 10 times and
  restarted at once. Downtime is measured from each kill until the restarted operator has
  seen every job again (its ``carbonaware_jobs`` gauge counts them all);
- ``test_api_server_restart``: the API server stopped for 15 s in the middle of a run and
  started again; the operator (never restarted) must reconnect, its kopf watches and its
  own client alike.

The first start is a downtime too, measured the same way: from launch until the operator
counts the first wave (on a loaded host, starting takes seconds of wall time, minutes of
operator time, and the first wave's earliest latest starts fall in it).

Afterwards every job has exactly one Job (by the ``carbonaware.io/job-uid`` label), every
Job completed on the kwok nodes, every status agrees with its Job, and no job was released
later than its latest start plus one tick plus the measured downtime around it.

Each run prints its figures (restarts, downtime per fault, release reasons, lateness); run
with ``-s`` to see them. docs/benchmarks.md (Faults) records a run.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .loopgaps import LAST_SUCCESS, LoopGaps
from .operatorproc import (
    QUICK_JOB_TEMPLATE,
    OperatorProcess,
    ScaledClock,
    caj,
    condition,
    free_port,
    operator_env,
    scrape_metrics,
    wait_for,
    when,
)
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

SCALE = 30.0
TICK_SECONDS = 1.0
JOB_UID = "carbonaware.io/job-uid"


def jobs_seen(port: int, namespace: str) -> int | None:
    """How many CarbonAwareJobs of ``namespace`` the operator's ``carbonaware_jobs`` gauge
    counts (None while its metrics endpoint is not up)."""
    try:
        samples = scrape_metrics(port, timeout=2)
    except OSError:
        return None
    total = 0.0
    for (name, pairs), value in samples.items():
        labels = dict(pairs)
        if (
            name == "carbonaware_jobs"
            and labels.get("namespace") == namespace
            and labels.get("kind") == "CarbonAwareJob"
        ):
            total += value
    return int(total)


class MovingGrid:
    """gCO2e/kWh per half-hour period: a wave of 90 minutes (operator time) between 80 and
    320, whose phase moves each time the forecast is revised (``revise``)."""

    def __init__(self, origin: datetime) -> None:
        self.origin = origin
        self.revision = 0

    def revise(self) -> None:
        self.revision += 1

    def __call__(self, start: datetime) -> float:
        minutes = (start - self.origin) / timedelta(minutes=1)
        return 200.0 + 120.0 * math.sin(2 * math.pi * minutes / 90.0 + 1.3 * self.revision)


@dataclass(frozen=True)
class RunPlan:
    """What a run does, in wall-clock seconds from its start."""

    jobs: int = 500
    waves: int = 5
    wave_every: float = 20.0
    kills: int = 10
    kill_window: tuple[float, float] = (8.0, 170.0)
    min_gap: float = 6.0
    revise_every: float = 45.0
    latest_start_minutes: tuple[float, float] = (3.0, 60.0)  # operator time after creation
    outage: tuple[float, float] | None = None  # (start, seconds) of an API-server outage
    seed: int = 20240611


@dataclass
class Downtime:
    """One stretch without a working operator (wall clock). ``acted`` is when the killed
    process last completed a tick: what it decided in a tick the kill cut short may never have
    been written, so for lateness the downtime counts from then."""

    began: datetime
    cause: str
    ended: datetime | None = None
    acted: datetime | None = None


@dataclass
class RunReport:
    plan: RunPlan
    wall_seconds: float = 0.0
    downtimes: list[Downtime] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    late: list[float] = field(default_factory=list)  # seconds of operator time
    least_spare: tuple[float, str] | None = None  # (operator seconds, job) nearest the bound
    restarts: int = 0
    api_ready_at: datetime | None = None
    reconnect_seconds: float | None = None
    completed_seconds: float = 0.0

    def lines(self) -> list[str]:
        recoveries = [
            (d.ended - d.began).total_seconds()
            for d in self.downtimes
            if d.ended is not None and d.cause != "start"
        ]
        late = sorted(self.late)
        out = [
            f"seed {self.plan.seed}: {self.plan.jobs} jobs, {self.restarts} operator restarts, "
            f"{self.wall_seconds:.0f} s of wall time (all Jobs complete after "
            f"{self.completed_seconds:.0f} s)",
            f"release reasons: {dict(self.reasons)}",
        ]
        for downtime in self.downtimes:
            span = (downtime.ended - downtime.began).total_seconds() if downtime.ended else None
            out.append(
                f"  {downtime.cause} at {downtime.began:%H:%M:%S.%f}"[:-3]
                + (f", back after {span:.1f} s" if span is not None else ", not back")
            )
        if recoveries:
            out.append(
                f"downtime per fault: median {sorted(recoveries)[len(recoveries) // 2]:.1f} s, "
                f"max {max(recoveries):.1f} s"
            )
        if self.reconnect_seconds is not None:
            out.append(f"API server ready -> new job released: {self.reconnect_seconds:.1f} s")
        out.append(
            f"released after the latest start: {len(late)} jobs"
            + (f", most {late[-1]:.0f} s (operator time)" if late else "")
        )
        if self.least_spare is not None:
            spare, name = self.least_spare
            out.append(
                f"nearest the lateness bound: {name}, {spare:.0f} s of operator time "
                f"({spare / SCALE:.1f} s of wall time) to spare"
            )
        return out


class ChaosRun:
    """One run against a running operator process; see the module docstring."""

    def __init__(
        self, plane: Any, namespace: str, workdir: Path, plan: RunPlan, ukapi: UkApiServer
    ) -> None:
        self.plane = plane
        self.namespace = namespace
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SCALE)
        self.grid = MovingGrid(self.clock.origin)
        self.ukapi = ukapi
        ukapi.intensity = self.grid
        ukapi.clock = self.clock.now
        self.metrics_port = free_port()
        env = operator_env(
            plane.kubeconfig,
            providers="ukci",
            ukci_base_url=ukapi.url,
            provider_cache_ttl_seconds=SCALE,  # one wall second
            default_region="GB",
            namespace=namespace,
            tick_seconds=TICK_SECONDS,
            time_scale=SCALE,
            time_origin=self.clock.origin.isoformat(),
            metrics_port=self.metrics_port,
            metrics_address="127.0.0.1",
        )
        self.operator = OperatorProcess(env, workdir / "operator.log")
        self.report = RunReport(plan)
        self.gaps = LoopGaps(self.metrics_port)
        self.created = 0
        self.manifests: dict[str, dict[str, Any]] = {}
        self.creator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="waves")
        self.waves: list[Future[None]] = []
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ the run

    def run(self) -> RunReport:
        started = time.monotonic()
        self.report.downtimes.append(Downtime(datetime.now(UTC), "start"))
        self.operator.start()
        try:
            with self.gaps:
                self._drive(started)
                self._wait_for_completion(started)
        finally:
            self.report.wall_seconds = time.monotonic() - started
            print(f"longest gap between two ticks: {self.gaps.longest:.2f} s of wall time")
            self.creator.shutdown(wait=True)
            self.operator.stop()
        return self.report

    def _schedule(self) -> list[tuple[float, str]]:
        plan = self.plan
        actions = [(i * plan.wave_every, "wave") for i in range(plan.waves)]
        actions += [(t, "revise") for t in _every(plan.revise_every, plan.kill_window[1])]
        actions += [(t, "kill") for t in self._kill_times()]
        if plan.outage is not None:
            actions.append((plan.outage[0], "outage"))
        return sorted(actions)

    def _kill_times(self) -> list[float]:
        """``kills`` moments in the kill window, at least ``min_gap`` apart, at random."""
        plan = self.plan
        first, last = plan.kill_window
        while True:
            times = sorted(self.rng.uniform(first, last) for _ in range(plan.kills))
            if all(b - a >= plan.min_gap for a, b in itertools.pairwise(times)):
                return times

    def _drive(self, started: float) -> None:
        actions = self._schedule()
        steps = ", ".join(f"{action}@{at:.1f}s" for at, action in actions)
        print(f"chaos plan (seed {self.plan.seed}): {steps}")
        for at, action in actions:
            while time.monotonic() - started < at:
                self._watch_recovery()
                time.sleep(0.1)
            if action == "wave":
                self._create_wave()
            elif action == "revise":
                self.grid.revise()
            elif action == "kill":
                self._kill_and_restart()
            else:
                self._outage()
        for wave in self.waves:
            wave.result(timeout=300)
        try:
            wait_for(
                lambda: (self._watch_recovery(), not self._recovering())[1],
                timeout=180,
                what="the operator to see every job again after the last fault",
                interval=0.1,
            )
        except AssertionError as error:
            raise AssertionError(f"{error}; {self._recovery_state()}") from None

    def _recovery_state(self) -> str:
        """What the recovery wait saw, for its failure message."""
        seen = jobs_seen(self.metrics_port, self.namespace)
        try:
            last = scrape_metrics(self.metrics_port, timeout=2).get(LAST_SUCCESS)
        except OSError:
            last = None
        since = f"{time.time() - last:.1f} s ago" if last else "never"
        tail = self.operator.log()[-3000:]
        return (
            f"operator alive: {self.operator.alive()}, starts: {self.operator.starts}, "
            f"jobs counted: {seen} of {self.created}, last tick {since}, longest gap "
            f"between ticks {self.gaps.longest:.1f} s; the operator's log ends:\n{tail}"
        )

    def _recovering(self) -> bool:
        return any(d.ended is None for d in self.report.downtimes)

    def _watch_recovery(self) -> None:
        """Close the open downtime once the operator counts every job created so far."""
        open_ = [d for d in self.report.downtimes if d.ended is None]
        if not open_ or not self.operator.alive() or self._creating():
            return
        if jobs_seen(self.metrics_port, self.namespace) == self.created:
            for downtime in open_:
                downtime.ended = datetime.now(UTC)

    def _creating(self) -> bool:
        return any(not wave.done() for wave in self.waves)

    def _create_wave(self) -> None:
        """Create the next wave in the background, so the kills keep their moments."""
        plan = self.plan
        size = plan.jobs // plan.waves
        first = len(self.waves) * size
        now = self.clock.now()
        items = [self._manifest(first + i, now) for i in range(size)]
        for item in items:
            self.manifests[item["metadata"]["name"]] = item
        listing = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})

        def create() -> None:
            self.plane.kubectl("create", "-n", self.namespace, "-f", "-", input=listing)
            with self.lock:
                self.created += size

        self.waves.append(self.creator.submit(create))

    def _manifest(self, index: int, now: datetime) -> dict[str, Any]:
        rng = self.rng
        policy = rng.choices(["Immediate", "Threshold", "Forecast"], weights=[1, 2, 2])[0]
        low, high = self.plan.latest_start_minutes
        latest_after = timedelta(minutes=rng.uniform(low, high))
        expected = rng.choice([600, 1800, 3600])
        schedule: dict[str, Any] = {"policy": policy, "expectedDurationSeconds": expected}
        if rng.random() < 0.3:
            deadline = now + latest_after + timedelta(seconds=expected)
            schedule["deadlineTime"] = f"{deadline:%Y-%m-%dT%H:%M:%SZ}"
        else:
            schedule["maxDelaySeconds"] = int(latest_after.total_seconds())
        if policy == "Threshold":
            schedule["maxIntensity"] = rng.choice([110, 160, 220])
        priority = rng.randint(0, 3)
        return caj(f"job-{index:04d}", schedule, priority=priority, jobTemplate=QUICK_JOB_TEMPLATE)

    def _kill_and_restart(self) -> None:
        last_tick = self.gaps.last_tick(self.metrics_port)
        killed = datetime.now(UTC)
        self.operator.kill()
        acted = datetime.fromtimestamp(last_tick, UTC) if last_tick else None
        self.report.downtimes.append(Downtime(killed, "SIGKILL", acted=acted))
        self.operator.start()
        self.report.restarts += 1

    def _outage(self) -> None:
        """Stop the API server for the planned time, start it again, and measure how long a
        job created right after takes to be released."""
        assert self.plan.outage is not None
        for wave in self.waves:  # kubectl create would fail against a stopped API server
            wave.result(timeout=300)
        down = datetime.now(UTC)
        self.report.downtimes.append(Downtime(down, "API server stopped"))
        self.plane.stop_apiserver()
        stopped = time.monotonic()
        while time.monotonic() - stopped < self.plan.outage[1]:
            time.sleep(0.1)  # the outage itself: nothing to wait for
        self.plane.start_apiserver()
        ready = time.monotonic()
        self.report.api_ready_at = datetime.now(UTC)
        probe = caj("after-outage", {"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE)
        self.plane.apply(probe, namespace=self.namespace)
        with self.lock:
            self.created += 1
        self.manifests["after-outage"] = probe

        def released() -> bool:
            obj = self.plane.kubectl_json("get", "caj", "after-outage", "-n", self.namespace)
            return bool(obj.get("status", {}).get("releaseTime"))

        wait_for(released, timeout=120, what="a job created after the outage to be released")
        self.report.reconnect_seconds = time.monotonic() - ready
        self.report.downtimes[-1].ended = datetime.now(UTC)

    def _wait_for_completion(self, started: float) -> None:
        def done() -> bool:
            items = self.plane.kubectl_json("get", "caj", "-n", self.namespace)["items"]
            return len(items) == self.created and all(
                o.get("status", {}).get("state") == "Succeeded" for o in items
            )

        wait_for(done, timeout=240, what="every job Succeeded", interval=2)
        self.report.completed_seconds = time.monotonic() - started

    # ------------------------------------------------------------------ the checks

    def check(self) -> None:
        """Exactly one complete Job per job, statuses that agree, releases on time."""
        plane, namespace = self.plane, self.namespace
        parents = plane.kubectl_json("get", "caj", "-n", namespace)["items"]
        children = plane.kubectl_json("get", "jobs", "-n", namespace, "-l", JOB_UID)["items"]
        assert len(parents) == self.created == len(self.manifests)
        by_uid: dict[str, list[dict[str, Any]]] = {}
        for child in children:
            by_uid.setdefault(child["metadata"]["labels"][JOB_UID], []).append(child)
        doubled = {uid: [c["metadata"]["name"] for c in cs] for uid, cs in by_uid.items()
                   if len(cs) > 1}  # fmt: skip
        assert not doubled, f"jobs with more than one Job: {doubled}"
        uids = {p["metadata"]["uid"] for p in parents}
        assert set(by_uid) == uids, "every job has a Job, and every Job a job"
        for parent in parents:
            self._check_one(parent, by_uid[parent["metadata"]["uid"]][0])

    def _check_one(self, parent: dict[str, Any], child: dict[str, Any]) -> None:
        name, status = parent["metadata"]["name"], parent["status"]
        assert status.get("state") == "Succeeded", (name, status.get("state"))
        assert status.get("jobName") == child["metadata"]["name"], name
        complete = condition(child, "Complete")
        assert complete is not None, (name, child["status"])
        assert complete["status"] == "True", (name, child["status"])
        for type_ in ("Released", "Complete"):
            assert condition(parent, type_)["status"] == "True", (name, type_)  # type: ignore[index]
        released = when(status["releaseTime"])
        latest = when(status["latestStartTime"])
        self.report.reasons[condition(parent, "Released")["reason"]] += 1  # type: ignore[index]
        late = (released - latest).total_seconds()
        if late > 0:
            self.report.late.append(late)
        allowed = self.allowed_lateness(latest)
        spare = (latest + allowed - released).total_seconds()
        if self.report.least_spare is None or spare < self.report.least_spare[0]:
            self.report.least_spare = (spare, name)
        assert released <= latest + allowed, (
            f"{name} released {late:.0f} s after its latest start {latest:%H:%M:%S} (operator "
            f"time), more than the {allowed.total_seconds():.0f} s a tick and the downtime "
            "around it allow"
        )
        created = self.clock.at(when(parent["metadata"]["creationTimestamp"]))
        assert released >= created - timedelta(seconds=SCALE), name  # 1 s stamp resolution

    def allowed_lateness(self, latest: datetime) -> timedelta:
        """One tick, plus, when the latest start fell in (or a tick before) a downtime, the
        rest of that downtime, plus a tick for the first decision after it. A SIGKILL's
        downtime starts at the killed process's last completed tick. Downtimes and the
        tick (the longest gap between two ticks of one operator process, at least the
        configured interval) are measured on the wall clock and converted to operator time."""
        tick = timedelta(seconds=max(TICK_SECONDS, self.gaps.longest) * SCALE)
        slack = timedelta(seconds=2 * SCALE)  # polling of the recovery and of the metrics
        allowed = tick + slack
        for downtime in self.report.downtimes:
            assert downtime.ended is not None, "the operator came back from every fault"
            began = self.clock.at(downtime.acted or downtime.began)  # acted: before the kill
            ended = self.clock.at(downtime.ended)
            if began - tick <= latest <= ended:
                allowed = max(allowed, ended - latest + 2 * tick + slack)
        return allowed


def _every(step: float, until: float) -> list[float]:
    return [step * i for i in range(1, int(until // step) + 1)]


@pytest.fixture
def ukapi() -> Iterator[UkApiServer]:
    with serve_uk_api(lambda start: 200.0) as server:
        yield server


def test_sigkill_chaos(crds: Any, namespace: str, ukapi: UkApiServer, tmp_path: Path) -> None:
    chaos = ChaosRun(crds, namespace, tmp_path, RunPlan(), ukapi)
    report = chaos.run()
    try:
        chaos.check()
    finally:
        print("\n".join(report.lines()))
    log = chaos.operator.log()
    assert report.restarts >= 10
    assert log.count("===== start") == report.restarts + 1
    assert {"Immediate", "ThresholdMet", "LowCarbonWindow"} <= set(report.reasons), report.reasons


def test_api_server_restart(crds: Any, namespace: str, ukapi: UkApiServer, tmp_path: Path) -> None:
    plan = RunPlan(
        jobs=200, waves=4, wave_every=20.0, kills=0, kill_window=(0.0, 120.0),
        outage=(30.0, 15.0), latest_start_minutes=(3.0, 40.0),
    )  # fmt: skip
    chaos = ChaosRun(crds, namespace, tmp_path, plan, ukapi)
    report = chaos.run()
    try:
        chaos.check()
    finally:
        print("\n".join(report.lines()))
    log = chaos.operator.log()
    assert chaos.operator.starts == 1, "the operator was never restarted"
    assert "the refresh loop died" not in log
    assert report.reconnect_seconds is not None
    # Waves were created before the outage and after it.
    assert report.api_ready_at is not None
    created = [
        when(o["metadata"]["creationTimestamp"])
        for o in crds.kubectl_json("get", "caj", "-n", namespace)["items"]
        if o["metadata"]["name"] != "after-outage"
    ]
    outage = next(d for d in report.downtimes if d.cause == "API server stopped")
    assert any(c < outage.began for c in created)
    assert any(c >= report.api_ready_at - timedelta(seconds=1) for c in created)
