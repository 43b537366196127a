"""Jobs a Shadow CarbonAwarePolicy watches: they run at once; the operator records what the
policy would have done.

At creation the policy's plan for the Job (as if it were held: planned start, expected mean
intensity run now and as planned) goes into its annotations. When it finishes, its SCI is
measured as for any managed Job, and the same run started at the planned start is priced on
the grid as then known (reported intensities for slots already past, the forecast for the
rest): emitted grams, would-have-emitted grams and their difference (what Enforce would have
saved) go into annotations, metrics, an Event and ``kubectl carbonaware report``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.api.conditions import JobState, format_time
from carbonaware.errors import CarbonAwareError, SpecError
from carbonaware.handlers import events
from carbonaware.handlers.childjob import job_outcome, job_pods
from carbonaware.handlers.containment import describe, measured
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.hold import decide_for
from carbonaware.handlers.measure import RunMeasurement, record_metrics, sci_annotations
from carbonaware.handlers.state import WorkKind
from carbonaware.handlers.tracking import annotate_run, measure_plain_job
from carbonaware.handlers.work import optional_time, work_from_plain_job
from carbonaware.scheduling.policy import Decision

logger = logging.getLogger(__name__)

SHADOW = {labels.MANAGED: labels.MANAGED_SHADOW}
NOT_PLANNED = "NotPlanned"  # SHADOW_REASON of a Job whose annotations could not be used


def plan_annotations(decision: Decision) -> dict[str, str]:
    """What the policy would have done with a Job created now (pure)."""
    found = {
        labels.SHADOW_PLANNED_START: format_time(decision.planned_start),
        labels.SHADOW_REASON: decision.reason.value,
    }
    if decision.mean_now is not None:
        found[labels.SHADOW_INTENSITY_NOW] = f"{decision.mean_now:.6g}"
    if decision.planned_window_mean is not None:
        found[labels.SHADOW_INTENSITY_PLANNED] = f"{decision.planned_window_mean:.6g}"
    return found


def outcome_annotations(measurement: RunMeasurement) -> tuple[dict[str, str], RunMeasurement]:
    """A measurement whose counterfactual was the planned start, as a Shadow Job's annotations:
    its SCI (it ran at creation, so it avoided nothing) and what it would have emitted (pure)."""
    estimate = measurement.estimate
    nothing_avoided = dataclasses.replace(estimate, avoided_grams=0.0)
    ran = dataclasses.replace(measurement, estimate=nothing_avoided)
    found = sci_annotations(ran)
    if estimate.avoided_grams is not None:
        would_have = estimate.total_grams + estimate.avoided_grams
        found[labels.SHADOW_WOULD_HAVE_GRAMS] = f"{would_have:.6g}"
        found[labels.SHADOW_WOULD_HAVE_SAVED_GRAMS] = f"{-estimate.avoided_grams:.6g}"
    return found, ran


async def plan_shadow(ctx: OperatorContext, job: dict[str, Any]) -> None:
    meta = job["metadata"]
    fresh = await ctx.kube.get_job(meta["namespace"], meta["name"])
    if fresh is None or labels.SHADOW_REASON in (fresh["metadata"].get("annotations") or {}):
        return  # gone, or planned already (this event was older than our own patch)
    policy = (meta.get("annotations") or {}).get(labels.GOVERNING_POLICY, "(unknown)")
    try:
        work = work_from_plain_job(
            job, default_region=ctx.settings.default_region, created=ctx.created(job)
        )
    except SpecError as exc:
        patch = {"metadata": {"annotations": {labels.SHADOW_REASON: NOT_PLANNED}}}
        await ctx.kube.patch_job(meta["namespace"], meta["name"], patch)
        message = f"{exc}; Shadow policy {policy} records nothing for this Job"
        events.warn(ctx.kube, job, reason="InvalidSpec", message=message)
        return
    now = ctx.clock()
    snapshot = await ctx.intensity.snapshot(work.region, now, max_age=ctx.tick)
    decision = decide_for(ctx, work, snapshot, now)
    await ctx.kube.patch_job(
        meta["namespace"], meta["name"], {"metadata": {"annotations": plan_annotations(decision)}}
    )
    ctx.usage.watch_namespace(meta["namespace"])
    verb = "started it at once" if decision.release else "held it"
    message = f"Shadow policy {policy} would have {verb}: {decision.message}"
    events.info(ctx.kube, job, reason="ShadowPlanned", message=message)


async def record_shadow_outcome(ctx: OperatorContext, job: dict[str, Any], outcome: str) -> None:
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    namespace, policy = meta["namespace"], annotations.get(labels.GOVERNING_POLICY, "")
    planned = optional_time(annotations.get(labels.SHADOW_PLANNED_START))
    state = JobState.SUCCEEDED if outcome == "Complete" else JobState.FAILED
    extra = {labels.STATE: state.value}
    pods = await job_pods(ctx, job)
    measurement, problem = await measured(
        ctx,
        f"{namespace}/{meta['name']}",
        lambda: measure_plain_job(ctx, job, pods, counterfactual_start=planned),
    )
    message = f"The Job is {state.value} (no SCI: {problem or 'no pod ran'})."
    if measurement is not None:
        found, ran = outcome_annotations(measurement)
        extra.update(found)
        record_metrics(ctx, namespace, ran.estimate)
        emitted = ran.estimate.total_grams
        ctx.metrics.shadow_emitted_grams.labels(namespace, policy).inc(emitted)
        message = f"The Job is {state.value}: it ran at once and emitted {emitted:.3g} g"
        if labels.SHADOW_WOULD_HAVE_GRAMS in found:
            would_have = float(found[labels.SHADOW_WOULD_HAVE_GRAMS])
            ctx.metrics.shadow_would_have_grams.labels(namespace, policy).inc(would_have)
            planned_text = annotations[labels.SHADOW_PLANNED_START]
            message += (
                f"; held by Shadow policy {policy} to {planned_text}"
                f" it would have emitted {would_have:.3g} g"
            )
        message += "."
    await annotate_run(ctx, job, pods if measurement else [], extra)
    events.info(ctx.kube, job, reason=f"Shadow{state.value}", message=message)


async def follow_shadow_job(ctx: OperatorContext, job: dict[str, Any]) -> None:
    annotations = job["metadata"].get("annotations") or {}
    outcome, _ = job_outcome(job)
    if labels.SHADOW_REASON not in annotations:
        if outcome is None:  # one seen only after it finished was never planned: nothing to say
            await plan_shadow(ctx, job)
        return
    if annotations[labels.SHADOW_REASON] == NOT_PLANNED or outcome is None:
        return
    if labels.STATE not in annotations:
        await record_shadow_outcome(ctx, job, outcome)


@kopf.on.event("batch", "v1", "jobs", labels=SHADOW)
async def shadow_job_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        return
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    key = (WorkKind.JOB.value, str(meta.get("namespace")), str(meta.get("name")))
    # A failure here must never touch the Job (it runs whatever we record): an error that can
    # pass waits for the Job's next event; anything else is reported once and the Job left be.
    async with ctx.registry.lock(key):
        try:
            await follow_shadow_job(ctx, dict(body))
        except CarbonAwareError as exc:
            logger.warning("Shadow Job %s/%s: %s (tried again at its next change)",
                           key[1], key[2], exc)  # fmt: skip
        except Exception as exc:
            logger.exception("Shadow Job %s/%s failed unexpectedly", key[1], key[2])
            events.warn(ctx.kube, dict(body), reason="InternalError",
                        message=f"recording what the Shadow policy would have done failed: "
                                f"{describe(exc)}; the Job itself is not affected")  # fmt: skip
