"""SSH runs: starting them (runner pod, or in this process), following them, recording SCI.

Pod mode (default) creates a runner pod per job; its termination message carries the
run's summary, so the outcome survives operator restarts. In-process mode runs the same
runner code as a task of the operator (for clusters whose nodes run no containers, like
the local demo); a run that is going when the operator stops is reported as lost when the
operator starts again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from carbonaware import GROUP, VERSION
from carbonaware.api import labels
from carbonaware.api import servertarget as servertarget_api
from carbonaware.api.carbonawarejob import PLURAL, CarbonAwareJobSpec
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    JobState,
    Reason,
    format_time,
    set_condition,
)
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.errors import (
    CarbonAwareError,
    KubernetesError,
    SpecError,
    TargetError,
    TargetSecretMissingError,
)
from carbonaware.handlers import events
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.measure import (
    intensity_over,
    record_metrics,
    run_intensity_over,
    server_machine,
)
from carbonaware.handlers.state import HeldWork, Key, WorkKind
from carbonaware.handlers.work import describe_validation_error
from carbonaware.k8s import CONFLICT
from carbonaware.runners.ssh import run_ssh_job
from carbonaware.runners.sshpod import (
    COMPONENT,
    COMPONENT_LABEL,
    SshPodTarget,
    build_ssh_runner_pod,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, SshTargetSpec, env_pairs
from carbonaware.runners.summary import RunSummary, parse_failure, parse_summary
from carbonaware.sci.estimate import FunctionalUnit, RunUsage, estimate_run

logger = logging.getLogger(__name__)

RUNNER_PODS: dict[str, Any] = {
    COMPONENT_LABEL: COMPONENT,
    labels.JOB_UID: kopf.PRESENT,
}
OUTPUT_LINES_LOGGED = 200
IN_PROCESS = "InProcess"

# Failures that stop a run before anything starts on the server.
NOTHING_RAN = frozenset(
    {
        Reason.UNREACHABLE,
        Reason.AUTH_FAILED,
        Reason.HOST_KEY_MISMATCH,
        Reason.SECRET_NOT_FOUND,
        Reason.TARGET_NOT_FOUND,
    }
)

Failure = tuple[Reason, str]


class TargetMissingError(SpecError):
    """The job names a ServerTarget that does not exist (yet)."""


def failure_reason(reason: str) -> Reason:
    """A runner or target failure reason as a condition reason (``JobFailed`` if unknown)."""
    try:
        return Reason(reason)
    except ValueError:
        return Reason.JOB_FAILED


def run_spec(spec: CarbonAwareJobSpec) -> SshRunSpec:
    assert spec.ssh is not None
    return SshRunSpec(
        command=spec.ssh.command,
        script=spec.ssh.script,
        working_dir=spec.ssh.working_dir,
        env=env_pairs([item.to_api() for item in spec.ssh.env]),
        timeout_seconds=float(spec.ssh.timeout_seconds),
    )


async def target_spec_of(ctx: OperatorContext, work: HeldWork) -> ServerTargetSpec:
    """The job's ServerTarget: from the watch, else (not delivered yet) from the API."""
    assert work.target is not None
    namespace, name = work.target
    known = ctx.registry.targets().get(work.target)
    if known is not None and known.spec is not None:
        return known.spec
    # At start-up, or when both objects are applied at once, the job can be seen first. A list
    # (which the operator's RBAC grants, unlike get) of one namespace's targets settles it.
    listed = await ctx.kube.list_objects(servertarget_api.PLURAL, namespace)
    body = next((item for item in listed if item["metadata"]["name"] == name), None)
    if body is None:
        raise TargetMissingError(
            f"ServerTarget {name} does not exist in namespace {namespace}; "
            "create it or fix spec.ssh.targetRef.name"
        )
    try:
        return ServerTargetSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as exc:
        raise TargetMissingError(
            f"ServerTarget {name} in namespace {namespace} cannot be used: "
            f"{describe_validation_error(exc, 'spec')}"
        ) from None


async def private_key(ctx: OperatorContext, namespace: str, target: ServerTargetSpec) -> bytes:
    ref = target.private_key_secret_ref
    key = await ctx.kube.get_secret_value(namespace, ref.name, ref.key)
    if key is None:
        raise TargetSecretMissingError(
            f"Secret {ref.name} with key {ref.key} (the SSH private key) does not exist in "
            f"namespace {namespace}: create it (type kubernetes.io/ssh-auth) or fix "
            "spec.privateKeySecretRef of the ServerTarget"
        )
    return key


async def start_ssh_run(ctx: OperatorContext, work: HeldWork, *, now: datetime) -> str | None:
    """Start the run; returns the runner pod's name in pod mode. Safe to call again.

    Raises :class:`TargetMissingError` or :class:`TargetSecretMissingError` when the run
    cannot start at all; nothing is created then.
    """
    spec = CarbonAwareJobSpec.model_validate(work.body["spec"])
    target = await target_spec_of(ctx, work)
    assert work.target is not None
    # Checked in pod mode too: a pod whose key Secret is missing would wait for its volume
    # forever instead of failing.
    key = await private_key(ctx, work.namespace, target)
    if ctx.settings.ssh_mode == IN_PROCESS:
        if work.key in ctx.registry.target(work.target).running:
            return None  # a retried release (its status write failed): already running
        ctx.registry.mark_running(work.target, work.key)
        task = asyncio.create_task(
            run_in_process(ctx, work, spec, target, key),
            name=f"ssh {work.namespace}/{work.name}",
        )
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
        return None
    pod = build_ssh_runner_pod(
        job_name=work.name,
        namespace=work.namespace,
        image=ctx.settings.runner_image,
        target=SshPodTarget(
            host=target.host,
            user=target.user,
            private_key_secret_name=target.private_key_secret_ref.name,
            private_key_secret_key=target.private_key_secret_ref.key,
            port=target.port,
            known_hosts=target.known_hosts,
            host_key_policy=HostKeyPolicy(target.host_key_policy.value),
        ),
        run=run_spec(spec),
        labels={labels.JOB_UID: work.uid, labels.TARGET_NAME: work.target[1]},
    )
    events.adopt(pod, work.body)
    name: str = pod["metadata"]["name"]
    try:
        await ctx.kube.create_pod(work.namespace, pod)
    except KubernetesError as exc:
        if exc.status != CONFLICT:
            raise
    ctx.registry.mark_running(work.target, work.key)
    return name


def _log_lines(prefix: str) -> Any:
    remaining = [OUTPUT_LINES_LOGGED]

    def sink(line: bytes) -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            logger.info("%s %s", prefix, line.decode("utf-8", "replace").rstrip())

    return sink


async def run_in_process(
    ctx: OperatorContext,
    work: HeldWork,
    spec: CarbonAwareJobSpec,
    target: ServerTargetSpec,
    key: bytes,
) -> None:
    """Run the job from this process and record its outcome; never raises."""
    assert work.target is not None
    prefix = f"[{work.namespace}/{work.name}]"
    summary: RunSummary | None = None
    failure: Failure | None = None
    try:
        ssh_target = SshTargetSpec(
            host=target.host,
            user=target.user,
            private_key=key,
            port=target.port,
            known_hosts=target.known_hosts,
            host_key_policy=HostKeyPolicy(target.host_key_policy.value),
        )
        run = run_spec(spec)
        await record_started(ctx, work.namespace, work.name, format_time(ctx.clock()))
        summary = await run_ssh_job(
            ssh_target, run, stdout=_log_lines(prefix), stderr=_log_lines(prefix)
        )
    except TargetError as exc:
        failure = (failure_reason(exc.reason), str(exc))
    except CarbonAwareError as exc:
        failure = (Reason.JOB_FAILED, str(exc))
    finally:
        ctx.registry.mark_finished(work.target, work.key)
    try:
        await finish_ssh_run(ctx, work.namespace, work.name, summary=summary, failure=failure)
    except CarbonAwareError as exc:
        logger.warning("%s could not record the outcome: %s", prefix, exc)


async def record_started(ctx: OperatorContext, namespace: str, name: str, started: str) -> None:
    """state Running and startTime, once, after the release is recorded (same lock)."""
    key: Key = (WorkKind.CARBON_AWARE_JOB.value, namespace, name)
    async with ctx.registry.lock(key):
        parent = await ctx.kube.get_object(PLURAL, namespace, name)
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
    *,
    summary: RunSummary | None,
    failure: Failure | None,
) -> None:
    """Record the outcome (once) and the SCI of an SSH run."""
    key: Key = (WorkKind.CARBON_AWARE_JOB.value, namespace, name)
    async with ctx.registry.lock(key):
        parent = await ctx.kube.get_object(PLURAL, namespace, name)
        if parent is None:
            return
        status = parent.get("status") or {}
        if status.get("completionTime"):
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
        if summary is not None:
            doc["startTime"] = format_time(summary.start_time)
            await attach_ssh_sci(ctx, parent, summary, doc)
        elif reason in NOTHING_RAN:
            doc["startTime"] = None  # nothing started on the server
        await ctx.kube.patch_status(PLURAL, namespace, name, doc)
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
    assert spec.ssh is not None
    namespace = parent["metadata"]["namespace"]
    known = ctx.registry.targets().get((namespace, spec.ssh.target_ref.name))
    target = known.spec if known is not None else None
    region = (parent.get("status") or {}).get("region") or ctx.settings.default_region
    machine = await server_machine(
        ctx,
        target.hardware if target is not None else None,
        summary.vcpus or 1,
        target.host if target is not None else "server",
    )
    intensity = await run_intensity_over(ctx, region, summary.start_time, summary.end_time)
    if intensity is None or summary.cpu_core_seconds is None:
        return
    duration = timedelta(seconds=summary.duration_seconds)
    created = ctx.created(parent)
    avoided, _ = await intensity_over(ctx, region, created, created + duration)
    # No memory term: the runner samples the whole host's memory, not the job's, and
    # hardware minWatts/maxWatts already describe the whole machine.
    estimate = estimate_run(
        RunUsage(summary.duration_seconds, summary.cpu_core_seconds, 0.0, 0.0),
        machine,
        intensity,
        FunctionalUnit(spec.sci.functional_unit.name, float(spec.sci.functional_unit.quantity)),
        avoided_intensity=avoided,
        pue=ctx.settings.pue,
    )
    doc["sci"] = {k: v for k, v in estimate.to_status().items() if v is not None}
    doc["sci"]["method"] += ";cpu=runner"
    doc["intensity"] = {"runMean": round(intensity.mean, 2)}
    record_metrics(ctx, namespace, estimate)


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


def owner_job(meta: dict[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "CarbonAwareJob":
            return str(ref["name"])
    return None


@kopf.on.event("", "v1", "pods", labels=RUNNER_PODS)
async def runner_pod_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Follow a runner pod: running counts per target, start time, outcome from its message."""
    ctx = context_of(memo)
    meta = dict(body.get("metadata", {}))
    namespace = str(meta.get("namespace"))
    parent_name = owner_job(meta)
    target_name = (meta.get("labels") or {}).get(labels.TARGET_NAME)
    if parent_name is None or target_name is None:
        return
    key: Key = (WorkKind.CARBON_AWARE_JOB.value, namespace, parent_name)
    phase = str(body.get("status", {}).get("phase") or "Pending")
    deleted = event.get("type") == "DELETED"
    finished = phase in ("Succeeded", "Failed")
    if deleted or finished:
        ctx.registry.mark_finished((namespace, target_name), key)
    else:
        ctx.registry.mark_running((namespace, target_name), key)
    try:
        if finished:
            summary, failure = pod_result(dict(body), phase)
            await finish_ssh_run(ctx, namespace, parent_name, summary=summary, failure=failure)
        elif deleted:
            failure = (
                Reason.JOB_FAILED,
                f"The runner pod {meta.get('name')} was deleted before it reported a result; "
                "the run's outcome on the server is unknown.",
            )
            await finish_ssh_run(ctx, namespace, parent_name, summary=None, failure=failure)
        elif phase == "Running":
            started = body.get("status", {}).get("startTime") or format_time(ctx.clock())
            await record_started(ctx, namespace, parent_name, str(started))
    except CarbonAwareError as exc:
        logger.warning("could not record the SSH run of %s/%s: %s", namespace, parent_name, exc)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def lost_in_process_run(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """In-process mode: a released SSH run that no task of this process follows was going
    when the operator stopped; its outcome is unknown, so it is recorded as failed."""
    ctx = context_of(memo)
    if ctx.settings.ssh_mode != IN_PROCESS or event.get("type") not in (None, "ADDED"):
        return
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    target_ref = (spec.get("ssh") or {}).get("targetRef") or {}
    if not target_ref or not status.get("releaseTime") or status.get("completionTime"):
        return
    meta = body.get("metadata", {})
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    key: Key = (WorkKind.CARBON_AWARE_JOB.value, namespace, name)
    running = ctx.registry.targets().get((namespace, str(target_ref.get("name"))))
    if running is not None and key in running.running:
        return
    if any(task.get_name() == f"ssh {namespace}/{name}" for task in ctx.background):
        return
    failure = (
        Reason.JOB_FAILED,
        "The operator stopped while this run was going (ssh mode InProcess); its outcome on "
        "the server is unknown. Create the job again to re-run it.",
    )
    try:
        await finish_ssh_run(ctx, namespace, name, summary=None, failure=failure)
    except CarbonAwareError as exc:
        logger.warning("could not record the lost SSH run of %s/%s: %s", namespace, name, exc)
