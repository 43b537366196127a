"""The one operator-wide refresh loop: refresh each region once, re-plan every held job,
release those due, in priority order within the capacity limits; and, every
``reconcile_seconds``, check released work against what exists (``handlers.reconcile``, in a
task beside the ticks).

Cost per tick: one provider fetch per region (served by the chain's cache), no list call,
and one API write per job whose plan or state changed. Every per-object step runs inside
:func:`~carbonaware.handlers.containment.contained`, and a tick that fails as a whole is
logged and the next one starts on time: nothing a single object holds can stop the loop.
The liveness probe fails when no tick has completed for ``liveness_ticks`` tick lengths.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.cronjobs import run_cronjobs
from carbonaware.handlers.hold import (
    display_update,
    plan_changed,
    write_display,
    write_held,
)
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.placement import decide_placed, regions_wanted
from carbonaware.handlers.reconcile import initial_sync, reconcile_beside_ticks
from carbonaware.handlers.refusal import backing_off
from carbonaware.handlers.release import release_decided
from carbonaware.handlers.segmented import segment_jobs
from carbonaware.handlers.servertarget import probe_due_targets
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.handlers.work import held_body
from carbonaware.scheduling.ordering import ReleaseCandidate, plan_releases
from carbonaware.scheduling.policy import Decision

logger = logging.getLogger(__name__)

WRITE_CONCURRENCY = 32


async def bounded(
    jobs: list[Callable[[], Awaitable[None]]], limit: int = WRITE_CONCURRENCY
) -> None:
    """Run ``jobs`` with at most ``limit`` in flight (each contains its own failures)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


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
        task = None
    if task is None:
        task = asyncio.create_task(ctx.intensity.refresh(regions, now), name="intensity-refresh")
        ctx.refreshing = task
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
    done, _ = await asyncio.wait({task}, timeout=ctx.settings.tick_seconds / 2)
    if task in done:
        ctx.refreshing = None
        if task.exception() is not None:
            logger.error("refreshing intensities failed", exc_info=task.exception())
    return {region: s for region in regions if (s := ctx.intensity.get(region)) is not None}


def decide_all(
    ctx: OperatorContext,
    held: list[HeldWork],
    snapshots: dict[str, RegionSnapshot],
    now: datetime,
) -> tuple[dict[tuple[str, str, str], Decision], list[HeldWork]]:
    """Each job's decision; jobs whose decision raised are returned apart, to be failed.

    A job whose lock is held is being planned or released right now (by a watch handler):
    deciding it would change the place its release is using (``decide_placed`` sets
    ``work.target`` and ``work.placement``), so it waits for the next tick."""
    decisions = {}
    broken = []
    for work in held:
        if ctx.registry.in_flight(work.key):
            continue
        try:
            decisions[work.key] = decide_placed(ctx, work, snapshots, now)
        except Exception:
            logger.exception("deciding for %s %s/%s failed", *work.key)
            broken.append(work)
    return decisions, broken


async def refresh_once(ctx: OperatorContext) -> None:
    started = time.perf_counter()
    held = ctx.registry.held()
    regions: set[str] = set().union(*(regions_wanted(ctx, w) for w in held))
    regions |= {run.region for run in ctx.registry.segmented()}
    snapshots = await latest_snapshots(ctx, regions, ctx.clock())
    now = ctx.clock()  # after the provider: decisions and release times say when they happen
    decisions, broken = decide_all(ctx, held, snapshots, now)
    due = [w for w in held if w.key in decisions and decisions[w.key].release]
    candidates = [
        ReleaseCandidate(
            key="/".join(w.key), priority=w.priority, latest_start=w.latest_start, target=w.target
        )
        for w in due
        if not backing_off(w)
    ]
    targets = ctx.registry.targets()
    plan = plan_releases(
        candidates,
        now=now,
        tick=ctx.horizon(),
        running={key: state.busy for key, state in targets.items()},
        max_concurrent={key: state.max_concurrent for key, state in targets.items()},
        max_releases_per_tick=ctx.settings.release_cap_per_tick,
    )
    by_key = {"/".join(w.key): w for w in held}

    async def release_one(planned: HeldWork) -> None:
        async with (
            ctx.registry.lock(planned.key),
            contained(ctx, planned.key, planned.body, "release"),
        ):
            work = ctx.registry.as_planned(planned)
            if work is None:
                return  # released, deleted, edited or overridden meanwhile
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
        async with ctx.registry.lock(work.key), contained(ctx, work.key, work.body, "record"):
            if ctx.registry.get(work.key) is not work:
                return
            await write_held(
                ctx, work, decisions[work.key], snapshots.get(work.region), now,
                reason=reason, message=message,
            )  # fmt: skip

    async def refresh_one(work: HeldWork) -> None:
        nonlocal left_for_later
        if time.monotonic() > write_until:
            left_for_later += 1
            return
        async with ctx.registry.lock(work.key), contained(ctx, work.key, work.body, "record"):
            if ctx.registry.get(work.key) is not work:
                return
            doc = display_update(work, snapshots.get(work.region), now)
            if doc is not None:
                await write_display(ctx, work, doc)

    async def fail_one(work: HeldWork) -> None:
        async with ctx.registry.lock(work.key), contained(ctx, work.key, work.body, "decide"):
            decide_placed(ctx, work, snapshots, now)  # raises again: contained

    jobs: list[Callable[[], Awaitable[None]]] = [
        functools.partial(release_one, by_key[key]) for key in plan.released
    ]
    jobs.extend(functools.partial(fail_one, work) for work in broken)
    jobs.extend(segment_jobs(ctx, snapshots, now))  # interruptible runs: pause or resume
    changed: list[tuple[HeldWork, Reason, str]] = []
    for deferred in plan.deferred:
        work = by_key[deferred.key]
        if plan_changed(work, decisions[work.key], deferred.reason, now):
            changed.append((work, deferred.reason, deferred.message))
    for work in held:
        decision = decisions.get(work.key)
        if decision is None or decision.release or work.held_reason == "CreateRejected":
            continue
        if plan_changed(work, decision, decision.reason, now):
            changed.append((work, decision.reason, decision.message))
    changed.sort(key=lambda item: decisions[item[0].key].planned_start)
    jobs.extend(functools.partial(hold_one, *item) for item in changed)
    # Then the "now" values of held jobs whose plan stands (after the plans, in the same
    # budget): what the Intensity column shows is what the metric shows.
    rewritten = {item[0].key for item in changed}
    released = set(plan.released)
    jobs.extend(
        functools.partial(refresh_one, work)
        for work in held
        if work.key in decisions
        and work.key not in rewritten
        and "/".join(work.key) not in released
        and display_update(work, snapshots.get(work.region), now) is not None
    )
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
    for namespace in {labels_[0] for labels_ in set(counts) - ctx.exported_states}:
        ctx.metrics.know_namespace(namespace)
    ctx.exported_states |= set(counts)


async def resync_held(ctx: OperatorContext) -> None:
    """Read every held object again, once, after this replica was paused.

    While another replica was active, kopf showed this one no changes: work in the index
    may have been released by the other replica, or deleted. Releasing it again would not
    create a second Job (creation is idempotent) but would rewrite its release time and
    post a second Released event. Work still held keeps its latest body.
    """

    async def one(work: HeldWork) -> None:
        async with ctx.registry.lock(work.key), contained(ctx, work.key, work.body, "re-read"):
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


def tick_done(ctx: OperatorContext, completed_at: datetime, previous: datetime | None) -> None:
    """Bookkeeping of a completed tick: liveness, the metric, the gaps the horizon uses.

    A gap runs from the previous tick's decision (``previous``) to the end of this tick
    (``completed_at``): a job the previous tick held because its latest start lay beyond
    the horizon is released by this tick, at the latest when this tick's writes end. The
    time between two decisions alone leaves out how long the releases of a tick take."""
    ctx.last_tick_completed = time.monotonic()
    ctx.metrics.loop_last_success.set(time.time())
    if previous is not None and completed_at > previous:
        ctx.tick_gaps.append(completed_at - previous)
    ctx.metrics.decision_horizon.set(ctx.horizon().total_seconds())


async def run_forever(ctx: OperatorContext, is_active: Callable[[], Awaitable[bool]]) -> None:
    """Tick until cancelled. ``is_active`` says whether this replica may act (peering).

    ServerTarget probes and the reconcile passes run beside the ticks (a slow server, or
    measuring many runs that ended during a restart, never delays releases); a new round
    starts only when the previous one is done. Coming back from a pause, the index of
    held work is checked against the API first (:func:`resync_held`). Before the first
    release, runs already going (runner pods, in-process runs) are counted against their
    targets' ``maxConcurrent`` (:func:`initial_sync`).
    """
    probes: asyncio.Task[None] | None = None
    reconciling: asyncio.Task[None] | None = None
    paused = False
    last_reconcile = time.monotonic()
    previous: datetime | None = None
    try:
        while True:
            started = time.monotonic()
            try:
                active = await is_active()
                if active and paused:
                    await resync_held(ctx)
                paused = not active
                if active:
                    if not ctx.synced:  # start-up could not do it: try again, but go on anyway
                        try:
                            await initial_sync(ctx)
                        except CarbonAwareError as exc:
                            logger.warning("counting the runs already going failed: %s", exc)
                    if probes is None or probes.done():
                        probes = asyncio.create_task(probe_due_targets(ctx), name="probes")
                    decided_at = ctx.clock()
                    await refresh_once(ctx)
                    await run_cronjobs(ctx, ctx.clock())
                    if not ctx.settings.prometheus_url:
                        await ctx.usage.sample(ctx.kube)
                    if time.monotonic() - last_reconcile >= ctx.settings.reconcile_seconds and (
                        reconciling is None or reconciling.done()
                    ):
                        last_reconcile = time.monotonic()
                        reconciling = asyncio.create_task(
                            reconcile_beside_ticks(ctx), name="reconcile"
                        )
                    tick_done(ctx, ctx.clock(), previous)
                    previous = decided_at
                else:
                    ctx.last_tick_completed = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("refresh tick failed; the next tick starts on time")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(ctx.settings.tick_seconds - elapsed, 0.0))
    finally:
        # A probe round or a reconcile pass outlives the loop otherwise, and its writes would
        # meet a client that is being closed.
        for task in (probes, reconciling):
            if task is not None and not task.done():
                task.cancel()
