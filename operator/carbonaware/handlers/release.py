"""Releasing held work: create the child (or unsuspend the plain Job), then record it.

Idempotent by construction: the child's name is derived from the parent, creation is
create-if-absent (a 409 means "look at the existing one"), and the status is written after
the child exists. If the operator dies in between, the next tick (or the child's own watch
event) finds the child and records the release; a second child is never created.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import Reason, format_time
from carbonaware.errors import KubernetesError, SpecError, TargetError
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.sshjobs import TargetMissingError, start_ssh_run
from carbonaware.handlers.state import HeldWork, WorkKind
from carbonaware.k8s import BAD_REQUEST, CONFLICT, UNPROCESSABLE
from carbonaware.runners.jobs import build_job, child_name
from carbonaware.scheduling.policy import Decision

logger = logging.getLogger(__name__)


def owned_by(child: dict[str, Any], uid: str) -> bool:
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


async def create_child_job(ctx: OperatorContext, work: HeldWork, facts: dict[str, str]) -> str:
    """Create the Job from the template; return its name. Safe to call again.

    ``facts`` (release time, reason, intensity) go on the Job as annotations, so a release
    the operator could not record before dying can be recorded from the Job later.
    """
    spec = work.body.get("spec", {})
    manifest = build_job(
        name=work.name,
        namespace=work.namespace,
        parent_uid=work.uid,
        template=spec["jobTemplate"],
        annotations=facts,
    )
    events.adopt(manifest, work.body)
    name = str(manifest["metadata"]["name"])
    try:
        await ctx.kube.create_job(work.namespace, manifest)
    except KubernetesError as exc:
        if exc.status in (BAD_REQUEST, UNPROCESSABLE):
            # The Job API refused the template: retrying cannot help; the user must fix it.
            raise SpecError(f"the Job API refused spec.jobTemplate: {exc}") from exc
        if exc.status != CONFLICT:
            raise
        existing = await ctx.kube.get_job(work.namespace, name)
        if existing is None or not owned_by(existing, work.uid):
            raise KubernetesError(
                f"a Job named {name} already exists in {work.namespace} and does not belong "
                f"to CarbonAwareJob {work.name}; delete or rename it",
                status=CONFLICT,
            ) from exc
    return name


async def release_decided(
    ctx: OperatorContext,
    work: HeldWork,
    decision: Decision,
    *,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> bool:
    """Release ``work`` as ``decision`` says, if its ServerTarget has a free slot (always,
    for in-cluster Jobs); False, and nothing done, when it has none. The slot is claimed
    before the first await (:meth:`Registry.reserve`). Caller holds the object's lock."""
    if not ctx.registry.reserve(work.target, work.key):
        return False
    try:
        await release(
            ctx, work, reason=decision.reason, message=decision.message, snapshot=snapshot, now=now
        )
    finally:
        ctx.registry.unreserve(work.target, work.key)
    return True


async def release(
    ctx: OperatorContext,
    work: HeldWork,
    *,
    reason: Reason,
    message: str,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> None:
    """Start ``work`` and record the release. Caller holds the object's lock."""
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    source = snapshot.source if snapshot else None
    body_status = work.body.get("status") or {}
    # Released at first sight (Immediate, or already due): creation is now.
    at_creation = (body_status.get("intensity") or {}).get("atCreation", current)
    generation = work.body.get("metadata", {}).get("generation")
    job_name: str | None = None
    pod_name: str | None = None
    if work.kind is WorkKind.JOB:
        await release_plain_job(
            ctx, work, reason=reason, message=message, snapshot=snapshot, now=now
        )
    elif work.target is None:
        facts = {
            labels.REASON: reason.value,
            labels.RELEASE_TIME: format_time(now),
            labels.LATEST_START_TIME: format_time(work.latest_start),
        }
        if current is not None:
            facts[labels.INTENSITY_AT_RELEASE] = f"{current:g}"
        try:
            job_name = await create_child_job(ctx, work, facts)
        except SpecError as exc:
            await fail_release(ctx, work, exc, now)
            return
    else:
        try:
            pod_name = await start_ssh_run(ctx, work, now=now)
        except (TargetMissingError, TargetError) as exc:
            await fail_release(ctx, work, exc, now)
            return
    if work.kind is WorkKind.CARBON_AWARE_JOB:
        doc = status_docs.released(
            body_status.get("conditions") or [],
            reason=reason,
            message=message,
            now=now,
            generation=generation,
            region=work.region,
            latest_start=work.latest_start,
            current=current,
            source=source,
            at_creation=at_creation,
            job_name=job_name,
            pod_name=pod_name,
        )
        await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
    ctx.registry.forget(work.key)
    ctx.registry.remember_released(work.uid)
    ctx.metrics.releases.labels(work.namespace, reason.value).inc()
    ctx.metrics.hold_duration.labels(work.namespace, work.policy.value).observe(
        max((now - work.created).total_seconds(), 0.0)
    )
    events.info(ctx.kube, work.body, reason="Released", message=f"{reason.value}: {message}")
    logger.info("released %s %s/%s: %s", work.kind.value, work.namespace, work.name, reason.value)


async def fail_release(
    ctx: OperatorContext, work: HeldWork, error: SpecError | TargetError, now: datetime
) -> None:
    """The job cannot start at all (no such ServerTarget, no key, a template the Job API
    refuses): end it Failed, once, with a reason the user can act on."""
    if isinstance(error, TargetMissingError):
        reason = Reason.TARGET_NOT_FOUND
    elif isinstance(error, SpecError):
        reason = Reason.INVALID_SPEC
    else:
        reason = Reason.SECRET_NOT_FOUND
    doc = status_docs.failed(
        (work.body.get("status") or {}).get("conditions") or [],
        reason=reason,
        message=str(error),
        now=now,
        generation=work.body.get("metadata", {}).get("generation"),
    )
    await ctx.kube.patch_status(PLURAL, work.namespace, work.name, doc)
    ctx.registry.forget(work.key)
    ctx.registry.remember_released(work.uid)
    events.warn(ctx.kube, work.body, reason=reason.value, message=str(error))


async def release_plain_job(
    ctx: OperatorContext,
    work: HeldWork,
    *,
    reason: Reason,
    message: str,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> None:
    """Unsuspend a managed plain Job and record the facts in its annotations."""
    current = snapshot.current.intensity if snapshot and snapshot.current else None
    annotations = work.body.get("metadata", {}).get("annotations") or {}
    at_creation = annotations.get(labels.INTENSITY_AT_CREATION) or (
        f"{current:g}" if current is not None else None
    )
    doc = status_docs.released(
        [],
        reason=reason,
        message=message,
        now=now,
        generation=None,
        region=work.region,
        latest_start=work.latest_start,
        current=current,
        source=snapshot.source if snapshot else None,
        at_creation=float(at_creation) if at_creation else None,
    )
    patch = {
        "metadata": {"annotations": status_docs.plain_job_annotations(doc, reason=reason)},
        "spec": {"suspend": False},
    }
    await ctx.kube.patch_job(work.namespace, work.name, patch)


def child_job_name(work: HeldWork) -> str:
    return child_name(work.name)
