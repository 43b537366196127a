"""Level-triggered follow-up of released work: events are hints, this pass is the truth.

Outcomes normally arrive as watch events of child Jobs and runner pods. kopf does not retry
those, an operator restart loses the ones sent while it was down, and a deleted child sends
one event that can be missed. So every ``reconcile_seconds`` the loop lists the operator's
Jobs and runner pods once (one call each, whatever the number of jobs) and, for every released
job not finished yet, looks at its child: finished, still running, never let go, or gone
(``RECONCILE_CONCURRENCY`` jobs at a time, in a task beside the ticks).

Before the first release after a start, :func:`initial_sync` counts runs already going
against their ServerTargets' ``maxConcurrent``, so a restart never over-commits a server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.inprocess import following, reattach
from carbonaware.handlers.runnerpods import follow_runner_pod, owner_of, runner_pod_gone
from carbonaware.handlers.segmented import adopt
from carbonaware.handlers.sshjobs import IN_PROCESS
from carbonaware.handlers.sshoutcome import job_key, parent_of
from carbonaware.handlers.state import ChildKind, ReleasedWork
from carbonaware.handlers.tracking import (
    child_deleted,
    follow_child,
    follow_plain_job,
    released_work_of,
)
from carbonaware.handlers.tracking import owner_of as job_owner_of
from carbonaware.runners.sshpod import COMPONENT, COMPONENT_LABEL

logger = logging.getLogger(__name__)

JOB_SELECTOR = labels.MANAGED  # child Jobs ("child") and managed plain Jobs ("true")
POD_SELECTOR = f"{COMPONENT_LABEL}={COMPONENT}"
# Released jobs followed up at once in a pass: each holds its lock for a few API calls and,
# for a run that ended, its measurement (the client has 16 threads).
RECONCILE_CONCURRENCY = 8

Index = dict[tuple[str, str], dict[str, Any]]


def by_name(items: list[dict[str, Any]]) -> Index:
    return {(item["metadata"]["namespace"], item["metadata"]["name"]): item for item in items}


async def initial_sync(ctx: OperatorContext) -> None:
    """Count running SSH runs against their targets and index released work (two lists)."""
    namespace = ctx.settings.namespace
    pods = await ctx.kube.list_all_pods(namespace, POD_SELECTOR)
    for pod in pods:
        meta = pod["metadata"]
        owner = owner_of(meta)
        target = (meta.get("labels") or {}).get(labels.TARGET_NAME)
        phase = (pod.get("status") or {}).get("phase")
        if owner is not None and target and phase not in ("Succeeded", "Failed"):
            key = job_key(meta["namespace"], owner[0])
            ctx.registry.mark_running((meta["namespace"], str(target)), key)
    for body in await ctx.kube.list_objects(PLURAL, namespace):
        released = released_work_of(body)
        if released is None:
            continue
        ctx.registry.track(released)
        adopt(ctx, body)
        if released.target is not None and released.child_kind is not ChildKind.JOB:
            ctx.registry.mark_running(released.target, released.key)
    ctx.synced = True
    logger.info(
        "%d SSH runner pod(s) and %d released job(s) found at start-up",
        len(pods),
        len(ctx.registry.tracked()),
    )


async def reconcile_released(ctx: OperatorContext) -> None:
    """Check every released, unfinished job against the children that exist."""
    tracked = ctx.registry.tracked()
    if not tracked:
        return
    kinds = {work.child_kind for work in tracked}
    namespace = ctx.settings.namespace
    jobs: Index = {}
    pods: Index = {}
    if kinds & {ChildKind.JOB, ChildKind.PLAIN_JOB}:
        jobs = by_name(await ctx.kube.list_jobs(namespace, JOB_SELECTOR))
    if ChildKind.RUNNER_POD in kinds and ctx.settings.ssh_mode != IN_PROCESS:
        pods = by_name(await ctx.kube.list_all_pods(namespace, POD_SELECTOR))
    gate = asyncio.Semaphore(RECONCILE_CONCURRENCY)

    async def one(work: ReleasedWork) -> None:
        async with gate, contained(ctx, work.key, None, "follow its run"):
            await reconcile_one(ctx, work, jobs, pods)

    await asyncio.gather(*(one(work) for work in tracked))


async def reconcile_beside_ticks(ctx: OperatorContext) -> None:
    """One :func:`reconcile_released` pass, run beside the refresh loop rather than in a tick:
    after a restart it can find hundreds of runs that ended meanwhile and measure each (API
    reads, provider fetches), which took minutes on a loaded host, and held jobs are not to
    wait for that. A failed pass is logged; the next one retries. Its wall time is the
    histogram ``carbonaware_reconcile_duration_seconds``; a pass longer than the interval
    between passes is logged (the next one waits for it)."""
    started, checked = time.perf_counter(), len(ctx.registry.tracked())
    try:
        await reconcile_released(ctx)
    except CarbonAwareError as exc:
        logger.warning("checking released work against its children failed: %s", exc)
    except Exception:
        logger.exception("checking released work against its children failed")
    took = time.perf_counter() - started  # a pass cancelled with the loop is not counted
    ctx.metrics.reconcile_duration.observe(took)
    if took > ctx.settings.reconcile_seconds:
        logger.warning(
            "checking %d released job(s) against their children took %.1f s, longer than the "
            "%.1f s between checks; the next check starts when this one has ended",
            checked, took, ctx.settings.reconcile_seconds,
        )  # fmt: skip


async def reconcile_one(ctx: OperatorContext, work: ReleasedWork, jobs: Index, pods: Index) -> None:
    where = (work.namespace, work.child_name)
    if work.child_kind is ChildKind.PLAIN_JOB:
        job = jobs.get(where)
        if job is None or job["metadata"].get("uid") != work.uid:
            ctx.registry.untrack(work.key, work.uid)  # the user deleted their Job
        else:
            await follow_plain_job(ctx, job)
    elif work.child_kind is ChildKind.JOB:
        job = jobs.get(where)
        if job is not None and job_owner_of(job) == (work.name, work.uid):
            await follow_child(ctx, job)
        else:
            await child_gone(ctx, work, f"Job {work.child_name}")
    elif work.child_kind is ChildKind.RUNNER_POD:
        pod = pods.get(where)
        if pod is not None and owner_of(pod["metadata"]) == (work.name, work.uid):
            await follow_runner_pod(ctx, pod, deleted=False)
        elif work.target is not None:
            await runner_pod_gone(ctx, work.name, work.uid, work.target)
    elif not following(ctx, work.key):
        await reattach(ctx, work)


async def child_gone(ctx: OperatorContext, work: ReleasedWork, what: str) -> None:
    async with ctx.registry.lock(work.key):
        parent = await parent_of(ctx, work.namespace, work.name, work.uid)
        status = (parent or {}).get("status") or {}
        if parent is None or status.get("completionTime"):
            ctx.registry.untrack(work.key, work.uid)
            return
        await child_deleted(ctx, parent, what)
