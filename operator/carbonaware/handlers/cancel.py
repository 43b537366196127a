"""``carbonaware.io/cancel``: end a job Failed (reason ``Cancelled``) and stop what runs.

- held: it is never released; a plain Job stays suspended;
- released: a CarbonAwareJob's child Job is deleted (with its pods, only if it is still
  the child owned by this job's UID); an SSH run is stopped on its server (its runner pod,
  if any, then sees the run end and exits); a managed plain Job is suspended again, which
  deletes its running pods and keeps the Job;
- finished: nothing changes (the annotation is history).

The status is written before the child is deleted, so the child's deletion event finds a
finished parent and does not record ``ChildDeleted``. Caller holds the object's lock.
Interruptible work has no pause/resume here: a cancel ends the run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import ConditionType, JobState, Reason, find_condition
from carbonaware.api.overrides import Overrides
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.inprocess import stop_run
from carbonaware.handlers.release import expected_child, owned_by
from carbonaware.handlers.state import ChildKind, Key, WorkKind
from carbonaware.handlers.tracking import released_work_of

logger = logging.getLogger(__name__)

FINISHED = (JobState.SUCCEEDED.value, JobState.FAILED.value)


def cancel_message(overrides: Overrides, stopped: str) -> str:
    return (
        f"Cancelled on request: annotation {labels.CANCEL} set by {overrides.cancel_by}{stopped}."
    )


def forget(ctx: OperatorContext, key: Key, uid: str) -> None:
    ctx.registry.forget(key)
    ctx.registry.remember_released(uid)
    ctx.registry.untrack(key, uid)
    ctx.registry.observe_state(key, JobState.FAILED.value)


def is_cancelled(status: dict[str, Any]) -> bool:
    failed = find_condition(status.get("conditions"), ConditionType.FAILED)
    return failed is not None and failed.get("reason") == Reason.CANCELLED.value


async def owned_child_job(ctx: OperatorContext, body: dict[str, Any]) -> dict[str, Any] | None:
    """The CarbonAwareJob's child Job, if it exists and is owned by this job's UID."""
    child = expected_child(body)
    if child is None or child.kind is not ChildKind.JOB:
        return None
    meta = body["metadata"]
    existing = await ctx.kube.get_job(meta["namespace"], child.name)
    return existing if existing is not None and owned_by(existing, str(meta["uid"])) else None


async def delete_child(ctx: OperatorContext, job: dict[str, Any]) -> None:
    meta = job["metadata"]
    await ctx.kube.delete_job(meta["namespace"], meta["name"], meta["uid"])


async def cancel_carbonawarejob(
    ctx: OperatorContext, body: dict[str, Any], overrides: Overrides
) -> None:
    """Cancel a CarbonAwareJob, read again first: the loop may have released it meanwhile."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], str(meta["uid"])
    key = (WorkKind.CARBON_AWARE_JOB.value, namespace, name)
    fresh = await ctx.kube.get_object(PLURAL, namespace, name)
    if fresh is None or fresh["metadata"].get("uid") != uid:
        return
    status = fresh.get("status") or {}
    existing = await owned_child_job(ctx, fresh)
    if status.get("completionTime") or status.get("state") in FINISHED:
        ctx.registry.forget(key)
        if existing is not None and is_cancelled(status):
            # Recorded, but the delete did not happen (refused, or the operator stopped).
            await delete_child(ctx, existing)
        return
    stopped = f"; Job {existing['metadata']['name']} and its pods are deleted" if existing else ""
    ssh_run = released_work_of(fresh)
    stop_ssh = ssh_run is not None and ssh_run.target is not None
    if stop_ssh:
        stopped = "; the SSH run is stopped on its server"
    message = cancel_message(overrides, stopped)
    doc = status_docs.cancelled(
        status.get("conditions") or [],
        message=message,
        now=ctx.clock(),
        generation=fresh["metadata"].get("generation"),
    )
    await ctx.kube.patch_status(PLURAL, namespace, name, doc)
    forget(ctx, key, uid)
    if existing is not None:
        await ctx.kube.delete_job(
            namespace, existing["metadata"]["name"], existing["metadata"]["uid"]
        )
    if stop_ssh:
        task = asyncio.create_task(stop_run(ctx, key, uid, fresh))
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
    events.info(ctx.kube, fresh, reason=Reason.CANCELLED.value, message=message)
    logger.info("cancelled CarbonAwareJob %s/%s (by %s)", namespace, name, overrides.cancel_by)


async def cancel_plain_job(
    ctx: OperatorContext, body: dict[str, Any], overrides: Overrides
) -> None:
    """Cancel a managed plain Job: marked Failed/Cancelled, suspended (again) if it runs."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], str(meta["uid"])
    key = (WorkKind.JOB.value, namespace, name)
    fresh = await ctx.kube.get_job(namespace, name)
    if fresh is None or fresh["metadata"].get("uid") != uid:
        return
    annotations = fresh["metadata"].get("annotations") or {}
    finished = any(
        c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
        for c in (fresh.get("status") or {}).get("conditions") or []
    )
    if finished or annotations.get(labels.STATE) in FINISHED:
        forget(ctx, key, uid)
        return
    running = not (fresh.get("spec") or {}).get("suspend")
    stopped = "; the Job is suspended again and its pods are deleted" if running else ""
    message = cancel_message(overrides, stopped)
    patch: dict[str, Any] = {
        "metadata": {"annotations": status_docs.plain_job_cancelled_annotations()}
    }
    if running:
        patch["spec"] = {"suspend": True}
    await ctx.kube.patch_job(namespace, name, patch)
    forget(ctx, key, uid)
    events.info(ctx.kube, fresh, reason=Reason.CANCELLED.value, message=message)
    logger.info("cancelled Job %s/%s (by %s)", namespace, name, overrides.cancel_by)
