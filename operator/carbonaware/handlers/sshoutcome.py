"""Recording what an SSH run did: its start, its outcome (once), and its SCI.

Every write checks the parent's UID: a runner pod or task of a deleted CarbonAwareJob never
touches a new object that took its name.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from carbonaware.api.carbonawarejob import PLURAL, CarbonAwareJobSpec
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    JobState,
    Reason,
    format_time,
    set_condition,
)
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.containment import measured
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.measure import (
    intensity_over,
    record_metrics,
    run_intensity_over,
    server_machine,
)
from carbonaware.handlers.segmentdocs import closed_at_end
from carbonaware.handlers.state import Key, WorkKind
from carbonaware.handlers.work import job_target, parse_time
from carbonaware.runners.summary import DETACHED, RunSummary, parse_failure, parse_summary
from carbonaware.sci.estimate import FunctionalUnit, RunIntensity, RunUsage, estimate_run

logger = logging.getLogger(__name__)

Failure = tuple[Reason, str]

# Failures that stop a run before anything starts on the server.
NOTHING_RAN = frozenset(
    {
        Reason.UNREACHABLE,
        Reason.AUTH_FAILED,
        Reason.HOST_KEY_MISMATCH,
        Reason.SECRET_NOT_FOUND,
        Reason.SECRET_NOT_ALLOWED,
        Reason.HOST_NOT_ALLOWED,
        Reason.TARGET_NOT_FOUND,
    }
)


def failure_reason(reason: str) -> Reason:
    """A runner or target failure reason as a condition reason (``JobFailed`` if unknown)."""
    try:
        return Reason(reason)
    except ValueError:
        return Reason.JOB_FAILED


def job_key(namespace: str, name: str) -> Key:
    return (WorkKind.CARBON_AWARE_JOB.value, namespace, name)


async def parent_of(
    ctx: OperatorContext, namespace: str, name: str, uid: str
) -> dict[str, Any] | None:
    """The CarbonAwareJob, if it is still the object ``uid`` (not a new one with its name)."""
    parent = await ctx.kube.get_object(PLURAL, namespace, name)
    if parent is None or parent["metadata"].get("uid") != uid:
        return None
    return parent


async def record_release_from_pod(
    ctx: OperatorContext, namespace: str, name: str, uid: str, pod: dict[str, Any]
) -> None:
    """A runner pod made by a release the operator could not record before it stopped:
    record the release from the facts the pod carries (``status.released_from_child``)."""
    if ctx.registry.was_released(uid):
        return  # this process recorded the release
    async with ctx.registry.lock(job_key(namespace, name)):
        parent = await parent_of(ctx, namespace, name, uid)
        if parent is None:
            return
        doc = status_docs.released_from_child(parent, pod)
        if (parent.get("status") or {}).get("releaseTime") or doc is not None:
            ctx.registry.remember_released(uid)
        if doc is None:
            return
        doc["podName"] = pod["metadata"]["name"]
        await ctx.kube.patch_status(PLURAL, namespace, name, doc)
        reason = next(c["reason"] for c in doc["conditions"]
                      if c["type"] == ConditionType.RELEASED.value)  # fmt: skip
        events.info(ctx.kube, parent, reason="Released",
                    message=f"{reason}: recorded from the runner pod after a restart")  # fmt: skip


async def record_started(
    ctx: OperatorContext, namespace: str, name: str, uid: str, started: str
) -> None:
    """state Running and startTime, once, after the release is recorded (same lock)."""
    async with ctx.registry.lock(job_key(namespace, name)):
        parent = await parent_of(ctx, namespace, name, uid)
        status = (parent or {}).get("status") or {}
        if parent is None or status.get("startTime") or status.get("completionTime"):
            return
        await ctx.kube.patch_status(
            PLURAL, namespace, name, {"startTime": started, "state": JobState.RUNNING.value}
        )


def outcome(
    summary: RunSummary | None, failure: Failure | None
) -> tuple[ConditionType, Reason, str]:
    """The final condition of a run from the runner's summary or from why it never ran."""
    if summary is not None and summary.succeeded:
        return ConditionType.COMPLETE, Reason.SUCCEEDED, "The script exited with 0."
    if summary is not None and summary.timed_out:
        return (
            ConditionType.FAILED,
            Reason.TIMED_OUT,
            f"Stopped after ssh.timeoutSeconds ({summary.duration_seconds:.0f} s).",
        )
    if summary is not None:
        code = "no exit status" if summary.exit_code is None else summary.exit_code
        return ConditionType.FAILED, Reason.JOB_FAILED, f"The script exited with {code}."
    reason, message = failure or (Reason.JOB_FAILED, "The run did not complete.")
    return ConditionType.FAILED, reason, message


async def finish_ssh_run(
    ctx: OperatorContext,
    namespace: str,
    name: str,
    uid: str,
    *,
    summary: RunSummary | None,
    failure: Failure | None,
) -> None:
    """Record the outcome (once) and the SCI of an SSH run of the object ``uid``."""
    key = job_key(namespace, name)
    async with ctx.registry.lock(key):
        parent = await parent_of(ctx, namespace, name, uid)
        if parent is None:
            ctx.registry.untrack(key, uid)
            return
        status = parent.get("status") or {}
        if status.get("completionTime"):
            ctx.registry.untrack(key, uid)
            return
        now = ctx.clock()
        type_, reason, message = outcome(summary, failure)
        conditions = set_condition(
            status.get("conditions") or [],
            type=type_,
            status=ConditionStatus.TRUE,
            reason=reason,
            message=message,
            now=now,
            generation=parent["metadata"].get("generation"),
        )
        state = JobState.SUCCEEDED if type_ is ConditionType.COMPLETE else JobState.FAILED
        doc: dict[str, Any] = {
            "conditions": conditions,
            "state": state.value,
            "completionTime": format_time(summary.end_time if summary else now),
        }
        if status.get("segments"):  # interruptible: the last run ends with the job
            end = ctx.observed(summary.end_time) if summary else now
            doc.update(closed_at_end(status, end, None))
        if summary is not None:
            doc["startTime"] = format_time(summary.start_time)  # the job started once
            _, problem = await measured(
                ctx, f"{namespace}/{name}", lambda: attach_ssh_sci(ctx, parent, summary, doc)
            )
            if problem:
                events.warn(ctx.kube, parent, reason="NoSCI", message=f"No SCI: {problem}")
        elif reason in NOTHING_RAN:
            doc["startTime"] = None  # nothing started on the server
        await ctx.kube.patch_status(PLURAL, namespace, name, doc)
        ctx.registry.untrack(key, uid)
        ctx.registry.observe_state(key, state.value)
        post = events.info if state is JobState.SUCCEEDED else events.warn
        post(
            ctx.kube,
            parent,
            reason=state.value if state is JobState.SUCCEEDED else reason.value,
            message=f"SSH run {state.value.lower()}: {message}",
        )


async def attach_ssh_sci(
    ctx: OperatorContext, parent: dict[str, Any], summary: RunSummary, doc: dict[str, Any]
) -> None:
    """SCI of the run: the runner's CPU time on the ServerTarget's machine profile."""
    spec = CarbonAwareJobSpec.model_validate(parent["spec"])
    namespace = parent["metadata"]["namespace"]
    key = job_target(parent)
    known = ctx.registry.targets().get(key) if key is not None else None
    target = known.spec if known is not None else None
    region = (parent.get("status") or {}).get("region") or ctx.settings.default_region
    machine = await server_machine(
        ctx,
        target.hardware if target is not None else None,
        summary.vcpus or 1,
        target.host if target is not None else "server",
    )
    # An interruptible run ran in its segments only: I over them, the machine busy for them
    # (a stopped process uses no CPU), the counterfactual the same run time from creation.
    windows = [(summary.start_time, summary.end_time)]
    seconds = summary.duration_seconds
    if doc.get("segments"):
        windows = [(parse_time(s["start"]), parse_time(s["end"])) for s in doc["segments"]]
        seconds = sum(float(s.get("workSeconds") or 0.0) for s in doc["segments"]) or seconds
    intensity = await segments_intensity(ctx, region, windows)
    if intensity is None or summary.cpu_core_seconds is None:
        return
    duration = timedelta(seconds=seconds)
    created = ctx.created(parent)
    avoided, _ = await intensity_over(ctx, region, created, created + duration)
    # No memory term: the runner samples the whole host's memory, not the job's, and
    # hardware minWatts/maxWatts already describe the whole machine.
    estimate = estimate_run(
        RunUsage(seconds, summary.cpu_core_seconds, 0.0, 0.0),
        machine,
        intensity,
        FunctionalUnit(spec.sci.functional_unit.name, float(spec.sci.functional_unit.quantity)),
        avoided_intensity=avoided,
        pue=ctx.settings.pue,
    )
    doc["sci"] = {k: v for k, v in estimate.to_status().items() if v is not None}
    doc["sci"]["method"] += ";cpu=runner"
    doc["sciDisplay"] = status_docs.sci_display(doc["sci"])
    doc["intensity"] = {"runMean": round(intensity.mean, 2)}
    record_metrics(ctx, namespace, estimate)


async def segments_intensity(
    ctx: OperatorContext, region: str, windows: list[tuple[datetime, datetime]]
) -> RunIntensity | None:
    """I over the windows a run ran in, weighted by their lengths (one window: the run)."""
    found = [
        (intensity, max((end - start).total_seconds(), 1e-9))
        for start, end in windows
        if (intensity := await run_intensity_over(ctx, region, start, end)) is not None
    ]
    if not found:
        return None
    if len(found) == 1:
        return found[0][0]
    total = sum(weight for _, weight in found)
    kinds = {intensity.kind for intensity, _ in found}
    return RunIntensity(
        mean=sum(intensity.mean * weight for intensity, weight in found) / total,
        sources=tuple(dict.fromkeys(src for intensity, _ in found for src in intensity.sources)),
        kind=kinds.pop() if len(kinds) == 1 else "mixed",
        forecast_seconds=sum(intensity.forecast_seconds for intensity, _ in found),
    )


def termination_message(pod: dict[str, Any]) -> str | None:
    for container in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return str(terminated.get("message") or "")
    return None


def pod_result(pod: dict[str, Any], phase: str) -> tuple[RunSummary | None, Failure | None]:
    """What a finished runner pod reported in its termination message."""
    message = termination_message(pod) or ""
    try:
        return parse_summary(message), None
    except CarbonAwareError:
        pass
    try:
        record = parse_failure(message)
    except CarbonAwareError:
        return None, (
            Reason.JOB_FAILED,
            f"The runner pod {pod['metadata']['name']} ended {phase} without a result "
            "(no run summary in its termination message); see its log.",
        )
    return None, (failure_reason(record.reason), record.message)


def interrupted(pod: dict[str, Any]) -> bool:
    """Deleted before it reported the run's outcome (the kubelet marks such a pod Failed
    before it is gone): the runner let go of the run (``Detached``) or was killed before it
    wrote anything; the run on the server goes on, and a new pod attaches to it."""
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    message = termination_message(pod) or ""
    try:
        parse_summary(message)
        return False
    except CarbonAwareError:
        pass
    try:
        return parse_failure(message).reason == DETACHED
    except CarbonAwareError:
        return True
