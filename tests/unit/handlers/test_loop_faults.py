"""The refresh loop under faults: a provider slower than a tick never delays decisions, nor
does a reconcile pass that hangs; held work another replica released meanwhile is dropped, not
released again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.intensity import IntensityPoint
from carbonaware.config import OperatorSettings
from carbonaware.handlers import loop
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.loop import (
    decide_all,
    latest_snapshots,
    resync_held,
    run_forever,
    tick_done,
)
from carbonaware.handlers.reconcile import reconcile_beside_ticks
from carbonaware.handlers.state import ChildKind, HeldWork, ReleasedWork, WorkKind
from carbonaware.metrics import Metrics

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


class GatedProvider:
    """Answers at once while ``gate`` is set, else waits for it (a hanging upstream)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.value = 100.0
        self.calls = 0

    @property
    def name(self) -> str:
        return "gated"

    async def current(self, region: str) -> IntensityPoint:
        self.calls += 1
        await self.gate.wait()
        return IntensityPoint(NOW, NOW + HALF_HOUR, self.value, "gated", is_forecast=False)

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        await self.gate.wait()
        return []

    async def aclose(self) -> None:
        return None


def context(provider: Any, kube: Any = None, tick: float = 0.2, **settings: Any) -> OperatorContext:
    metrics = Metrics()
    return OperatorContext(
        settings=OperatorSettings(tick_seconds=tick, **settings),
        kube=cast(Any, kube),
        metrics=metrics,
        provider=provider,
        intensity=RegionIntensity(provider, metrics),
    )


async def test_a_hanging_provider_delays_a_tick_by_half_a_tick_at_most() -> None:
    provider = GatedProvider()
    ctx = context(provider)
    first = await latest_snapshots(ctx, {"GB"}, NOW)
    assert first["GB"].current is not None
    assert first["GB"].current.intensity == 100

    provider.gate.clear()
    provider.value = 300.0
    started = time.monotonic()
    second = await latest_snapshots(ctx, {"GB"}, NOW + timedelta(minutes=1))
    waited = time.monotonic() - started
    assert second["GB"] is first["GB"], "the last snapshot serves while the refresh hangs"
    assert 0.05 < waited < 1.0
    third = await latest_snapshots(ctx, {"GB"}, NOW + timedelta(minutes=2))
    assert third["GB"] is first["GB"]
    assert provider.calls == 2, "no second refresh is started beside the hanging one"

    provider.gate.set()
    await asyncio.sleep(0)
    fourth = await latest_snapshots(ctx, {"GB"}, NOW + timedelta(minutes=3))
    assert fourth["GB"].current is not None
    assert fourth["GB"].current.intensity == 300
    assert ctx.refreshing is None


def test_a_late_tick_widens_the_horizon_and_the_metric_says_so() -> None:
    ctx = context(GatedProvider(), tick=1.0)
    gauge = ctx.metrics.registry.get_sample_value
    tick_done(ctx, NOW, None)
    assert gauge("carbonaware_decision_horizon_seconds") == 2.0
    tick_done(ctx, NOW + timedelta(seconds=1), NOW)
    assert gauge("carbonaware_decision_horizon_seconds") == 2.0
    tick_done(ctx, NOW + timedelta(seconds=5), NOW + timedelta(seconds=1))  # 4 s late
    assert gauge("carbonaware_decision_horizon_seconds") == 6.0
    assert ctx.horizon() == timedelta(seconds=6)


async def test_a_gap_counts_from_a_decision_to_the_end_of_the_next_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job the previous tick held is released by this one, at the latest when this tick's
    writes end: the horizon must cover the tick's own duration, not only the time between
    two decisions (0.3 s here, where the gap is 0.6 s)."""
    ctx = context(GatedProvider(), tick=0.05)
    ctx.synced = True

    ticks = 0
    fifth = asyncio.Event()

    async def slow_tick(ctx_: OperatorContext) -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 5:  # four ticks completed: three gaps
            fifth.set()
        await asyncio.sleep(0.3)

    async def no_cronjobs(ctx_: OperatorContext, now: datetime) -> None:
        return None

    monkeypatch.setattr(loop, "refresh_once", slow_tick)
    monkeypatch.setattr(loop, "run_cronjobs", no_cronjobs)
    ctx.settings.prometheus_url = "http://127.0.0.1:9"  # no usage sampling from a kube

    async def active() -> bool:
        return True

    task = asyncio.create_task(run_forever(ctx, active))
    try:
        await asyncio.wait_for(fifth.wait(), timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert min(ctx.tick_gaps) >= timedelta(seconds=0.55), list(ctx.tick_gaps)
    assert ctx.horizon() >= timedelta(seconds=0.85)


class FakeKube:
    def __init__(self, objects: dict[str, dict[str, Any] | None]) -> None:
        self.objects = objects
        self.reads: list[str] = []

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return self.objects.get(name)


def held(name: str, uid: str) -> HeldWork:
    return HeldWork(
        kind=WorkKind.CARBON_AWARE_JOB,
        namespace="ns",
        name=name,
        uid=uid,
        region="GB",
        policy=SchedulePolicy.THRESHOLD,
        created=NOW,
        latest_start=NOW + timedelta(hours=1),
        expected_duration_seconds=3600,
        max_intensity=100.0,
        max_index=None,
        priority=0,
        target=None,
        planned_start=None,
        held_reason="WaitingForThreshold",
        body={"metadata": {"name": name, "uid": uid}},
    )


async def test_resync_drops_what_was_released_or_deleted_meanwhile() -> None:
    def body(name: str, uid: str, status: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": name, "uid": uid}, "status": status}

    kube = FakeKube(
        {
            "released": body("released", "u1", {"releaseTime": "2024-05-01T12:01:00Z"}),
            "replaced": body("replaced", "other-uid", {}),
            "waiting": body("waiting", "u4", {"state": "Held", "plannedStartTime": "x"}),
        }
    )
    ctx = context(GatedProvider(), kube)
    for name, uid in (("released", "u1"), ("replaced", "u2"), ("deleted", "u3"),
                      ("waiting", "u4")):  # fmt: skip
        ctx.registry.hold(held(name, uid))

    await resync_held(ctx)

    assert sorted(kube.reads) == ["deleted", "released", "replaced", "waiting"]
    assert [work.name for work in ctx.registry.held()] == ["waiting"]
    assert ctx.registry.held()[0].body["status"]["plannedStartTime"] == "x"
    assert ctx.registry.was_released("u1")
    assert not ctx.registry.was_released("u3")


async def test_a_job_being_planned_or_released_is_not_decided_by_the_loop_meanwhile() -> None:
    """decide_placed sets the place on the job itself: deciding a job whose release is in
    flight (a watch handler holds its lock) could change the place that release records."""
    ctx = context(provider=None)
    busy, free = held("busy", "u1"), held("free", "u2")
    async with ctx.registry.lock(busy.key):
        decisions, broken = decide_all(ctx, [busy, free], {}, NOW)
    assert set(decisions) == {free.key}
    assert broken == []
    decisions, _ = decide_all(ctx, [busy, free], {}, NOW)
    assert set(decisions) == {busy.key, free.key}


class HangingJobList:
    """An API server that takes the call to list Jobs and never answers it."""

    def __init__(self) -> None:
        self.listing = asyncio.Event()

    async def list_jobs(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        self.listing.set()
        await asyncio.Event().wait()
        return []


async def test_a_reconcile_pass_that_hangs_never_stops_the_ticks() -> None:
    """After a restart a pass can take minutes (it measures every run that ended meanwhile);
    the ticks, which release held jobs, go on beside it."""
    kube = HangingJobList()
    ctx = context(GatedProvider(), kube, tick=0.05, reconcile_seconds=0.1)
    ctx.synced = True
    ctx.registry.track(
        ReleasedWork(WorkKind.CARBON_AWARE_JOB, "ns", "done", "u1", ChildKind.JOB, "done-x")
    )

    async def active() -> bool:
        return True

    loop = asyncio.create_task(run_forever(ctx, active))
    await asyncio.wait_for(kube.listing.wait(), timeout=10)
    hung_at = time.monotonic()
    await asyncio.sleep(0.5)
    reconciling = [t for t in asyncio.all_tasks() if t.get_name() == "reconcile"]
    assert ctx.last_tick_completed > hung_at + 0.2, "no tick completed while the pass hung"
    assert len(reconciling) == 1, "one pass at a time"
    assert not reconciling[0].done()
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    await asyncio.sleep(0)
    assert reconciling[0].cancelled(), "the pass ends with the loop"


class SlowJobList:
    """An API server that answers the call to list Jobs after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def list_jobs(self, namespace: str | None, selector: str) -> list[dict[str, Any]]:
        await asyncio.sleep(self.seconds)
        return []


async def test_a_reconcile_pass_longer_than_its_interval_is_measured_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = context(GatedProvider(), SlowJobList(0.3), reconcile_seconds=0.1)
    ctx.registry.track(
        ReleasedWork(WorkKind.CARBON_AWARE_JOB, "ns", "gone", "u1", ChildKind.JOB, "gone-x")
    )
    samples = ctx.metrics.registry.get_sample_value
    with caplog.at_level(logging.WARNING):
        await reconcile_beside_ticks(ctx)
    assert samples("carbonaware_reconcile_duration_seconds_count") == 1
    assert samples("carbonaware_reconcile_duration_seconds_sum") >= 0.3
    assert re.search(r"1 released job\(s\) .* took \d+\.\d s, longer than the 0\.1 s", caplog.text)
