"""Following SSH-runner pods: slots per ServerTarget, start time, outcome, re-attaching.

A runner pod belongs to the CarbonAwareJob whose UID its owner reference and its
``carbonaware.io/job-uid`` label carry, never to whatever object now has that name. A pod
that disappears before it reported (deleted, evicted, its node lost) does not fail the job:
the run on the server is still going or has ended, so a new runner pod with the same run id
is created, attaches to it and reports its outcome; the slot stays taken meanwhile.
"""

from __future__ import annotations

from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import CarbonAwareJobSpec
from carbonaware.api.conditions import Reason, format_time
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.handlers import events
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.sshjobs import runner_pod_manifest, ssh_inputs
from carbonaware.handlers.sshoutcome import (
    finish_ssh_run,
    interrupted,
    job_key,
    parent_of,
    pod_result,
    record_release_from_pod,
    record_started,
)
from carbonaware.handlers.state import HeldWork
from carbonaware.handlers.work import parse_spec, work_from_carbonawarejob
from carbonaware.runners.sshpod import COMPONENT, COMPONENT_LABEL, ssh_runner_pod_name

RUNNER_PODS: dict[str, Any] = {
    COMPONENT_LABEL: COMPONENT,
    labels.JOB_UID: kopf.PRESENT,
}
REATTACH_LIMIT = 5


def owner_of(meta: dict[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the CarbonAwareJob that owns this pod, if the label agrees."""
    uid = (meta.get("labels") or {}).get(labels.JOB_UID)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "CarbonAwareJob" and ref.get("uid") == uid:
            return str(ref["name"]), str(uid)
    return None


def gated(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("schedulingGates"))


async def follow_runner_pod(ctx: OperatorContext, pod: dict[str, Any], *, deleted: bool) -> None:
    meta = pod.get("metadata") or {}
    owner = owner_of(meta)
    target_name = (meta.get("labels") or {}).get(labels.TARGET_NAME)
    if owner is None or target_name is None:
        return
    namespace = str(meta.get("namespace"))
    parent_name, uid = owner
    key = job_key(namespace, parent_name)
    target = (namespace, str(target_name))
    phase = str((pod.get("status") or {}).get("phase") or "Pending")
    if phase in ("Succeeded", "Failed") and interrupted(pod):
        if deleted:
            await runner_pod_gone(ctx, parent_name, uid, target)
        else:
            ctx.registry.mark_running(target, key)  # attach again once it is gone
        return
    if phase in ("Succeeded", "Failed"):
        ctx.registry.mark_finished(target, key)
        await record_release_from_pod(ctx, namespace, parent_name, uid, pod)
        summary, failure = pod_result(pod, phase)
        await finish_ssh_run(ctx, namespace, parent_name, uid, summary=summary, failure=failure)
    elif deleted:
        await runner_pod_gone(ctx, parent_name, uid, target)
    else:
        ctx.registry.mark_running(target, key)
        await record_release_from_pod(ctx, namespace, parent_name, uid, pod)
        if phase == "Running" and not gated(pod):
            started = (pod.get("status") or {}).get("startTime") or format_time(ctx.clock())
            await record_started(ctx, namespace, parent_name, uid, str(started))


async def runner_pod_gone(
    ctx: OperatorContext,
    parent_name: str,
    uid: str,
    target: tuple[str, str],
) -> None:
    """A runner pod vanished without a result: attach a new one to the same run."""
    namespace = target[0]
    key = job_key(namespace, parent_name)
    async with ctx.registry.lock(key):
        parent = await parent_of(ctx, namespace, parent_name, uid)
        status = (parent or {}).get("status") or {}
        deleting = bool((parent or {}).get("metadata", {}).get("deletionTimestamp"))
        if parent is None or deleting or status.get("completionTime"):
            ctx.registry.mark_finished(target, key)
            ctx.registry.untrack(key, uid)
            return
        if not status.get("releaseTime"):
            ctx.registry.mark_finished(target, key)  # a held-back pod: the release redoes it
            return
        attempts = ctx.reattachments.get(key, 0) + 1
        if attempts <= REATTACH_LIMIT:
            await reattach(ctx, parent, target, attempts)
            return
    ctx.registry.mark_finished(target, key)
    failure = (
        Reason.CHILD_DELETED,
        f"The runner pod was deleted {attempts} times before it reported; the run on "
        "the server keeps its lease and its own timeout, but is no longer followed.",
    )
    await finish_ssh_run(ctx, namespace, parent_name, uid, summary=None, failure=failure)


async def reattach(
    ctx: OperatorContext, parent: dict[str, Any], target: tuple[str, str], attempts: int
) -> None:
    """Attach a new runner pod to the run of ``parent``, unless one is there. Caller holds
    the object's lock."""
    meta, status = parent["metadata"], parent.get("status") or {}
    namespace, parent_name, uid = meta["namespace"], meta["name"], meta["uid"]
    key = job_key(namespace, parent_name)
    current = await ctx.kube.get_pod(namespace, ssh_runner_pod_name(parent_name))
    if current is not None and owner_of(current.get("metadata") or {}) == (parent_name, uid):
        # Already attached again (an event and the reconcile both saw the old pod go), or
        # the old pod is still terminating: its own events decide.
        ctx.registry.mark_running(target, key)
        return
    spec = parse_spec(parent.get("spec") or {})
    target_spec, _ = await ssh_inputs(ctx, target)
    work = work_from_carbonawarejob(
        parent, spec, region=str(status.get("region") or ""), created=ctx.created(parent)
    )
    await create_reattach_pod(ctx, work, spec, target_spec, parent)
    ctx.reattachments[key] = attempts


async def create_reattach_pod(
    ctx: OperatorContext,
    work: HeldWork,
    spec: CarbonAwareJobSpec,
    target_spec: ServerTargetSpec,
    parent: dict[str, Any],
) -> None:
    pod = runner_pod_manifest(ctx, work, spec, target_spec)
    events.adopt(pod, parent)
    await ctx.kube.create_pod(work.namespace, pod)
    assert work.target is not None
    ctx.registry.mark_running(work.target, work.key)
    events.info(
        ctx.kube,
        parent,
        reason="Reattached",
        message=f"The runner pod was gone before it reported; {pod['metadata']['name']} "
        "attaches to the same run on the server (it is never started twice).",
    )


@kopf.on.event("", "v1", "pods", labels=RUNNER_PODS)
async def runner_pod_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Follow a runner pod: running counts per target, start time, outcome from its message."""
    ctx = context_of(memo)
    pod = dict(body)
    meta = pod.get("metadata") or {}
    owner = owner_of(meta)
    if owner is None:
        return
    key = job_key(str(meta.get("namespace")), owner[0])
    async with contained(ctx, key, None, "follow its runner pod"):
        await follow_runner_pod(ctx, pod, deleted=event.get("type") == "DELETED")
