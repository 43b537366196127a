"""kopf handlers for CarbonAwareJob: first sight, spec edits, deletion.

First sight (create, or resume after a restart) parses the spec, decides at once with the
region's latest snapshot and either releases or records the hold; from then on the refresh
loop owns held jobs. Released jobs are followed through their children (``tracking``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from carbonaware import GROUP, VERSION
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason
from carbonaware.api.overrides import overrides_of
from carbonaware.handlers import events
from carbonaware.handlers.cancel import cancel_carbonawarejob, is_cancelled
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.hold import forecast_note, plan_changed, write_held
from carbonaware.handlers.inprocess import stop_run
from carbonaware.handlers.placement import decide_placed, regions_wanted
from carbonaware.handlers.release import child_exists, release_decided
from carbonaware.handlers.segmented import adopt
from carbonaware.handlers.state import ChildKind, Key, WorkKind
from carbonaware.handlers.tracking import released_work_of
from carbonaware.handlers.work import parse_spec, work_from_carbonawarejob


def region_of(ctx: OperatorContext, spec: Any, namespace: str) -> str:
    """spec.region, else the ServerTarget's region for SSH jobs, else the default (jobs with
    places start there; each decision then says where they go, ``handlers.placement``)."""
    if spec.region:
        return str(spec.region)
    if spec.ssh is not None and spec.ssh.target_ref is not None:
        region = ctx.registry.target((namespace, spec.ssh.target_ref.name)).region
        if region:
            return region
    return ctx.settings.default_region


def deferred_release(ctx: OperatorContext, target: Any) -> tuple[Reason, str]:
    """Why a job due at first sight waits for the next refresh (the ordering's wording)."""
    if target is not None and not ctx.registry.has_capacity(target):
        return Reason.TARGET_BUSY, "The ServerTarget is busy; this job starts when a slot frees."
    cap = ctx.settings.release_cap_per_tick
    return Reason.TARGET_BUSY, (
        f"Due now; the operator releases at most {cap} jobs per tick, in priority order, "
        "so this job goes at the next refresh."
    )


def _initialised(body: Any) -> bool:
    return bool((body.get("status") or {}).get("latestStartTime"))


async def plan(ctx: OperatorContext, body: Any, *, rewrite: bool = False) -> None:
    """Parse, decide and act for a CarbonAwareJob that is not released yet. The status is
    written when the plan changed, on first sight, or when ``rewrite`` (spec edits). Any
    failure is this job's alone (``handlers.containment``)."""
    meta = body["metadata"]
    key = (WorkKind.CARBON_AWARE_JOB.value, meta["namespace"], meta["name"])
    async with ctx.registry.lock(key), contained(ctx, key, dict(body), "plan", kopf_retries=True):
        status = body.get("status") or {}
        overrides = overrides_of(meta)
        if overrides.cancel:
            await cancel_carbonawarejob(ctx, dict(body), overrides)
            return
        if ctx.registry.was_released(meta["uid"]) or status.get("releaseTime"):
            return
        if is_cancelled(status):
            return  # cancelled earlier; removing the annotation does not bring it back
        if status.get("releaseDecidedTime") and await child_exists(ctx, dict(body)):
            return  # released, but not recorded before a restart: the child's event records it
        spec = parse_spec(body.get("spec") or {})
        region = region_of(ctx, spec, meta["namespace"])
        known = ctx.registry.get(key)
        work = work_from_carbonawarejob(body, spec, region=region, created=ctx.created(body))
        if known is not None and known.uid == work.uid:
            work.retry_at, work.rejections = known.retry_at, known.rejections
        now = ctx.clock()
        snapshots = {
            wanted: await ctx.intensity.snapshot(wanted, now, max_age=ctx.tick)
            for wanted in sorted(regions_wanted(ctx, work))
        }
        now = ctx.clock()  # the first fetch of a region may have taken a while
        decision = decide_placed(ctx, work, snapshots, now)
        snapshot = snapshots.get(work.region)
        # With a release cap, every release goes through the loop's ordering (priority first).
        capped = ctx.settings.release_cap_per_tick is not None
        ctx.registry.hold(work)
        if (
            decision.release
            and not capped
            and await release_decided(ctx, work, decision, snapshot=snapshot, now=now)
        ):
            return
        if ctx.registry.get(key) is not work:
            return  # gone, failed, or planned again meanwhile (see handlers.release)
        reason, message = decision.reason, decision.message
        if decision.release:
            reason, message = deferred_release(ctx, work.target)
        if work.held_reason == Reason.CREATE_REJECTED.value:
            return  # the refusal is recorded; the loop retries it
        if rewrite or not _initialised(body) or plan_changed(work, decision, reason, now):
            await write_held(ctx, work, decision, snapshot, now, reason=reason, message=message)
        if known is None:
            events.info(
                ctx.kube, body, reason="Held",
                message=f"{reason.value}: {message}{forecast_note(snapshot, reason)}",
            )  # fmt: skip
            if snapshot is not None and snapshot.warning:
                events.warn(ctx.kube, body, reason="UnknownRegion", message=snapshot.warning)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
async def carbonawarejob_seen(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await plan(context_of(memo), body)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def carbonawarejob_spec_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Edits while held re-plan; edits after release are refused by the schema."""
    await plan(context_of(memo), body, rewrite=True)


@kopf.on.update(GROUP, VERSION, PLURAL, field="metadata.annotations")
async def carbonawarejob_annotated(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Overrides (``carbonaware.io/release-now``, ``hold``, ``cancel``) act at once: the
    job is decided again with them (a cancel ends it)."""
    await plan(context_of(memo), body)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def carbonawarejob_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Count objects by state for the metrics, index released, unfinished runs for the
    reconcile pass, and forget a deleted object."""
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    key = (WorkKind.CARBON_AWARE_JOB.value, str(meta.get("namespace")), str(meta.get("name")))
    if event.get("type") == "DELETED":
        forget_deleted(ctx, key, dict(body))
        return
    state = (body.get("status") or {}).get("state")
    ctx.registry.observe_state(key, state or "Held")
    running = released_work_of(dict(body))
    if running is not None:
        ctx.registry.track(running)
        adopt(ctx, dict(body))
        if running.target is not None and running.child_kind is not ChildKind.JOB:
            ctx.registry.mark_running(running.target, key)
    elif (known := ctx.registry.tracked_work(key)) is not None and known.uid == meta.get("uid"):
        ctx.registry.untrack(key)


def forget_deleted(ctx: OperatorContext, key: Key, body: dict[str, Any]) -> None:
    """A deleted CarbonAwareJob: its Job or runner pod goes with it through the owner
    reference; its SSH run is stopped on its server (a runner pod only lets go of the run
    when it is deleted). On the DELETED event: without a finalizer, kopf's deletion handlers
    never see the object go."""
    uid = str((body.get("metadata") or {}).get("uid"))
    running = ctx.registry.tracked_work(key) or released_work_of(body)
    if (
        running is not None
        and running.uid == uid
        and running.target is not None
        and running.child_kind is not ChildKind.JOB
    ):
        task = asyncio.create_task(stop_run(ctx, key, uid, body))
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
    ctx.registry.observe_state(key, None)
    ctx.registry.object_deleted(key, uid)
    ctx.reattachments.pop(key, None)
