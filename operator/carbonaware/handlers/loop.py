"""The one operator-wide refresh loop: refresh each region once, re-plan every held job,
release those due, in priority order within the capacity limits.

Cost per tick: one provider fetch per region (served by the chain's cache), no list call,
and one API write per job whose plan or state changed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.release import release_decided
from carbonaware.handlers.servertarget import probe_due_targets
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.handlers.work import held_body
from carbonaware.scheduling.ordering import ReleaseCandidate, plan_releases
from carbonaware.scheduling.policy import Decision, JobRequest, decide

logger = logging.getLogger(__name__)

WRITE_CONCURRENCY = 32


def request_of(work: HeldWork) -> JobRequest:
    return JobRequest(
        policy=work.policy,
        created=work.created,
        latest_start=work.latest_start,
        expected_duration=timedelta(seconds=work.expected_duration_seconds),
        max_intensity=work.max_intensity,
        max_index=work.max_index,
        priority=work.priority,
    )


def decide_for(
    ctx: OperatorContext, work: HeldWork, snapshot: RegionSnapshot | None, now: datetime
) -> Decision:
    return decide(
        request_of(work),
        snapshot.view if snapshot else None,
        snapshot.current if snapshot else None,
        now,
        ctx.tick,
        provider_problem=snapshot.error if snapshot else None,
    )


async def bounded(
    jobs: list[Callable[[], Awaitable[None]]], limit: int = WRITE_CONCURRENCY
) -> None:
    """Run ``jobs`` with at most ``limit`` in flight; log and continue past failures."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            try:
                await job()
            except CarbonAwareError as exc:
                logger.warning("%s", exc)

    await asyncio.gather(*(one(job) for job in jobs))


async def write_held(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    snapshot: RegionSnapshot | None,
    now: datetime,
    *,
    reason: Reason | None = None,
    message: str | None = None,
) -> None:
    """Record a (new) plan for a held job. Caller holds the object's lock."""
    body_status = work.body.get("status") or {}
    intensity = body_status.get("intensity") or {}
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    doc = status_docs.held(
        body_status.get("conditions") or [],
        reason=reason or decision.reason,
        message=message or decision.message,
        now=now,
        generation=work.body.get("metadata", {}).get("generation"),
        region=work.region,
        latest_start=work.latest_start,
        planned_start=decision.planned_start,
        planned_window_mean=decision.planned_window_mean,
        current=current,
        source=snapshot.source if snapshot else None,
        at_creation=intensity.get("atCreation", current),
    )
    if work.kind is WorkKind.CARBON_AWARE_JOB:
        written = await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
        work.body["status"] = written.get("status", doc)
    else:
        annotations = status_docs.plain_job_annotations(doc, reason=reason or decision.reason)
        if annotations.get("carbonaware.io/intensity-at-creation") is None and current is not None:
            annotations["carbonaware.io/intensity-at-creation"] = f"{current:g}"
        await ctx.kube.patch_job(
            work.namespace, work.name, {"metadata": {"annotations": annotations}}
        )
    work.planned_start = decision.planned_start
    work.held_reason = (reason or decision.reason).value


def plan_changed(work: HeldWork, decision: Decision, reason: Reason) -> bool:
    return work.planned_start != decision.planned_start or work.held_reason != reason.value


async def latest_snapshots(
    ctx: OperatorContext, regions: set[str], now: datetime
) -> dict[str, RegionSnapshot]:
    """Refresh ``regions``, waiting for the provider at most half a tick.

    A refresh can take the provider's timeout times its attempts, longer than a tick: waiting
    for it would hold due jobs past their latest start. A refresh that does not finish in
    time goes on in the background (no second one is started beside it; a later tick uses
    its result) and this tick decides with each region's last snapshot, or none.
    """
    task = ctx.refreshing
    if task is not None and task.done():
        ctx.refreshing = None
        task.result()  # anything but a provider error is a bug: let it stop the loop
        task = None
    if task is None:
        task = asyncio.create_task(ctx.intensity.refresh(regions, now), name="intensity-refresh")
        ctx.refreshing = task
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
    done, _ = await asyncio.wait({task}, timeout=ctx.settings.tick_seconds / 2)
    if task in done:
        ctx.refreshing = None
        task.result()  # anything but a provider error is a bug: let it stop the loop
    return {region: s for region in regions if (s := ctx.intensity.get(region)) is not None}


async def refresh_once(ctx: OperatorContext) -> None:
    started = time.perf_counter()
    held = ctx.registry.held()
    snapshots = await latest_snapshots(ctx, {w.region for w in held}, ctx.clock())
    now = ctx.clock()  # after the provider: decisions and release times say when they happen
    decisions = {w.key: decide_for(ctx, w, snapshots.get(w.region), now) for w in held}
    due = [w for w in held if decisions[w.key].release]
    candidates = [
        ReleaseCandidate(
            key="/".join(w.key), priority=w.priority, latest_start=w.latest_start, target=w.target
        )
        for w in due
    ]
    targets = ctx.registry.targets()
    plan = plan_releases(
        candidates,
        now=now,
        tick=ctx.tick,
        running={key: state.busy for key, state in targets.items()},
        max_concurrent={key: state.max_concurrent for key, state in targets.items()},
        max_releases_per_tick=ctx.settings.release_cap_per_tick,
    )
    by_key = {"/".join(w.key): w for w in held}

    async def release_one(work: HeldWork) -> None:
        async with ctx.registry.lock(work.key):
            if ctx.registry.get(work.key) is None:
                return  # released or deleted meanwhile
            # False when a job created meanwhile took the slot: the next tick plans again.
            await release_decided(
                ctx, work, decisions[work.key], snapshot=snapshots.get(work.region), now=now
            )

    # A forecast revision can move every held job's plan at once, and 10,000 status writes
    # take longer than a tick (bench/scale.py): the next tick's releases would wait for
    # them. Changed plans are written soonest planned start first for half a tick; the rest
    # still differ from what was written, so later ticks write them. Releases always run.
    write_until = time.monotonic() + ctx.settings.tick_seconds / 2
    left_for_later = 0

    async def hold_one(work: HeldWork, reason: Reason, message: str) -> None:
        nonlocal left_for_later
        if time.monotonic() > write_until:
            left_for_later += 1
            return
        async with ctx.registry.lock(work.key):
            if ctx.registry.get(work.key) is None:
                return
            await write_held(
                ctx, work, decisions[work.key], snapshots.get(work.region), now,
                reason=reason, message=message,
            )  # fmt: skip

    jobs: list[Callable[[], Awaitable[None]]] = [
        functools.partial(release_one, by_key[key]) for key in plan.released
    ]
    changed: list[tuple[HeldWork, Reason, str]] = []
    for deferred in plan.deferred:
        work = by_key[deferred.key]
        if plan_changed(work, decisions[work.key], deferred.reason):
            changed.append((work, deferred.reason, deferred.message))
    for work in held:
        decision = decisions[work.key]
        if not decision.release and plan_changed(work, decision, decision.reason):
            changed.append((work, decision.reason, decision.message))
    changed.sort(key=lambda item: decisions[item[0].key].planned_start)
    jobs.extend(functools.partial(hold_one, *item) for item in changed)
    await bounded(jobs)
    if left_for_later:
        logger.info("%d changed plan(s) left for the next tick", left_for_later)
    export_states(ctx)
    ctx.metrics.refresh_duration.observe(time.perf_counter() - started)


def export_states(ctx: OperatorContext) -> None:
    """``carbonaware_jobs``: every (namespace, kind, state) seen so far, zero when emptied."""
    counts = ctx.registry.state_counts()
    for labels_ in ctx.exported_states - set(counts):
        ctx.metrics.jobs.labels(*labels_).set(0)
    for labels_, count in counts.items():
        ctx.metrics.jobs.labels(*labels_).set(count)
    ctx.exported_states |= set(counts)


async def resync_held(ctx: OperatorContext) -> None:
    """Read every held object again, once, after this replica was paused.

    While another replica was active, kopf showed this one no changes: work in the index
    may have been released by the other replica, or deleted. Releasing it again would not
    create a second Job (creation is idempotent) but would rewrite its release time and
    post a second Released event. Work still held keeps its latest body.
    """

    async def one(work: HeldWork) -> None:
        async with ctx.registry.lock(work.key):
            if ctx.registry.get(work.key) is None:
                return
            if work.kind is WorkKind.CARBON_AWARE_JOB:
                body = await ctx.kube.get_object(PLURAL, work.namespace, work.name)
                released = body is not None and bool((body.get("status") or {}).get("releaseTime"))
            else:
                body = await ctx.kube.get_job(work.namespace, work.name)
                annotations = (body or {}).get("metadata", {}).get("annotations") or {}
                released = body is not None and (
                    labels.RELEASE_TIME in annotations or not body.get("spec", {}).get("suspend")
                )
            if body is None or body["metadata"].get("uid") != work.uid or released:
                ctx.registry.forget(work.key)
                if released:
                    ctx.registry.remember_released(work.uid)
                return
            work.body = held_body(body)

    held = ctx.registry.held()
    await bounded([functools.partial(one, work) for work in held])
    logger.info("re-read %d held object(s) after the pause", len(held))


async def run_forever(ctx: OperatorContext, is_active: Callable[[], Awaitable[bool]]) -> None:
    """Tick until cancelled. ``is_active`` says whether this replica may act (peering).

    ServerTarget probes run beside the ticks (a slow server never delays releases); a new
    round starts only when the previous one is done. Coming back from a pause, the index of
    held work is checked against the API first (:func:`resync_held`).
    """
    probes: asyncio.Task[None] | None = None
    paused = False
    while True:
        started = time.monotonic()
        try:
            active = await is_active()
            if active and paused:
                await resync_held(ctx)
            paused = not active
            if active:
                if probes is None or probes.done():
                    probes = asyncio.create_task(probe_due_targets(ctx), name="probes")
                await refresh_once(ctx)
                if not ctx.settings.prometheus_url:
                    await ctx.usage.sample(ctx.kube)
        except CarbonAwareError as exc:
            logger.warning("refresh failed: %s", exc)
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(ctx.settings.tick_seconds - elapsed, 0.0))
