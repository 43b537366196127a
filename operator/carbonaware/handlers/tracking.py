"""Following released work through its Job: times, final condition, SCI.

The child Job is the source of truth. Its annotations say when and why it was released, so
if the operator died between creating it and recording the release, the first watch event
of the child records it. Completion is recorded once: the SCI is computed only when the
parent's status does not carry one yet.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL, FunctionalUnit
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    JobState,
    Reason,
    derive_state,
    format_time,
    set_condition,
)
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers import events
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.errors import kopf_errors
from carbonaware.handlers.measure import measure_pods, record_metrics, sci_annotations
from carbonaware.handlers.state import WorkKind
from carbonaware.handlers.work import optional_time

logger = logging.getLogger(__name__)

CHILD: dict[str, Any] = {labels.JOB_UID: kopf.PRESENT}
MANAGED = {labels.MANAGED: "true"}


def job_outcome(job: dict[str, Any]) -> tuple[str | None, str]:
    """("Complete" | "Failed" | None, message) from the Job's own conditions."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Complete", condition.get("message") or "The Job completed."
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            return "Failed", f"{reason}: {condition.get('message') or 'the Job failed.'}"
    return None, ""


def owner_name(job: dict[str, Any]) -> str | None:
    for ref in job.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "CarbonAwareJob":
            return str(ref.get("name"))
    return None


def tracked_status(parent: dict[str, Any], job: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The parent's status as the child says it should be (pure)."""
    status = dict(parent.get("status") or {})
    generation = parent.get("metadata", {}).get("generation")
    conditions = status.get("conditions") or []
    child_meta = job.get("metadata", {})
    annotations = child_meta.get("annotations") or {}
    doc: dict[str, Any] = {"jobName": child_meta.get("name")}
    if not status.get("releaseTime"):
        # Released, but the operator stopped before recording it: the child knows.
        reason = Reason(annotations.get(labels.REASON, Reason.LOW_CARBON_WINDOW.value))
        message = "Recorded from the Job after an operator restart."
        for type_, value in ((ConditionType.HELD, ConditionStatus.FALSE),
                             (ConditionType.RELEASED, ConditionStatus.TRUE)):  # fmt: skip
            conditions = set_condition(
                conditions,
                type=type_,
                status=value,
                reason=reason,
                message=message,
                now=now,
                generation=generation,
            )
        doc["releaseTime"] = annotations.get(labels.RELEASE_TIME) or child_meta.get(
            "creationTimestamp"
        )
        if annotations.get(labels.LATEST_START_TIME) and not status.get("latestStartTime"):
            doc["latestStartTime"] = annotations[labels.LATEST_START_TIME]
        at_release = annotations.get(labels.INTENSITY_AT_RELEASE)
        if at_release:
            doc["intensity"] = {"atRelease": float(at_release)}
    job_status = job.get("status", {})
    if job_status.get("startTime"):
        doc["startTime"] = job_status["startTime"]
    outcome, message = job_outcome(job)
    if outcome == "Complete":
        conditions = set_condition(
            conditions,
            type=ConditionType.COMPLETE,
            status=ConditionStatus.TRUE,
            reason=Reason.SUCCEEDED,
            message=message,
            now=now,
            generation=generation,
        )
    elif outcome == "Failed":
        conditions = set_condition(
            conditions,
            type=ConditionType.FAILED,
            status=ConditionStatus.TRUE,
            reason=Reason.JOB_FAILED,
            message=message,
            now=now,
            generation=generation,
        )
    if outcome:
        doc["completionTime"] = job_status.get("completionTime") or format_time(now)
    running = outcome is None and (
        bool(job_status.get("active")) or bool(job_status.get("startTime"))
    )
    doc["conditions"] = conditions
    doc["state"] = derive_state(conditions, running=running).value
    return doc


def changed(old: dict[str, Any], doc: dict[str, Any]) -> bool:
    def strip(conditions: Any) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason")) for c in conditions or []]

    for key, value in doc.items():
        if key == "conditions":
            if strip(value) != strip(old.get("conditions")):
                return True
        elif key == "intensity":
            if any((old.get("intensity") or {}).get(k) != v for k, v in value.items()):
                return True
        elif old.get(key) != value:
            return True
    return False


async def annotate_run(
    ctx: OperatorContext,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    annotations: dict[str, str],
) -> None:
    meta = job["metadata"]
    await ctx.kube.patch_job(
        meta["namespace"], meta["name"], {"metadata": {"annotations": annotations}}
    )
    for pod in pods:
        await ctx.kube.patch_pod(
            meta["namespace"], pod["metadata"]["name"], {"metadata": {"annotations": annotations}}
        )


async def job_pods(ctx: OperatorContext, job: dict[str, Any]) -> list[dict[str, Any]]:
    meta = job["metadata"]
    return await ctx.kube.list_pods(
        meta["namespace"], f"batch.kubernetes.io/controller-uid={meta['uid']}"
    )


async def follow_child(ctx: OperatorContext, job: dict[str, Any]) -> None:
    namespace = job["metadata"]["namespace"]
    parent_name = owner_name(job)
    if parent_name is None:
        return
    key = (WorkKind.CARBON_AWARE_JOB.value, namespace, parent_name)
    async with ctx.registry.lock(key):
        parent = await ctx.kube.get_object(PLURAL, namespace, parent_name)
        if parent is None or parent["metadata"]["uid"] != job["metadata"]["labels"].get(
            labels.JOB_UID
        ):
            return
        ctx.registry.forget(key)
        ctx.registry.remember_released(parent["metadata"]["uid"])
        now = ctx.clock()
        old = parent.get("status") or {}
        doc = tracked_status(parent, job, now)
        finished = doc["state"] in (JobState.SUCCEEDED.value, JobState.FAILED.value)
        if doc["state"] == JobState.RUNNING.value:
            ctx.usage.watch_namespace(namespace)
        if finished and not old.get("sci"):
            await attach_sci(ctx, parent, job, doc)
        if changed(old, doc):
            await ctx.kube.patch_status(PLURAL, namespace, parent_name, doc)
            if doc["state"] != old.get("state"):
                events.info(
                    ctx.kube,
                    parent,
                    reason=doc["state"],
                    message=f"Job {job['metadata']['name']} is {doc['state']}.",
                )


async def attach_sci(
    ctx: OperatorContext, parent: dict[str, Any], job: dict[str, Any], doc: dict[str, Any]
) -> None:
    """Measure the finished run, add ``sci`` to ``doc`` and annotate the Job and its pods."""
    spec = parent.get("spec") or {}
    unit = FunctionalUnit.model_validate((spec.get("sci") or {}).get("functionalUnit") or {})
    region = (
        (parent.get("status") or {}).get("region")
        or spec.get("region")
        or ctx.settings.default_region
    )
    pods = await job_pods(ctx, job)
    job_status = job.get("status", {})
    start, end = (
        optional_time(job_status.get("startTime")),
        optional_time(doc.get("completionTime")),
    )
    try:
        measurement = await measure_pods(
            ctx,
            pods,
            region=region,
            created=ctx.created(parent),
            functional_unit=unit,
            fallback_window=(start, end) if start and end else None,
        )
    except CarbonAwareError as exc:
        logger.warning("no SCI for %s: %s", parent["metadata"]["name"], exc)
        return
    if measurement is None:
        return
    doc["sci"] = {k: v for k, v in measurement.estimate.to_status().items() if v is not None}
    intensity = dict(doc.get("intensity") or {})
    if measurement.run_mean is not None:
        intensity["runMean"] = round(measurement.run_mean, 2)
    doc["intensity"] = intensity
    await annotate_run(ctx, job, pods, sci_annotations(measurement))
    record_metrics(ctx, parent["metadata"]["namespace"], measurement.estimate)


async def follow_plain_job(ctx: OperatorContext, job: dict[str, Any]) -> None:
    """A released managed Job that finished gets its SCI as annotations, once."""
    annotations = job["metadata"].get("annotations") or {}
    outcome, _ = job_outcome(job)
    if outcome is None or labels.RELEASE_TIME not in annotations or labels.SCI_GRAMS in annotations:
        return
    pods = await job_pods(ctx, job)
    job_status = job.get("status", {})
    start = optional_time(job_status.get("startTime"))
    end = optional_time(job_status.get("completionTime")) or ctx.clock()
    measurement = await measure_pods(
        ctx,
        pods,
        region=annotations.get(labels.REGION) or ctx.settings.default_region,
        created=ctx.created(job),
        functional_unit=FunctionalUnit(),
        fallback_window=(start, end) if start else None,
    )
    state = JobState.SUCCEEDED if outcome == "Complete" else JobState.FAILED
    extra = {labels.STATE: state.value}
    if measurement is not None:
        extra.update(sci_annotations(measurement))
        record_metrics(ctx, job["metadata"]["namespace"], measurement.estimate)
    await annotate_run(ctx, job, pods if measurement else [], extra)
    sci = f", SCI {measurement.estimate.total_grams:.3g} g" if measurement else ""
    events.info(ctx.kube, job, reason=state.value, message=f"The Job is {state.value}{sci}.")


@kopf.on.event("batch", "v1", "jobs", labels=CHILD)
async def child_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return
    with kopf_errors():
        await follow_child(context_of(memo), dict(body))


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def plain_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    meta = body.get("metadata", {})
    key = (WorkKind.JOB.value, str(meta.get("namespace")), str(meta.get("name")))
    state = (meta.get("annotations") or {}).get(labels.STATE)
    deleted = event.get("type") == "DELETED"
    context_of(memo).registry.observe_state(key, None if deleted or not state else state)
    if deleted:
        return
    with kopf_errors():
        await follow_plain_job(context_of(memo), dict(body))
