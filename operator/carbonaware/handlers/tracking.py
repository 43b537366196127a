"""Following released work through its Job: times, final condition, SCI.

The child Job is the source of truth for the run; the parent's ``status.releaseTime`` is the
source of truth for the release. A child whose parent has no release time was made by a release
the operator could not record before it stopped: the release is recorded here from the facts
the child carries (``handlers.release.release_facts``). A child is followed only by the parent
whose UID its owner reference and label carry. A child deleted before it finished ends the job
``Failed`` (``ChildDeleted``). Completion is recorded once: the SCI is computed only when the
status has none yet.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
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
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.childjob import job_outcome, job_pods
from carbonaware.handlers.containment import contained, measured
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.measure import measure_pods, record_metrics, sci_annotations
from carbonaware.handlers.segmentdocs import (
    closed_at_end,
    closed_done_seconds,
    container_start,
    segment_annotations,
    segment_share,
    segments_of,
    summed_estimate,
)
from carbonaware.handlers.segmented import adopt
from carbonaware.handlers.sshoutcome import job_key, parent_of
from carbonaware.handlers.state import ChildKind, ReleasedWork, WorkKind
from carbonaware.handlers.work import job_target, optional_time

logger = logging.getLogger(__name__)

CHILD: dict[str, Any] = {labels.JOB_UID: kopf.PRESENT}
MANAGED = {labels.MANAGED: "true"}


def owner_of(job: dict[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the CarbonAwareJob that owns ``job``, if its label agrees."""
    meta = job.get("metadata", {})
    uid = (meta.get("labels") or {}).get(labels.JOB_UID)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "CarbonAwareJob" and ref.get("uid") == uid:
            return str(ref.get("name")), str(uid)
    return None


def tracked_status(parent: dict[str, Any], job: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The released parent's status as the child says it should be (pure)."""
    status = dict(parent.get("status") or {})
    generation = parent.get("metadata", {}).get("generation")
    conditions = status.get("conditions") or []
    doc: dict[str, Any] = {"jobName": job.get("metadata", {}).get("name")}
    job_status = job.get("status", {})
    if job_status.get("startTime"):  # a resumed Job restarts its own: the first one stays
        doc["startTime"] = status.get("startTime") or job_status["startTime"]
    outcome, message = job_outcome(job)
    if outcome is not None:
        complete = outcome == "Complete"
        conditions = set_condition(
            conditions,
            type=ConditionType.COMPLETE if complete else ConditionType.FAILED,
            status=ConditionStatus.TRUE,
            reason=Reason.SUCCEEDED if complete else Reason.JOB_FAILED,
            message=message,
            now=now,
            generation=generation,
        )
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


async def follow_child(ctx: OperatorContext, job: dict[str, Any], *, deleted: bool = False) -> None:
    owner = owner_of(job)
    if owner is None:
        return
    namespace = job["metadata"]["namespace"]
    parent_name, uid = owner
    key = job_key(namespace, parent_name)
    async with ctx.registry.lock(key):
        parent = await parent_of(ctx, namespace, parent_name, uid)
        if parent is None:
            ctx.registry.untrack(key, uid)
            return
        old = parent.get("status") or {}
        if old.get("completionTime"):
            ctx.registry.untrack(key, uid)
            return
        if deleted and job_outcome(job)[0] is None:
            await child_deleted(ctx, parent, f"Job {job['metadata']['name']}")
            return
        ctx.registry.forget(key)
        ctx.registry.remember_released(uid)
        now = ctx.clock()
        recovered = status_docs.released_from_child(parent, job)
        if recovered is not None:
            parent = {**parent, "status": {**old, **recovered}}
            reason = next(c["reason"] for c in recovered["conditions"]
                          if c["type"] == ConditionType.RELEASED.value)  # fmt: skip
            events.info(ctx.kube, parent, reason="Released",
                        message=f"{reason}: recorded from the Job after a restart")  # fmt: skip
        doc = {**(recovered or {}), **tracked_status(parent, job, now)}
        finished = doc["state"] in (JobState.SUCCEEDED.value, JobState.FAILED.value)
        if finished and old.get("segments"):  # an interruptible run: its last segment ends
            end = optional_time(doc.get("completionTime")) or now
            doc.update(closed_at_end(old, ctx.observed(end), None))
        if doc["state"] == JobState.RUNNING.value:
            ctx.usage.watch_namespace(namespace)
        if finished and not old.get("sci") and not deleted:
            _, problem = await measured(
                ctx, f"{namespace}/{parent_name}", lambda: attach_sci(ctx, parent, job, doc)
            )
            if problem:
                events.warn(ctx.kube, parent, reason="NoSCI", message=f"No SCI: {problem}")
        if changed(old, doc):
            await ctx.kube.patch_status(PLURAL, namespace, parent_name, doc)
            if doc["state"] != old.get("state"):
                events.info(
                    ctx.kube,
                    parent,
                    reason=doc["state"],
                    message=f"Job {job['metadata']['name']} is {doc['state']}.",
                )
        if finished:
            ctx.registry.untrack(key, uid)


async def child_deleted(ctx: OperatorContext, parent: dict[str, Any], what: str) -> None:
    """End a released job whose child was deleted before it finished. Caller holds the lock."""
    meta = parent["metadata"]
    message = (
        f"{what} was deleted before it finished (by a user, a controller, or its "
        "ttlSecondsAfterFinished while the operator was away); the run's outcome is unknown."
    )
    doc = status_docs.failed(
        (parent.get("status") or {}).get("conditions") or [],
        reason=Reason.CHILD_DELETED,
        message=message,
        now=ctx.clock(),
        generation=meta.get("generation"),
    )
    await ctx.kube.patch_status(PLURAL, meta["namespace"], meta["name"], doc)
    key = job_key(meta["namespace"], meta["name"])
    ctx.registry.untrack(key, str(meta["uid"]))
    ctx.registry.observe_state(key, JobState.FAILED.value)
    events.warn(ctx.kube, parent, reason=Reason.CHILD_DELETED.value, message=message)


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
    # An interruptible run: these pods ran its last segment; the counterfactual of its work
    # starts where the segments before it left off.
    earlier = [s for s in (parent.get("status") or {}).get("segments") or [] if s.get("end")]
    measurement = await measure_pods(
        ctx,
        pods,
        region=region,
        created=ctx.created(parent) + timedelta(seconds=closed_done_seconds(parent["status"]))
        if earlier
        else ctx.created(parent),
        functional_unit=unit,
        fallback_window=(start, end) if start and end else None,
    )
    if measurement is None:
        return
    estimate = measurement.estimate
    if doc.get("segments") and end is not None:
        began = [ctx.observed(t) for pod in pods if (t := container_start(pod)) is not None]
        share = segment_share(estimate, measurement.run_mean)
        doc.update(
            closed_at_end(parent["status"], ctx.observed(end), share, max(began, default=None))
        )
        estimate = summed_estimate(estimate, earlier, float(unit.quantity))
    doc["sci"] = {k: v for k, v in estimate.to_status().items() if v is not None}
    doc["sciDisplay"] = status_docs.sci_display(doc["sci"])
    intensity = dict(doc.get("intensity") or {})
    if measurement.run_mean is not None:
        intensity["runMean"] = round(measurement.run_mean, 2)
    doc["intensity"] = intensity
    measurement = dataclasses.replace(measurement, estimate=estimate)
    await annotate_run(ctx, job, pods, sci_annotations(measurement))
    record_metrics(ctx, parent["metadata"]["namespace"], estimate)


async def follow_plain_job(ctx: OperatorContext, job: dict[str, Any]) -> None:
    """A released managed Job that finished gets its SCI as annotations, once."""
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    key = (WorkKind.JOB.value, meta["namespace"], meta["name"])
    outcome, _ = job_outcome(job)
    if labels.RELEASE_TIME not in annotations:
        return
    if outcome is None and annotations.get(labels.REASON) == Reason.CANCELLED.value:
        ctx.registry.untrack(key, str(meta["uid"]))  # suspended again by a cancel: not running
        return
    if outcome is None:
        ctx.registry.track(
            ReleasedWork(
                WorkKind.JOB,
                meta["namespace"],
                meta["name"],
                meta["uid"],
                ChildKind.PLAIN_JOB,
                meta["name"],
            )
        )
        adopt(ctx, job, WorkKind.JOB)
        return
    ctx.registry.untrack(key, str(meta["uid"]))
    if labels.SCI_GRAMS in annotations or annotations.get(labels.STATE) in (
        JobState.SUCCEEDED.value,
        JobState.FAILED.value,
    ):
        return
    state = JobState.SUCCEEDED if outcome == "Complete" else JobState.FAILED
    extra = {labels.STATE: state.value}
    pods = await job_pods(ctx, job)
    measurement, problem = await measured(
        ctx, f"{meta['namespace']}/{meta['name']}", lambda: measure_plain_job(ctx, job, pods)
    )
    segments = segments_of(job, plain_job=True)
    end = ctx.observed(optional_time(job.get("status", {}).get("completionTime")) or ctx.clock())
    if segments:  # interruptible: the last segment ends with the Job
        extra.update(segment_annotations(closed_at_end({"segments": segments}, end, None)))
    if measurement is not None:
        estimate = measurement.estimate
        if segments:
            earlier = [s for s in segments if s.get("end")]
            began = [ctx.observed(t) for pod in pods if (t := container_start(pod)) is not None]
            share = segment_share(estimate, measurement.run_mean)
            closed = closed_at_end({"segments": segments}, end, share, max(began, default=None))
            extra.update(segment_annotations(closed))
            estimate = summed_estimate(estimate, earlier, 1.0)
            measurement = dataclasses.replace(measurement, estimate=estimate)
        extra.update(sci_annotations(measurement))
        record_metrics(ctx, meta["namespace"], estimate)
    await annotate_run(ctx, job, pods if measurement else [], extra)
    sci = f", SCI {measurement.estimate.total_grams:.3g} g" if measurement else ""
    if problem:
        sci = f" (no SCI: {problem})"
    events.info(ctx.kube, job, reason=state.value, message=f"The Job is {state.value}{sci}.")


async def measure_plain_job(
    ctx: OperatorContext,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    *,
    counterfactual_start: datetime | None = None,
) -> Any:
    """The SCI of a plain Job's pods; ``avoided`` is against the same run started at
    ``counterfactual_start`` (default: the Job's creation)."""
    annotations = job["metadata"].get("annotations") or {}
    job_status = job.get("status", {})
    start = optional_time(job_status.get("startTime"))
    end = optional_time(job_status.get("completionTime")) or ctx.clock()
    return await measure_pods(
        ctx,
        pods,
        region=annotations.get(labels.REGION) or ctx.settings.default_region,
        created=counterfactual_start or ctx.created(job),
        functional_unit=FunctionalUnit(),
        fallback_window=(start, end) if start else None,
    )


@kopf.on.event("batch", "v1", "jobs", labels=CHILD)
async def child_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx = context_of(memo)
    job = dict(body)
    owner = owner_of(job)
    if owner is None:
        return
    key = job_key(str(job.get("metadata", {}).get("namespace")), owner[0])
    async with contained(ctx, key, None, "follow its Job"):
        await follow_child(ctx, job, deleted=event.get("type") == "DELETED")


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def plain_job_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    key = (WorkKind.JOB.value, str(meta.get("namespace")), str(meta.get("name")))
    state = (meta.get("annotations") or {}).get(labels.STATE)
    deleted = event.get("type") == "DELETED"
    ctx.registry.observe_state(key, None if deleted or not state else state)
    if deleted:  # kopf's deletion handlers never see an object without a finalizer go
        ctx.registry.object_deleted(key, str(meta.get("uid")))
        return
    async with contained(ctx, key, dict(body), "follow the Job"):
        await follow_plain_job(ctx, dict(body))


def released_work_of(body: dict[str, Any]) -> ReleasedWork | None:
    """The released, unfinished run a CarbonAwareJob's status describes, if any."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if not status.get("releaseTime") or status.get("completionTime"):
        return None
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    target = job_target(body)
    if status.get("jobName"):
        child_kind, child_name = ChildKind.JOB, str(status["jobName"])
    elif status.get("podName"):
        child_kind, child_name = ChildKind.RUNNER_POD, str(status["podName"])
    elif target is not None:
        child_kind, child_name = ChildKind.IN_PROCESS, name
    else:
        return None
    return ReleasedWork(WorkKind.CARBON_AWARE_JOB, namespace, name, str(meta.get("uid")),
                        child_kind, child_name, target)  # fmt: skip
