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

from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.release import release
from carbonaware.handlers.servertarget import probe_due_targets
from carbonaware.handlers.state import HeldWork, WorkKind
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


async def refresh_once(ctx: OperatorContext, now: datetime) -> None:
    started = time.perf_counter()
    held = ctx.registry.held()
    snapshots = await ctx.intensity.refresh({w.region for w in held}, now)
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
        running={key: len(state.running) for key, state in targets.items()},
        max_concurrent={key: state.max_concurrent for key, state in targets.items()},
        max_releases_per_tick=ctx.settings.release_cap_per_tick,
    )
    by_key = {"/".join(w.key): w for w in held}

    async def release_one(work: HeldWork) -> None:
        async with ctx.registry.lock(work.key):
            if ctx.registry.get(work.key) is None:
                return  # released or deleted meanwhile
            decision = decisions[work.key]
            await release(
                ctx,
                work,
                reason=decision.reason,
                message=decision.message,
                snapshot=snapshots.get(work.region),
                now=now,
            )

    async def hold_one(work: HeldWork, reason: Reason, message: str) -> None:
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
    for deferred in plan.deferred:
        work = by_key[deferred.key]
        if plan_changed(work, decisions[work.key], deferred.reason):
            jobs.append(functools.partial(hold_one, work, deferred.reason, deferred.message))
    for work in held:
        decision = decisions[work.key]
        if not decision.release and plan_changed(work, decision, decision.reason):
            jobs.append(functools.partial(hold_one, work, decision.reason, decision.message))
    await bounded(jobs)
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


async def run_forever(ctx: OperatorContext, is_active: Callable[[], Awaitable[bool]]) -> None:
    """Tick until cancelled. ``is_active`` says whether this replica may act (peering).

    ServerTarget probes run beside the ticks (a slow server never delays releases); a new
    round starts only when the previous one is done.
    """
    probes: asyncio.Task[None] | None = None
    while True:
        started = time.monotonic()
        try:
            if await is_active():
                if probes is None or probes.done():
                    probes = asyncio.create_task(probe_due_targets(ctx), name="probes")
                await refresh_once(ctx, ctx.clock())
                if not ctx.settings.prometheus_url:
                    await ctx.usage.sample(ctx.kube)
        except CarbonAwareError as exc:
            logger.warning("refresh failed: %s", exc)
        elapsed = time.monotonic() - started
        await asyncio.sleep(max(ctx.settings.tick_seconds - elapsed, 0.0))
