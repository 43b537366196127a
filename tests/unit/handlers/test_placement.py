"""Choosing where: ServerTargets by selector, regions by spec.placement, re-chosen at every
decision; targets that are down, busy or in another namespace are not chosen."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from carbonaware.api.carbonawarejob import PlacementRegion, SchedulePolicy
from carbonaware.api.conditions import Reason
from carbonaware.api.selector import LabelSelector
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.config import OperatorSettings
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionIntensity, RegionSnapshot
from carbonaware.handlers.loop import refresh_once
from carbonaware.handlers.placement import candidates, decide_placed, regions_wanted
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.metrics import Metrics
from carbonaware.scheduling.view import ForecastView

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def context() -> OperatorContext:
    metrics = Metrics()
    return OperatorContext(
        settings=OperatorSettings(tick_seconds=60, default_region="GB"),
        kube=cast(Any, None),
        metrics=metrics,
        provider=cast(Any, None),
        intensity=RegionIntensity(cast(Any, None), metrics),
        clock=lambda: NOW,
    )


def add_target(
    ctx: OperatorContext,
    name: str,
    *,
    region: str,
    labels: dict[str, str],
    namespace: str = "ns",
    reachable: bool | None = None,
    hardware: dict[str, Any] | None = None,
    max_concurrent: int = 1,
) -> None:
    spec = ServerTargetSpec.model_validate(
        {
            "host": f"{name}.example", "user": "batch", "hostKeyPolicy": "AcceptAny",
            "privateKeySecretRef": {"name": "key"}, "region": region,
            "maxConcurrent": max_concurrent, **({"hardware": hardware} if hardware else {}),
        }
    )  # fmt: skip
    state = ctx.registry.set_target((namespace, name), max_concurrent=max_concurrent, region=region)
    state.spec = spec
    status: dict[str, Any] = {}
    if reachable is not None:
        status["conditions"] = [{"type": "Reachable", "status": str(reachable)}]
    state.body = {"metadata": {"name": name, "namespace": namespace, "labels": labels},
                  "status": status}  # fmt: skip


def snapshot(region: str, values: list[float]) -> RegionSnapshot:
    view = ForecastView(now=NOW, origin=NOW, step=HALF_HOUR, values=values)
    return RegionSnapshot(region, NOW, None, (), view, None)


def held(
    *,
    selector: LabelSelector | None = None,
    regions: tuple[PlacementRegion, ...] = (),
    policy: SchedulePolicy = SchedulePolicy.FORECAST,
    latest: timedelta = timedelta(hours=3),
) -> HeldWork:
    spec: dict[str, Any] = {"ssh": {"targetSelector": {}}} if selector is not None else {}
    return HeldWork(
        kind=WorkKind.CARBON_AWARE_JOB, namespace="ns", name="train", uid="u1", region="GB",
        policy=policy, created=NOW, latest_start=NOW + latest, expected_duration_seconds=3600,
        max_intensity=None, max_index=None, priority=0, target=None, planned_start=None,
        held_reason=None, body={"metadata": {"name": "train", "namespace": "ns"}, "spec": spec},
        selector=selector, regions=regions,
    )  # fmt: skip


POOL = LabelSelector.model_validate({"matchLabels": {"pool": "batch"}})
FLAT_DIRTY = [400.0] * 12
FLAT_CLEAN = [100.0] * 12


def test_the_selector_picks_matching_reachable_targets_of_the_namespace_only() -> None:
    ctx = context()
    add_target(ctx, "a", region="DE", labels={"pool": "batch"})
    add_target(ctx, "b", region="PJM", labels={"pool": "batch"}, reachable=True)
    add_target(ctx, "down", region="PJM", labels={"pool": "batch"}, reachable=False)
    add_target(ctx, "web", region="PJM", labels={"pool": "web"})
    add_target(ctx, "other-ns", region="PJM", labels={"pool": "batch"}, namespace="other")
    work = held(selector=POOL)
    assert [c.name for c in candidates(ctx, work)] == ["a", "b"]
    assert regions_wanted(ctx, work) == {"DE", "PJM"}


def test_the_job_is_planned_on_the_cleaner_target_with_the_runner_up_recorded() -> None:
    ctx = context()
    add_target(ctx, "de", region="DE", labels={"pool": "batch"})
    add_target(ctx, "pjm", region="PJM", labels={"pool": "batch"})
    work = held(selector=POOL, policy=SchedulePolicy.IMMEDIATE)
    snaps = {"DE": snapshot("DE", FLAT_DIRTY), "PJM": snapshot("PJM", FLAT_CLEAN)}
    decision = decide_placed(ctx, work, snaps, NOW)
    assert decision.release
    assert work.target == ("ns", "pjm")
    assert work.region == "PJM"
    assert work.placement is not None
    assert work.placement["target"] == "pjm"
    assert work.placement["expectedIntensity"] == 100.0
    assert work.placement["candidates"] == 2
    assert work.placement["runnerUp"]["target"] == "de"
    assert work.placement["runnerUp"]["expectedIntensity"] == 400.0


def test_when_the_cleaner_target_is_busy_a_due_job_takes_the_free_one() -> None:
    ctx = context()
    add_target(ctx, "de", region="DE", labels={"pool": "batch"})
    add_target(ctx, "pjm", region="PJM", labels={"pool": "batch"})
    ctx.registry.mark_running(("ns", "pjm"), ("CarbonAwareJob", "ns", "other"))
    work = held(selector=POOL, policy=SchedulePolicy.IMMEDIATE)
    snaps = {"DE": snapshot("DE", FLAT_DIRTY), "PJM": snapshot("PJM", FLAT_CLEAN)}
    assert decide_placed(ctx, work, snaps, NOW).release
    assert work.target == ("ns", "de")
    assert work.placement is not None
    assert work.placement["runnerUp"]["target"] == "pjm"


def test_hardware_counts_an_efficient_server_on_a_dirtier_grid_can_win() -> None:
    ctx = context()
    lean = {"vcpus": 32, "minWatts": 50, "maxWatts": 200, "embodiedKgCO2e": 1000}
    hungry = {"vcpus": 4, "minWatts": 200, "maxWatts": 800, "embodiedKgCO2e": 4000}
    add_target(ctx, "lean", region="DE", labels={"pool": "batch"}, hardware=lean)
    add_target(ctx, "hungry", region="PJM", labels={"pool": "batch"}, hardware=hungry)
    work = held(selector=POOL, policy=SchedulePolicy.IMMEDIATE)
    snaps = {"DE": snapshot("DE", [300.0] * 12), "PJM": snapshot("PJM", [200.0] * 12)}
    decide_placed(ctx, work, snaps, NOW)
    assert work.target == ("ns", "lean")
    assert work.placement is not None
    assert work.placement["expectedGrams"] < work.placement["runnerUp"]["expectedGrams"]


def test_without_a_reachable_target_the_job_waits_then_is_due_to_fail() -> None:
    ctx = context()
    add_target(ctx, "down", region="DE", labels={"pool": "batch"}, reachable=False)
    work = held(selector=POOL)
    waiting = decide_placed(ctx, work, {"GB": snapshot("GB", FLAT_CLEAN)}, NOW)
    assert not waiting.release
    assert waiting.reason is Reason.NO_TARGET_AVAILABLE
    assert "targetSelector" in waiting.message
    assert work.target is None
    assert work.placement is None
    due = held(selector=POOL, latest=timedelta(seconds=30))
    decision = decide_placed(ctx, due, {"GB": snapshot("GB", FLAT_CLEAN)}, NOW)
    assert decision.release
    assert decision.reason is Reason.NO_TARGET_AVAILABLE


def test_a_job_with_placement_goes_to_the_cleanest_region_with_its_node_selector() -> None:
    ctx = context()
    regions = (
        PlacementRegion(region="DE"),
        PlacementRegion.model_validate({"region": "PJM", "nodeSelector": {"pool": "us-east"}}),
    )
    work = held(regions=regions, policy=SchedulePolicy.IMMEDIATE)
    snaps = {"DE": snapshot("DE", FLAT_CLEAN), "PJM": snapshot("PJM", FLAT_DIRTY)}
    decide_placed(ctx, work, snaps, NOW)
    assert (work.region, work.node_selector) == ("DE", {"topology.kubernetes.io/region": "DE"})
    snaps = {"DE": snapshot("DE", FLAT_DIRTY), "PJM": snapshot("PJM", FLAT_CLEAN)}
    decide_placed(ctx, work, snaps, NOW)
    assert (work.region, work.node_selector) == ("PJM", {"pool": "us-east"})
    assert work.placement is not None
    assert work.placement["target"] is None


def test_a_re_registered_entry_keeps_the_place_its_decision_chose() -> None:
    ctx = context()
    add_target(ctx, "de", region="DE", labels={"pool": "batch"})
    work = held(selector=POOL, policy=SchedulePolicy.IMMEDIATE)
    ctx.registry.hold(work)
    decide_placed(ctx, work, {"DE": snapshot("DE", FLAT_CLEAN)}, NOW)
    again = copy.copy(work)  # a watch event for our own status write
    again.target, again.placement = None, None
    ctx.registry.hold(again)
    current = ctx.registry.as_planned(work)
    assert current is again
    assert current.target == ("ns", "de")
    assert current.placement == work.placement


class RecordingIntensity:
    """Serves fixed snapshots and records every refresh the loop asks for."""

    def __init__(self, snapshots: dict[str, RegionSnapshot]) -> None:
        self.snapshots = snapshots
        self.refreshes: list[set[str]] = []

    async def refresh(self, regions: set[str], now: datetime) -> dict[str, RegionSnapshot]:
        self.refreshes.append(set(regions))
        return {region: self.snapshots[region] for region in regions}

    def get(self, region: str) -> RegionSnapshot | None:
        return self.snapshots.get(region)


class QuietKube:
    async def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    async def create_event(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}


async def test_one_refresh_per_tick_covers_every_candidate_region_once() -> None:
    ctx = context()
    ctx.kube = cast(Any, QuietKube())
    for name, region in (("de", "DE"), ("pjm", "PJM"), ("pjm-2", "PJM")):
        add_target(ctx, name, region=region, labels={"pool": "batch"})
    for i in range(20):
        work = held(selector=POOL)
        work.name, work.uid = f"train-{i}", f"u{i}"
        ctx.registry.hold(work)
    plain = held()
    plain.name = "plain"
    ctx.registry.hold(plain)
    recording = RecordingIntensity({r: snapshot(r, FLAT_CLEAN) for r in ("DE", "PJM", "GB")})
    ctx.intensity = cast(Any, recording)
    await refresh_once(ctx)
    assert recording.refreshes == [{"DE", "PJM", "GB"}]
