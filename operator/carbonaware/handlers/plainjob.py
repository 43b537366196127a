"""kopf handlers for plain ``batch/v1`` Jobs that opt in.

A Job created with ``suspend: true`` and the label ``carbonaware.io/managed: "true"`` is
held exactly like a CarbonAwareJob (its schedule comes from ``carbonaware.io/...``
annotations) and released by unsuspending it. Its status lives in annotations and Events.
"""

from __future__ import annotations

from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.api.conditions import Reason
from carbonaware.api.overrides import overrides_of
from carbonaware.errors import SpecError
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.cancel import cancel_plain_job
from carbonaware.handlers.carbonawarejob import deferred_release
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.hold import decide_for, forecast_note, plan_changed, write_held
from carbonaware.handlers.release import release_decided
from carbonaware.handlers.state import WorkKind
from carbonaware.handlers.work import work_from_plain_job

MANAGED = {labels.MANAGED: "true"}


def is_waiting(body: Any) -> bool:
    """Suspended, and not released by us yet (a user may suspend a Job again later)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    return bool(body.get("spec", {}).get("suspend")) and labels.RELEASE_TIME not in annotations


async def plan_plain_job(ctx: OperatorContext, body: Any) -> None:
    meta = body["metadata"]
    key = (WorkKind.JOB.value, meta["namespace"], meta["name"])
    async with ctx.registry.lock(key), contained(ctx, key, dict(body), "plan", kopf_retries=True):
        overrides = overrides_of(meta)
        if overrides.cancel:
            await cancel_plain_job(ctx, dict(body), overrides)
            return
        cancelled = (meta.get("annotations") or {}).get(labels.REASON) == Reason.CANCELLED.value
        if not is_waiting(body) or ctx.registry.was_released(meta["uid"]) or cancelled:
            ctx.registry.forget(key)
            return
        try:
            work = work_from_plain_job(
                body, default_region=ctx.settings.default_region, created=ctx.created(body)
            )
        except SpecError as exc:
            await report_bad_annotations(ctx, body, exc)
            return
        now = ctx.clock()
        snapshot = await ctx.intensity.snapshot(work.region, now, max_age=ctx.tick)
        decision = decide_for(ctx, work, snapshot, now)
        capped = ctx.settings.release_cap_per_tick is not None
        first = ctx.registry.get(key) is None and labels.STATE not in (
            meta.get("annotations") or {}
        )
        ctx.registry.hold(work)
        if (
            decision.release
            and not capped
            and await release_decided(ctx, work, decision, snapshot=snapshot, now=now)
        ):
            return
        reason, message = decision.reason, decision.message
        if decision.release:  # due, but the release cap orders releases in the loop
            reason, message = deferred_release(ctx, None)
        if first or plan_changed(work, decision, reason, now):
            await write_held(ctx, work, decision, snapshot, now, reason=reason, message=message)
        if first:
            events.info(
                ctx.kube, body, reason="Held",
                message=f"{reason.value}: {message}{forecast_note(snapshot, reason)}",
            )  # fmt: skip
            if snapshot.warning:
                events.warn(ctx.kube, body, reason="UnknownRegion", message=snapshot.warning)


async def report_bad_annotations(ctx: OperatorContext, body: Any, error: SpecError) -> None:
    """Mark a managed Job whose annotations cannot be used, once; it stays suspended."""
    meta = body["metadata"]
    current = meta.get("annotations") or {}
    if current.get(labels.REASON) == Reason.INVALID_SPEC.value:
        return  # already reported; our own annotation patch brought us here again
    annotations = status_docs.plain_job_failed_annotations(reason=Reason.INVALID_SPEC)
    await ctx.kube.patch_job(
        meta["namespace"], meta["name"], {"metadata": {"annotations": annotations}}
    )
    events.warn(
        ctx.kube,
        body,
        reason=Reason.INVALID_SPEC.value,
        message=f"{error}; the Job stays suspended",
    )


@kopf.on.create("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.resume("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.update("batch", "v1", "jobs", labels=MANAGED, field="metadata.annotations")
async def plain_job_seen(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await plan_plain_job(context_of(memo), body)
