"""Releasing held work: fix the spec, create the child from it, record the release.

A CarbonAwareJob is released in three steps, so the child is always made from the spec the
release is recorded for, and a replay after a restart never makes a second one:

1. Read the object again: if it was edited since it was planned (a new generation), plan
   again with the edit instead; if it was deleted or released meanwhile, stop. Then write
   ``status.releaseDecidedTime`` with the resourceVersion just read as a precondition: from
   then on the CRD refuses spec edits, and an edit that landed in between makes the write
   fail (409), so the job is planned again with it.
2. Create the child from that spec: its name is derived from the parent, so creation is
   create-if-absent, and a 409 is success only for a child owned by this parent's UID. A
   refused create is recorded on the job, which stays held with its spec editable again
   (``releaseDecidedTime`` removed), and is retried (``handlers.refusal``).
3. Write ``status.releaseTime`` (when the child was created), then start an in-process run.

If the operator dies after step 1, the next plan finds the mark: with no child, it plans
afresh; with a child, the child's own event records the release (``handlers.tracking``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL, CarbonAwareJobSpec
from carbonaware.api.conditions import Reason, format_time
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.errors import KubernetesError, SpecError, TargetError
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.containment import describe, fail_object
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.inprocess import start_in_process
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.refusal import backing_off, is_refusal, refused
from carbonaware.handlers.segmentdocs import opened, segment_annotations
from carbonaware.handlers.sshjobs import (
    IN_PROCESS,
    TargetMissingError,
    runner_pod_manifest,
    ssh_inputs,
)
from carbonaware.handlers.state import ChildKind, HeldWork, ReleasedWork, WorkKind
from carbonaware.handlers.work import optional_time, parse_spec, work_from_carbonawarejob
from carbonaware.k8s import CONFLICT
from carbonaware.runners.jobs import build_job, child_name
from carbonaware.runners.sshpod import ssh_runner_pod_name
from carbonaware.scheduling.policy import Decision

logger = logging.getLogger(__name__)

DECIDE_ATTEMPTS = 3


@dataclass(frozen=True)
class Child:
    kind: ChildKind
    name: str


def owned_by(child: dict[str, Any], uid: str) -> bool:
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


async def release_decided(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    *,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> bool:
    """Release ``work`` as ``decision`` says, if its ServerTarget has a free slot (always,
    for in-cluster Jobs) and no refused create is backing off; False, and nothing done,
    otherwise. The slot is claimed before the first await (:meth:`Registry.reserve`).
    Caller holds the object's lock."""
    if backing_off(work) or not ctx.registry.reserve(work.target, work.key):
        return False
    try:
        await release(ctx, work, decision, snapshot=snapshot, now=now)
    finally:
        ctx.registry.unreserve(work.target, work.key)
    return True


async def release(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    *,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> None:
    """Start ``work`` and record the release. Caller holds the object's lock."""
    if work.kind is WorkKind.JOB:
        await release_plain_job(ctx, work, decision, snapshot=snapshot)
        return
    fresh = await current_body(ctx, work)
    if fresh is None:
        return
    spec = parse_spec(fresh.get("spec") or {})
    if work.selector is not None and work.target is None:
        await fail_object(
            ctx, work.key, fresh, reason=Reason.NO_TARGET_AVAILABLE, now=ctx.clock(),
            message=(
                f"No ServerTarget selected by spec.ssh.targetSelector ({work.selector.text()}) "
                "was known and reachable by the latest start; label a reachable ServerTarget "
                "to match, or create the job again."
            ),
        )  # fmt: skip
        return
    try:
        inputs = await ssh_inputs(ctx, work.target) if work.target is not None else None
    except (TargetMissingError, TargetError) as exc:
        await fail_object(
            ctx, work.key, fresh, reason=unusable_target(exc), message=str(exc), now=ctx.clock()
        )
        return
    fresh = await fix_spec(ctx, work, fresh)
    if fresh is None:
        return
    released_at = ctx.clock()
    facts = release_facts(work, decision, snapshot, fresh, released_at)
    try:
        child = await create_child(ctx, work, fresh, spec, inputs, facts)
    except KubernetesError as exc:
        if not is_refusal(exc):
            raise
        what = "the runner pod" if work.target is not None else "the Job"
        await refused(
            ctx, work, exc, what=what, decision=decision, snapshot=snapshot, now=ctx.clock()
        )
        return
    if child is not None and child.kind is ChildKind.RUNNER_POD and work.target is not None:
        ctx.registry.mark_running(work.target, work.key)  # the run holds the slot from now
    doc = released_status(work, fresh, child, decision, snapshot, released_at)
    await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
    if child is None and work.target is not None and inputs is not None:
        start_in_process(ctx, work.key, work.uid, work.target, spec, *inputs)
    record_release(ctx, work, decision, released_at, child)


def unusable_target(error: SpecError | TargetError) -> Reason:
    """The condition reason for an SSH job whose target or key cannot be used."""
    if isinstance(error, SpecError):
        return Reason.TARGET_NOT_FOUND
    try:
        return Reason(error.reason)
    except ValueError:
        return Reason.SECRET_NOT_FOUND


async def current_body(ctx: OperatorContext, work: HeldWork) -> dict[str, Any] | None:
    """The object as it is now, if it is still this held job; else None (and the index is
    brought up to date: gone, already released, or edited since it was planned)."""
    fresh = await ctx.kube.get_object(PLURAL, work.namespace, work.name)
    if fresh is None or fresh["metadata"].get("uid") != work.uid:
        ctx.registry.forget(work.key)
        return None
    if (fresh.get("status") or {}).get("releaseTime"):
        ctx.registry.forget(work.key)
        ctx.registry.remember_released(work.uid)
        return None
    if fresh["metadata"].get("generation") != work.generation:
        replan(ctx, work, fresh)
        return None
    return fresh


def replan(ctx: OperatorContext, work: HeldWork, fresh: dict[str, Any]) -> None:
    """The spec changed since ``work`` was planned: hold the new spec (the next tick decides)."""
    spec = parse_spec(fresh.get("spec") or {})
    updated = work_from_carbonawarejob(fresh, spec, region=work.region, created=work.created)
    ctx.registry.hold(updated)
    logger.info("%s/%s changed while due; planning it again", work.namespace, work.name)


async def fix_spec(
    ctx: OperatorContext, work: HeldWork, fresh: dict[str, Any]
) -> dict[str, Any] | None:
    """Mark the release decided, based on exactly the object read: from then on the spec
    cannot change. The object as written, or None if it changed meanwhile (planned again)."""
    for _ in range(DECIDE_ATTEMPTS):
        try:
            written = await ctx.kube.patch_status(
                PLURAL, work.namespace, work.name,
                {"releaseDecidedTime": format_time(ctx.clock())},
                resource_version=fresh["metadata"].get("resourceVersion"),
            )  # fmt: skip
            return written
        except KubernetesError as exc:
            if exc.status != CONFLICT:
                raise
        again = await current_body(ctx, work)  # forgets or re-plans when it really changed
        if again is None:
            return None
        fresh = again  # only metadata moved (e.g. kopf's own annotations): try again
    raise KubernetesError(f"the release of {work.namespace}/{work.name} kept conflicting")


def release_facts(
    work: HeldWork,
    decision: Decision,
    snapshot: RegionSnapshot | None,
    fresh: dict[str, Any],
    released_at: datetime,
) -> dict[str, str]:
    """Annotations on the child: why and when it was released, so that a release the
    operator could not record before it stopped is recorded from the child."""
    facts = {
        labels.REASON: decision.reason.value,
        labels.RELEASE_TIME: format_time(released_at),
        labels.LATEST_START_TIME: format_time(work.latest_start),
        labels.PARENT_GENERATION: str(fresh["metadata"].get("generation")),
        labels.REGION: work.region,
    }
    if snapshot and snapshot.current:
        facts[labels.INTENSITY_AT_RELEASE] = f"{snapshot.current.intensity:g}"
    return facts


async def create_child(
    ctx: OperatorContext,
    work: HeldWork,
    fresh: dict[str, Any],
    spec: CarbonAwareJobSpec,
    inputs: tuple[ServerTargetSpec, bytes] | None,
    facts: dict[str, str],
) -> Child | None:
    """The Job or runner pod (None for an in-process SSH run, which has none)."""
    if work.target is None:
        try:
            manifest = build_job(
                name=work.name,
                namespace=work.namespace,
                parent_uid=work.uid,
                template=fresh["spec"]["jobTemplate"],
                annotations=facts,
            )
            if work.node_selector:  # the region chosen among spec.placement.regions
                pod = manifest["spec"]["template"].setdefault("spec", {})
                pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **work.node_selector}
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            raise SpecError(f"spec.jobTemplate cannot be made into a Job: {describe(exc)}") from exc
        return await create_if_absent(ctx, work, fresh, manifest, ChildKind.JOB)
    if ctx.settings.ssh_mode == IN_PROCESS or inputs is None:
        return None
    pod = runner_pod_manifest(ctx, work, spec, inputs[0])
    pod["metadata"].setdefault("annotations", {}).update(facts)
    return await create_if_absent(ctx, work, fresh, pod, ChildKind.RUNNER_POD)


async def create_if_absent(
    ctx: OperatorContext,
    work: HeldWork,
    fresh: dict[str, Any],
    manifest: dict[str, Any],
    kind: ChildKind,
) -> Child:
    """Create the child; a 409 is success only for a child owned by this parent's UID."""
    events.adopt(manifest, fresh)
    name = str(manifest["metadata"]["name"])
    is_job = kind is ChildKind.JOB
    try:
        await (ctx.kube.create_job if is_job else ctx.kube.create_pod)(work.namespace, manifest)
        return Child(kind, name)
    except KubernetesError as exc:
        if exc.status != CONFLICT:
            raise
    existing = await (ctx.kube.get_job if is_job else ctx.kube.get_pod)(work.namespace, name)
    if existing is None:
        raise KubernetesError(f"{kind.value} {name} is being deleted; retrying next tick")
    if not owned_by(existing, work.uid):
        raise KubernetesError(
            f"a {'Job' if is_job else 'Pod'} named {name} already exists in {work.namespace} "
            f"and does not belong to CarbonAwareJob {work.name}; delete or rename it",
            status=CONFLICT,
        )
    return Child(kind, name)


def expected_child(body: dict[str, Any]) -> Child | None:
    """The child a CarbonAwareJob's release creates (None for in-process SSH runs)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    if spec.get("jobTemplate") is not None:
        return Child(ChildKind.JOB, child_name(str(meta.get("name"))))
    return Child(ChildKind.RUNNER_POD, ssh_runner_pod_name(str(meta.get("name"))))


async def child_exists(ctx: OperatorContext, body: dict[str, Any]) -> bool:
    """Whether the release of ``body`` already created its child (owned by its UID)."""
    child = expected_child(body)
    if child is None:
        return False
    meta = body["metadata"]
    getter = ctx.kube.get_job if child.kind is ChildKind.JOB else ctx.kube.get_pod
    existing = await getter(meta["namespace"], child.name)
    return existing is not None and owned_by(existing, str(meta["uid"]))


def released_status(
    work: HeldWork,
    fresh: dict[str, Any],
    child: Child | None,
    decision: Decision,
    snapshot: RegionSnapshot | None,
    released_at: datetime,
) -> dict[str, Any]:
    body_status = fresh.get("status") or {}
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    at_creation = (body_status.get("intensity") or {}).get("atCreation", current)
    doc = status_docs.released(
        body_status.get("conditions") or [],
        reason=decision.reason,
        message=release_message(work, decision),
        now=released_at,
        generation=fresh["metadata"].get("generation"),
        region=work.region,
        latest_start=work.latest_start,
        latest_start_bound=work.latest_start_bound,
        current=current,
        source=snapshot.source if snapshot else None,
        at_creation=at_creation,
        job_name=child.name if child and child.kind is ChildKind.JOB else None,
        pod_name=child.name if child and child.kind is ChildKind.RUNNER_POD else None,
    )
    if work.placed:
        doc["placement"] = work.placement
    if work.interruptible is not None:
        doc.update(opened(doc, released_at, decision.reason, release_message(work, decision)))
    return doc


def release_message(work: HeldWork, decision: Decision) -> str:
    """The policy's sentence, and for a job with places, why this one."""
    if not work.placed:
        return decision.message
    return decision.message + status_docs.placement_message(work.placement)


def record_release(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    released_at: datetime,
    child: Child | None,
) -> None:
    """Bookkeeping once a release is recorded: the index, metrics, an Event, the log."""
    ctx.registry.forget(work.key)
    ctx.registry.remember_released(work.uid)
    if work.kind is WorkKind.JOB:
        child_kind, child_name = ChildKind.PLAIN_JOB, work.name
    elif child is None:
        child_kind, child_name = ChildKind.IN_PROCESS, work.name
    else:
        child_kind, child_name = child.kind, child.name
    ctx.registry.track(
        ReleasedWork(
            work.kind, work.namespace, work.name, work.uid, child_kind, child_name, work.target
        )
    )
    lateness = max((released_at - work.latest_start).total_seconds(), 0.0)
    ctx.metrics.releases.labels(work.namespace, decision.reason.value).inc()
    ctx.metrics.release_lateness.labels(work.namespace).observe(lateness)
    late = ctx.metrics.late_releases.labels(work.namespace)  # at 0 from the first release
    if lateness > 0:
        late.inc()
    ctx.metrics.hold_duration.labels(work.namespace, work.policy.value).observe(
        max((released_at - work.created).total_seconds(), 0.0)
    )
    annotations = work.body.get("metadata", {}).get("annotations") or {}
    if (nominal := optional_time(annotations.get(labels.NOMINAL_TIME))) is not None:
        offset = (released_at - nominal).total_seconds()
        direction = "before" if offset < 0 else "after"
        ctx.metrics.cron_start_offset.labels(work.namespace, direction).observe(abs(offset))
    message = f"{decision.reason.value}: {release_message(work, decision)}"
    events.info(ctx.kube, work.body, reason="Released", message=message)
    logger.info("released %s %s/%s: %s", work.kind.value, work.namespace, work.name,
                decision.reason.value)  # fmt: skip


async def release_plain_job(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    *,
    snapshot: RegionSnapshot | None,
) -> None:
    """Unsuspend a managed plain Job and record the facts in its annotations."""
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    annotations = work.body.get("metadata", {}).get("annotations") or {}
    at_creation = annotations.get(labels.INTENSITY_AT_CREATION) or (
        f"{current:g}" if current is not None else None
    )
    released_at = ctx.clock()
    doc = status_docs.released(
        [],
        reason=decision.reason,
        message=decision.message,
        now=released_at,
        generation=None,
        region=work.region,
        latest_start=work.latest_start,
        latest_start_bound=work.latest_start_bound,
        current=current,
        source=snapshot.source if snapshot else None,
        at_creation=float(at_creation) if at_creation else None,
    )
    annotations = status_docs.plain_job_annotations(doc, reason=decision.reason)
    if work.interruptible is not None:
        annotations.update(segment_annotations(opened(doc, released_at, decision.reason, "")))
    patch = {"metadata": {"annotations": annotations}, "spec": {"suspend": False}}
    await ctx.kube.patch_job(work.namespace, work.name, patch)
    record_release(ctx, work, decision, released_at, None)
