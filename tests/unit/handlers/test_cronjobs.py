"""CarbonAwareCronJobs against a fake API server that keeps the runs: a run per period when
its window opens, concurrency policies, history limits, missed periods and restarts. The same
on a real API server with a scaled clock: tests/integration/test_cronjobs.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from carbonaware.api import labels
from carbonaware.api.conditions import format_time
from carbonaware.config import OperatorSettings
from carbonaware.errors import KubernetesError
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.cronjobs import cronjob_event, run_cronjobs
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.k8s import CONFLICT
from carbonaware.metrics import Metrics

HOUR = timedelta(hours=1)
CREATED = datetime(2026, 12, 7, 0, 5, tzinfo=UTC)
POD = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
RUN_SPEC = {
    "schedule": {"policy": "Forecast", "expectedDurationSeconds": 1800},
    "jobTemplate": {"spec": {"template": {"spec": POD}}},
}


class FakeKube:
    """Runs (CarbonAwareJobs) by name, the cron job's status, Events and deletions."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.events: list[str] = []
        self.deleted: list[str] = []
        self.created = 0

    async def list_objects(
        self, plural: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        assert (plural, label_selector) == ("carbonawarejobs", labels.CRONJOB)
        return [copy.deepcopy(run) for run in self.runs.values()]

    async def create_object(self, plural: str, namespace: str, body: dict[str, Any]) -> Any:
        name = body["metadata"]["name"]
        if name in self.runs:
            raise KubernetesError("already exists", status=CONFLICT)
        self.created += 1
        stored = copy.deepcopy(body)
        stored["metadata"].update(namespace=namespace, uid=f"uid-{name}")
        self.runs[name] = stored
        return copy.deepcopy(stored)

    async def get_object(self, plural: str, namespace: str, name: str) -> Any:
        return copy.deepcopy(self.runs.get(name))

    async def delete_object(self, plural: str, namespace: str, name: str, uid: str) -> None:
        self.deleted.append(name)
        self.runs.pop(name, None)

    async def patch_status(
        self, plural: str, namespace: str, name: str, doc: dict[str, Any]
    ) -> dict[str, Any]:
        assert plural == "carbonawarecronjobs"
        self.status = {**self.status, **doc}
        return {"status": copy.deepcopy(self.status)}

    async def create_event(self, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        self.events.append(f"{kwargs['reason']}: {kwargs['message']}")
        return {}

    def finish(self, name: str, state: str, at: datetime) -> None:
        self.runs[name]["status"] = {"state": state, "completionTime": format_time(at)}


class Cron:
    """A cron job fed to the operator's watch handler, ticked at chosen operator times."""

    def __init__(self, **spec: Any) -> None:
        self.kube = FakeKube()
        metrics = Metrics()
        self.now = CREATED
        self.ctx = OperatorContext(
            settings=OperatorSettings(tick_seconds=60),
            kube=cast(Any, self.kube),
            metrics=metrics,
            provider=cast(Any, None),
            intensity=RegionIntensity(cast(Any, None), metrics),
            clock=lambda: self.now,
        )
        self.body: dict[str, Any] = {
            "metadata": {
                "name": "nightly",
                "namespace": "ml",
                "uid": "cron-uid",
                "generation": 1,
                "creationTimestamp": format_time(CREATED),
            },
            "spec": {"schedule": "0 */6 * * *", "jobTemplate": {"spec": RUN_SPEC}, **spec},
        }

    async def seen(self, body: dict[str, Any] | None = None) -> None:
        memo = SimpleNamespace(ctx=self.ctx)
        raw = cast(Any, {"type": "MODIFIED"})
        await cronjob_event(event=raw, body=cast(Any, body or self.body), memo=cast(Any, memo))

    async def tick(self, at: datetime) -> list[str]:
        """Tick at operator time ``at``; the Events it posted."""
        self.now = at
        before = len(self.kube.events)
        await self.seen({**self.body, "status": self.kube.status})
        await run_cronjobs(self.ctx, at)
        await asyncio.sleep(0)  # Events are posted in the background
        await asyncio.sleep(0)
        return self.kube.events[before:]

    def count(self, outcome: str) -> float:
        value = self.ctx.metrics.registry.get_sample_value(
            "carbonaware_cronjob_periods_total", {"namespace": "ml", "outcome": outcome}
        )
        return value or 0.0


def run_name(nominal: datetime) -> str:
    return f"nightly-{int(nominal.timestamp()) // 60}"


SIX = CREATED.replace(minute=0) + 6 * HOUR


async def test_a_run_per_period_created_when_its_window_opens() -> None:
    cron = Cron(windowBeforeSeconds=7200, windowAfterSeconds=3600)
    assert await cron.tick(SIX - 2 * HOUR - timedelta(minutes=1)) == []
    assert cron.kube.runs == {}
    assert cron.kube.status["nextScheduleTime"] == format_time(SIX)
    assert cron.kube.status["nextWindowStart"] == format_time(SIX - 2 * HOUR)
    posted = await cron.tick(SIX - 2 * HOUR)
    run = cron.kube.runs[run_name(SIX)]
    # Its latest start is an hour after the nominal time: the deadline adds the 30 min run.
    assert run["spec"]["schedule"]["deadlineTime"] == format_time(
        SIX + HOUR + 30 * timedelta(minutes=1)
    )
    assert run["metadata"]["labels"][labels.CRONJOB] == "nightly"
    assert run["metadata"]["annotations"][labels.NOMINAL_TIME] == format_time(SIX)
    (owner,) = run["metadata"]["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == ("cron-uid", True)
    assert posted == [
        f"RunCreated: created {run_name(SIX)} for the period of {format_time(SIX)}: it may start "
        f"from {format_time(SIX - 2 * HOUR)} to {format_time(SIX + HOUR)}"
    ]
    status = cron.kube.status
    assert status["lastScheduleTime"] == format_time(SIX)
    assert status["nextScheduleTime"] == format_time(SIX + 6 * HOUR)
    assert [a["name"] for a in status["active"]] == [run_name(SIX)]
    # Later ticks in the same period create nothing more.
    assert await cron.tick(SIX) == []
    assert cron.kube.created == 1
    assert cron.count("created") == 1


async def test_forbid_waits_for_the_active_run_and_then_runs_the_period() -> None:
    cron = Cron(concurrencyPolicy="Forbid", windowBeforeSeconds=3600)
    await cron.tick(SIX - HOUR)
    posted = await cron.tick(SIX + 5 * HOUR)  # the 12:00 window is open; 06:00's run is active
    assert [event.split(":")[0] for event in posted] == ["JobAlreadyActive"]
    assert await cron.tick(SIX + 5 * HOUR + timedelta(minutes=5)) == []  # announced once
    assert run_name(SIX + 6 * HOUR) not in cron.kube.runs
    assert cron.kube.status["nextScheduleTime"] == format_time(SIX + 6 * HOUR)
    cron.kube.finish(run_name(SIX), "Succeeded", SIX + 5 * HOUR)
    await cron.tick(SIX + 5 * HOUR + timedelta(minutes=10))
    assert run_name(SIX + 6 * HOUR) in cron.kube.runs
    assert cron.kube.status["lastSuccessfulTime"] == format_time(SIX + 5 * HOUR)
    assert cron.count("forbidden") == 1


async def test_replace_deletes_the_active_run_for_the_new_period() -> None:
    cron = Cron(concurrencyPolicy="Replace")
    await cron.tick(SIX)
    posted = await cron.tick(SIX + 6 * HOUR)
    assert cron.kube.deleted == [run_name(SIX)]
    assert set(cron.kube.runs) == {run_name(SIX + 6 * HOUR)}
    assert [event.split(":")[0] for event in posted] == ["RunReplaced", "RunCreated"]
    assert [a["name"] for a in cron.kube.status["active"]] == [run_name(SIX + 6 * HOUR)]


async def test_allow_keeps_both_runs() -> None:
    cron = Cron()
    await cron.tick(SIX)
    await cron.tick(SIX + 6 * HOUR)
    assert set(cron.kube.runs) == {run_name(SIX), run_name(SIX + 6 * HOUR)}
    assert len(cron.kube.status["active"]) == 2


async def test_history_limits_keep_the_latest_finished_runs() -> None:
    cron = Cron(successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    nominals = [SIX + i * 6 * HOUR for i in range(4)]
    for nominal, state in zip(
        nominals, ["Succeeded", "Succeeded", "Failed", "Succeeded"], strict=True
    ):
        await cron.tick(nominal)
        cron.kube.finish(run_name(nominal), state, nominal + HOUR)
    await cron.tick(nominals[-1] + 2 * HOUR)
    assert set(cron.kube.runs) == {run_name(nominals[-1])}
    assert sorted(cron.kube.deleted) == sorted(run_name(n) for n in nominals[:3])
    assert cron.kube.status["active"] == []


async def test_after_downtime_the_latest_period_runs_and_the_missed_are_reported() -> None:
    cron = Cron()
    await cron.tick(SIX)
    posted = await cron.tick(SIX + 24 * HOUR + timedelta(minutes=1))
    assert posted[0].startswith(
        f"MissedSchedule: 3 period(s) before {format_time(SIX + 24 * HOUR)}"
    )
    assert set(cron.kube.runs) == {run_name(SIX), run_name(SIX + 24 * HOUR)}
    assert cron.count("missed") == 3


async def test_a_period_past_its_starting_deadline_is_missed_not_run() -> None:
    cron = Cron(startingDeadlineSeconds=600, windowBeforeSeconds=3600)
    posted = await cron.tick(SIX - HOUR + timedelta(minutes=11))
    assert cron.kube.runs == {}
    assert posted == [
        f"MissedSchedule: the period of {format_time(SIX)} was missed: its window opened at "
        f"{format_time(SIX - HOUR)}, more than startingDeadlineSeconds ago"
    ]
    assert cron.kube.status["lastScheduleTime"] == format_time(SIX)
    assert cron.kube.status["nextScheduleTime"] == format_time(SIX + 6 * HOUR)


async def test_a_run_created_before_a_restart_is_not_created_twice() -> None:
    cron = Cron()
    await cron.tick(SIX)
    cron.kube.status = {}  # the status write was lost: the operator died in between
    cron.ctx.cronjobs.clear()
    await cron.tick(SIX + timedelta(minutes=1))
    assert cron.kube.created == 1
    assert cron.kube.status["lastScheduleTime"] == format_time(SIX)


async def test_a_late_watch_event_does_not_take_back_a_recorded_period() -> None:
    cron = Cron()
    await cron.tick(SIX)
    await cron.seen({**cron.body, "status": {}})  # queued before our status write
    entry = cron.ctx.cronjobs[("ml", "nightly")]
    assert entry.body["status"]["lastScheduleTime"] == format_time(SIX)


async def test_suspended_creates_nothing_and_shows_no_next_time() -> None:
    cron = Cron(suspend=True)
    await cron.tick(SIX + HOUR)
    assert cron.kube.runs == {}
    assert cron.kube.status["nextScheduleTime"] is None


async def test_an_invalid_spec_is_reported_once_and_creates_nothing() -> None:
    cron = Cron()
    cron.body["spec"]["schedule"] = "every night"
    await cron.tick(SIX)
    await cron.tick(SIX + HOUR)
    assert cron.kube.runs == {}
    (event,) = cron.kube.events
    assert event.startswith("InvalidSpec: spec.schedule")
    assert "five fields" in event


@pytest.mark.parametrize("failure", [RuntimeError("bug"), KubernetesError("busy", status=503)])
async def test_a_failing_cron_job_never_stops_the_others(failure: Exception) -> None:
    cron = Cron()
    other = copy.deepcopy(cron.body)
    other["metadata"].update(name="aaa-broken", uid="other-uid")
    await cron.seen(other)
    original = cron.kube.create_object

    async def create(plural: str, namespace: str, body: dict[str, Any]) -> Any:
        if body["metadata"]["name"].startswith("aaa-broken"):
            raise failure
        return await original(plural, namespace, body)

    cron.kube.create_object = create  # type: ignore[method-assign]
    await cron.tick(SIX)
    assert run_name(SIX) in cron.kube.runs
    broken = cron.ctx.cronjobs[("ml", "aaa-broken")]
    # An unexpected error stops that cron job until its spec changes; an API error is retried.
    assert (broken.spec is None) is isinstance(failure, RuntimeError)


async def test_missed_periods_are_reported_once_when_the_latest_runs_after_a_forbid_wait() -> None:
    cron = Cron(concurrencyPolicy="Forbid")
    await cron.tick(SIX)
    later = SIX + 24 * HOUR + timedelta(minutes=1)
    assert [e.split(":")[0] for e in await cron.tick(later)] == ["JobAlreadyActive"]
    assert await cron.tick(later + timedelta(minutes=1)) == []
    cron.kube.finish(run_name(SIX), "Succeeded", later)
    posted = await cron.tick(later + timedelta(minutes=2))
    assert [e.split(":")[0] for e in posted] == ["MissedSchedule", "RunCreated"]
    assert cron.count("missed") == 3


async def test_a_run_being_deleted_is_neither_active_nor_deleted_again() -> None:
    cron = Cron(concurrencyPolicy="Forbid", successfulJobsHistoryLimit=0)
    await cron.tick(SIX)
    cron.kube.runs[run_name(SIX)]["metadata"]["deletionTimestamp"] = format_time(SIX)
    await cron.tick(SIX + 6 * HOUR)
    assert run_name(SIX + 6 * HOUR) in cron.kube.runs  # not waiting for the one going away
    assert cron.kube.deleted == []
