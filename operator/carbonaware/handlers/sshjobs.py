"""SSH runs: starting them (runner pod, or in this process), following them, recording SCI.

Pod mode (default) creates a runner pod per job; its termination message carries the
run's summary, so the outcome survives operator restarts. In-process mode runs the same
runner code as a task of the operator (for clusters whose nodes run no containers, like
the local demo); a run that is going when the operator stops is reported as lost.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import kopf

from carbonaware.api import labels
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
    RunnerError,
    SpecError,
    TargetError,
)
from carbonaware.handlers import events
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.measure import intensity_over, record_metrics
from carbonaware.handlers.state import HeldWork, Key, WorkKind
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
from carbonaware.sci.estimate import (
    FunctionalUnit,
    RunUsage,
    estimate_run,
    machine_from_hardware,
    machine_from_server_hardware,
)

logger = logging.getLogger(__name__)

RUNNER_PODS: dict[str, Any] = {
    COMPONENT_LABEL: COMPONENT,
    labels.JOB_UID: kopf.PRESENT,
}
OUTPUT_LINES_LOGGED = 200


class TargetMissingError(SpecError):
    """The job names a ServerTarget that does not exist (yet)."""


def run_spec(spec: CarbonAwareJobSpec) -> SshRunSpec:
    assert spec.ssh is not None
    return SshRunSpec(
        command=spec.ssh.command,
        script=spec.ssh.script,
        working_dir=spec.ssh.working_dir,
        env=env_pairs([item.to_api() for item in spec.ssh.env]),
        timeout_seconds=float(spec.ssh.timeout_seconds),
    )


def target_spec_of(ctx: OperatorContext, work: HeldWork) -> ServerTargetSpec:
    assert work.target is not None
    state = ctx.registry.target(work.target)
    if state.spec is None:
        raise TargetMissingError(
            f"ServerTarget {work.target[1]} does not exist in namespace {work.namespace}; "
            "create it or fix spec.ssh.targetRef.name"
        )
    return state.spec


async def private_key(ctx: OperatorContext, namespace: str, target: ServerTargetSpec) -> bytes:
    ref = target.private_key_secret_ref
    key = await ctx.kube.get_secret_value(namespace, ref.name, ref.key)
    if key is None:
        raise TargetError(
            f"Secret {ref.name} (key {ref.key}) with the SSH private key is missing in {namespace}"
        )
    return key


async def start_ssh_run(ctx: OperatorContext, work: HeldWork, *, now: datetime) -> str | None:
    """Start the run; returns the runner pod's name in pod mode. Safe to call again."""
    spec = CarbonAwareJobSpec.model_validate(work.body["spec"])
    target = target_spec_of(ctx, work)
    assert work.target is not None
    if ctx.settings.ssh_mode == "InProcess":
        key = await private_key(ctx, work.namespace, target)
        task = asyncio.create_task(
            run_in_process(ctx, work, spec, target, key, now),
            name=f"ssh {work.namespace}/{work.name}",
        )
        ctx.background.add(task)
        task.add_done_callback(ctx.background.discard)
        ctx.registry.mark_running(work.target, work.key)
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
    released: datetime,
) -> None:
    prefix = f"[{work.namespace}/{work.name}]"
    ssh_target = SshTargetSpec(
        host=target.host,
        user=target.user,
        private_key=key,
        port=target.port,
        known_hosts=target.known_hosts,
        host_key_policy=HostKeyPolicy(target.host_key_policy.value),
    )
    summary: RunSummary | None = None
    failure: tuple[Reason, str] | None = None
    try:
        await record_started(ctx, work.namespace, work.name, ctx.clock())
        summary = await run_ssh_job(
            ssh_target, run_spec(spec), stdout=_log_lines(prefix), stderr=_log_lines(prefix)
        )
    except TargetError as exc:
        failure = (Reason(exc.reason), str(exc))
    except (RunnerError, SpecError) as exc:
        failure = (Reason.JOB_FAILED, str(exc))
    finally:
        assert work.target is not None
        ctx.registry.mark_finished(work.target, work.key)
    try:
        await finish_ssh_run(ctx, work.namespace, work.name, summary=summary, failure=failure)
    except CarbonAwareError as exc:
        logger.warning("%s could not record the outcome: %s", prefix, exc)


async def record_started(ctx: OperatorContext, namespace: str, name: str, now: datetime) -> None:
    await ctx.kube.patch_status(
        PLURAL, namespace, name, {"startTime": format_time(now), "state": JobState.RUNNING.value}
    )


async def finish_ssh_run(
    ctx: OperatorContext,
    namespace: str,
    name: str,
    *,
    summary: RunSummary | None,
    failure: tuple[Reason, str] | None,
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
        generation = parent["metadata"].get("generation")
        conditions = status.get("conditions") or []
        doc: dict[str, Any] = {"completionTime": format_time(summary.end_time if summary else now)}
        if summary is not None and summary.succeeded:
            conditions = set_condition(
                conditions,
                type=ConditionType.COMPLETE,
                status=ConditionStatus.TRUE,
                reason=Reason.SUCCEEDED,
                message="The script exited with 0.",
                now=now,
                generation=generation,
            )
            state = JobState.SUCCEEDED
        else:
            if summary is not None and summary.timed_out:
                reason, message = (
                    Reason.TIMED_OUT,
                    f"Stopped after ssh.timeoutSeconds ({summary.duration_seconds:.0f} s).",
                )
            elif summary is not None:
                reason, message = Reason.JOB_FAILED, f"The script exited with {summary.exit_code}."
            else:
                reason, message = failure or (Reason.JOB_FAILED, "The run did not complete.")
            conditions = set_condition(
                conditions,
                type=ConditionType.FAILED,
                status=ConditionStatus.TRUE,
                reason=reason,
                message=message,
                now=now,
                generation=generation,
            )
            state = JobState.FAILED
        doc["conditions"] = conditions
        doc["state"] = state.value
        if summary is not None:
            doc["startTime"] = format_time(summary.start_time)
            await attach_ssh_sci(ctx, parent, summary, doc)
        await ctx.kube.patch_status(PLURAL, namespace, name, doc)
        events.info(
            ctx.kube,
            parent,
            reason=state.value,
            message=f"SSH run {state.value.lower()}: {conditions[-1]['message']}",
        )


async def attach_ssh_sci(
    ctx: OperatorContext, parent: dict[str, Any], summary: RunSummary, doc: dict[str, Any]
) -> None:
    spec = CarbonAwareJobSpec.model_validate(parent["spec"])
    assert spec.ssh is not None
    namespace = parent["metadata"]["namespace"]
    target = ctx.registry.target((namespace, spec.ssh.target_ref.name)).spec
    region = (parent.get("status") or {}).get("region") or ctx.settings.default_region
    if target is not None and target.hardware is not None:
        machine = machine_from_server_hardware(target.hardware, name=target.host)
    else:
        machine = machine_from_hardware(
            vcpus=summary.vcpus or 1, name=target.host if target else "server"
        )
    intensity, _ = await intensity_over(ctx, region, summary.start_time, summary.end_time)
    if intensity is None or summary.cpu_core_seconds is None:
        return
    duration = timedelta(seconds=summary.duration_seconds)
    created = datetime.fromisoformat(parent["metadata"]["creationTimestamp"])
    avoided, _ = await intensity_over(ctx, region, created, created + duration)
    memory = (
        (summary.memory_used_bytes_mean or 0) / 1024**3 if summary.memory_used_bytes_mean else 0.0
    )
    estimate = estimate_run(
        RunUsage(summary.duration_seconds, summary.cpu_core_seconds, 0.0, memory),
        machine,
        intensity,
        FunctionalUnit(spec.sci.functional_unit.name, float(spec.sci.functional_unit.quantity)),
        avoided_intensity=avoided,
        pue=ctx.settings.pue,
    )
    doc["sci"] = {k: v for k, v in estimate.to_status().items() if v is not None}
    doc["sci"]["method"] += ";cpu=runner"
    doc["intensity"] = {"runMean": round(intensity, 2)}
    record_metrics(ctx, namespace, estimate)


def termination_message(pod: dict[str, Any]) -> str | None:
    for container in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return str(terminated.get("message") or "")
    return None


@kopf.on.event("", "v1", "pods", labels=RUNNER_PODS)
async def runner_pod_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    """Follow a runner pod: running counts per target, start time, outcome from its message."""
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    namespace = str(meta.get("namespace"))
    parent_name = next(
        (
            ref["name"]
            for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == "CarbonAwareJob"
        ),
        None,
    )
    target_name = (meta.get("labels") or {}).get(labels.TARGET_NAME)
    if parent_name is None or target_name is None:
        return
    key: Key = (WorkKind.CARBON_AWARE_JOB.value, namespace, parent_name)
    phase = body.get("status", {}).get("phase")
    if event.get("type") == "DELETED" or phase in ("Succeeded", "Failed"):
        ctx.registry.mark_finished((namespace, target_name), key)
    else:
        ctx.registry.mark_running((namespace, target_name), key)
    if phase not in ("Succeeded", "Failed"):
        return
    message = termination_message(dict(body)) or ""
    summary: RunSummary | None = None
    failure: tuple[Reason, str] | None = None
    try:
        summary = parse_summary(message)
    except RunnerError:
        try:
            record = parse_failure(message)
            reason = (
                Reason(record.reason)
                if record.reason in Reason.__members__.values()
                else Reason.JOB_FAILED
            )
            failure = (reason, record.message)
        except RunnerError:
            failure = (Reason.JOB_FAILED, f"The runner pod ended {phase} without a result.")
    try:
        await finish_ssh_run(ctx, namespace, parent_name, summary=summary, failure=failure)
    except CarbonAwareError as exc:
        logger.warning("could not record the SSH run of %s/%s: %s", namespace, parent_name, exc)
