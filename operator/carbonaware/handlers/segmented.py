"""Interruptible jobs once released: run in the cleanest hours, pause in between, by the deadline.

At every tick the loop asks the interruptible policy
(:func:`~carbonaware.scheduling.interruptible.decide_interruptible_jobs`) whether each released
interruptible job runs until the next tick, from the work its status records, and changes
only what changed. A Job pauses by ``spec.suspend: true`` (the Job controller deletes its
pods: the workload gets SIGTERM and its grace period to checkpoint) and resumes with
``spec.suspend: false``; an SSH run pauses with SIGSTOP of its process group on the server and
resumes with SIGCONT (no checkpoint needed).

``status.segments`` holds one entry per run; the open one (no ``end``) is the current run.
A Job's work is the time its pods ran: a segment counts from its first container's start to
its pause, so scheduling, image pulls and the resume before the pod starts are not work; an
SSH run's from its resume. When a Job segment pauses, its share of the SCI is measured there
and then (its pods are about to go) with the counterfactual "the same work run continuously
from creation" (``avoidedGrams``); the final SCI sums the segments (``handlers.tracking``).
The status is written before the child changes; after a restart the first decision is
applied to the child whatever the status says (:attr:`SegmentedRun.confirmed`).
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL, FunctionalUnit, Schedule
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    JobState,
    derive_state,
    format_time,
    set_condition,
)
from carbonaware.errors import SpecError
from carbonaware.handlers import events
from carbonaware.handlers.childjob import job_outcome, job_pods
from carbonaware.handlers.containment import contained
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.measure import measure_pods
from carbonaware.handlers.segmentdocs import (
    container_start,
    segment_annotations,
    segment_share,
    segments_of,
)
from carbonaware.handlers.state import SegmentedRun, WorkKind
from carbonaware.handlers.work import parse_time, schedule_from_annotations
from carbonaware.scheduling.firstsegment import REASONS, rules_job
from carbonaware.scheduling.interruptible import (
    InterruptibleDecision,
    RunReason,
    RunState,
    decide_interruptible_jobs,
)

logger = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


def segmented_of(
    ctx: OperatorContext, body: dict[str, Any], kind: WorkKind = WorkKind.CARBON_AWARE_JOB
) -> SegmentedRun | None:
    """The released, unfinished interruptible run ``body`` (a CarbonAwareJob, or a managed
    plain Job whose facts are annotations) describes, if any."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    plain = kind is WorkKind.JOB
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    try:
        schedule = (
            schedule_from_annotations(annotations)
            if plain
            else Schedule.model_validate(spec.get("schedule") or {})
        )
    except (SpecError, ValueError):
        return None
    released = annotations.get(labels.RELEASE_TIME) if plain else status.get("releaseTime")
    segments = segments_of(body, plain_job=plain)
    finished = status.get("completionTime") or (plain and job_outcome(body)[0] is not None)
    if schedule.interruptible is None or not released or not segments or finished:
        return None
    latest = annotations.get(labels.LATEST_START_TIME) if plain else status.get("latestStartTime")
    region = annotations.get(labels.REGION) if plain else status.get("region") or spec.get("region")
    created = ctx.created(body)
    return SegmentedRun(
        kind=kind,
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        region=str(region or ctx.settings.default_region),
        created=created,
        deadline=(parse_time(latest) if latest else created)
        + timedelta(seconds=schedule.expected_duration_seconds),
        work_seconds=float(schedule.expected_duration_seconds),
        rules=schedule.interruptible,
        child_name=str(meta.get("name")) if plain else status.get("jobName"),
        segments=segments,
        body=body,
    )


def adopt(
    ctx: OperatorContext, body: dict[str, Any], kind: WorkKind = WorkKind.CARBON_AWARE_JOB
) -> None:
    """Pause and resume ``body``'s run from now on, if it is a released interruptible job."""
    run = segmented_of(ctx, body, kind)
    if run is not None:
        ctx.registry.segment(run).body = body


def work_so_far(run: SegmentedRun, now: datetime) -> float:
    """Run time done by ``now``: the closed segments, and the open one less a resume's
    overhead (the planner counts the overhead as run time the resume costs)."""
    if not run.running:
        return run.done_seconds
    started = parse_time(run.segments[-1]["start"])
    overhead = run.rules.resume_overhead_seconds if len(run.segments) > 1 else 0
    return run.done_seconds + max((now - started).total_seconds() - overhead, 0.0)


def decide_runs(
    runs: list[SegmentedRun], snapshots: dict[str, RegionSnapshot], now: datetime, tick: timedelta
) -> list[InterruptibleDecision]:
    """Each run's decision for this tick, one planner sweep per region (pure)."""
    by_region: dict[str, list[int]] = defaultdict(list)
    for index, run in enumerate(runs):
        by_region[run.region].append(index)
    decisions: list[InterruptibleDecision | None] = [None] * len(runs)
    for region, indexes in by_region.items():
        jobs = []
        for index in indexes:
            run = runs[index]
            started = parse_time(run.segments[-1]["start"])
            jobs.append(
                rules_job(
                    run.rules,
                    remaining=timedelta(seconds=run.work_seconds - work_so_far(run, now)),
                    deadline=run.deadline,
                    interruptions=run.interruptions,
                    state=RunState.RUNNING if run.running else RunState.PAUSED,
                    running_for=now - started if run.running else timedelta(0),
                )
            )
        snapshot = snapshots.get(region)
        view = snapshot.view if snapshot else None
        for index, decision in zip(
            indexes,
            decide_interruptible_jobs(jobs, view, now, tick, with_segments=False),
            strict=True,
        ):
            decisions[index] = decision
    return [decision for decision in decisions if decision is not None]


def segment_jobs(
    ctx: OperatorContext, snapshots: dict[str, RegionSnapshot], now: datetime
) -> list[Job]:
    """The pauses and resumes this tick calls for (each run under its object's lock)."""
    runs = ctx.registry.segmented()
    decisions = decide_runs(runs, snapshots, now, ctx.horizon())
    jobs: list[Job] = []
    for run, decision in zip(runs, decisions, strict=True):
        snapshot = snapshots.get(run.region)
        current = snapshot.current.intensity if snapshot and snapshot.current else None
        if run.running and current is not None and run.last_tick is not None:
            seconds = (now - run.last_tick).total_seconds()
            run.intensity_grams_seconds += current * seconds
            run.intensity_seconds += seconds
        run.last_tick = now
        # COMPLETE: the expected run time is used up but the run has not ended: it goes on.
        should_run = decision.run or decision.reason is RunReason.COMPLETE
        if should_run != run.running or not run.confirmed:
            jobs.append(functools.partial(_switch, ctx, run, decision, should_run, now))
    return jobs


async def _switch(
    ctx: OperatorContext,
    run: SegmentedRun,
    decision: InterruptibleDecision,
    go: bool,
    now: datetime,
) -> None:
    async with ctx.registry.lock(run.key), contained(ctx, run.key, run.body, "pause or resume"):
        if all(known is not run for known in ctx.registry.segmented()):
            return  # finished or deleted meanwhile
        if go != run.running:
            run.confirmed = False  # until the child follows: a failure is retried next tick
            await (_resume if go else _pause)(ctx, run, decision, now)
            if all(known is not run for known in ctx.registry.segmented()):
                return  # the object is gone: nothing to pause or resume
        await _set_child(ctx, run, paused=not go)
        run.confirmed = True


async def _set_child(ctx: OperatorContext, run: SegmentedRun, *, paused: bool) -> None:
    if run.child_name is not None:
        await ctx.kube.patch_job(run.namespace, run.child_name, {"spec": {"suspend": paused}})
        return
    from carbonaware.handlers.sshpause import signal_ssh_run

    if not await signal_ssh_run(ctx, run.body, "STOP" if paused else "CONT"):
        logger.info("the SSH run of %s/%s is not on its server any more", run.namespace, run.name)


def _message(run: SegmentedRun, decision: InterruptibleDecision, now: datetime) -> str:
    done = work_so_far(run, now)
    left = max(run.work_seconds - done, 0.0)
    return (
        f"{decision.reason.value}: {done / 3600:.2f} h of {run.work_seconds / 3600:.2f} h done, "
        f"{run.interruptions} pause(s); it must run without pausing from "
        f"{format_time(decision.latest_resume)} at the latest to finish by "
        f"{format_time(run.deadline)} ({left / 3600:.2f} h left)."
    )


async def _pause(
    ctx: OperatorContext, run: SegmentedRun, decision: InterruptibleDecision, now: datetime
) -> None:
    segment = dict(run.segments[-1])
    start = parse_time(segment["start"])
    segment["end"] = format_time(now)
    if run.intensity_seconds:
        segment["meanIntensity"] = round(run.intensity_grams_seconds / run.intensity_seconds, 2)
    if run.child_name is not None:
        segment.update(await _job_segment(ctx, run, start, now))
    else:
        segment["workSeconds"] = round(max((now - start).total_seconds(), 0.0), 3)
    segments = [*run.segments[:-1], segment]
    await _write(ctx, run, segments, now, paused=True, decision=decision)
    events.info(ctx.kube, run.body, reason="Paused", message=_message(run, decision, now))
    logger.info("paused %s/%s: %s", run.namespace, run.name, decision.reason.value)


async def _resume(
    ctx: OperatorContext, run: SegmentedRun, decision: InterruptibleDecision, now: datetime
) -> None:
    segments = [*run.segments, {"start": format_time(now)}]
    await _write(ctx, run, segments, now, paused=False, decision=decision)
    run.intensity_grams_seconds = run.intensity_seconds = 0.0
    events.info(ctx.kube, run.body, reason="Resumed", message=_message(run, decision, now))
    logger.info("resumed %s/%s: %s", run.namespace, run.name, decision.reason.value)


async def _write(
    ctx: OperatorContext,
    run: SegmentedRun,
    segments: list[dict[str, Any]],
    now: datetime,
    *,
    paused: bool,
    decision: InterruptibleDecision,
) -> None:
    plain = run.kind is WorkKind.JOB
    get = ctx.kube.get_job if plain else functools.partial(ctx.kube.get_object, PLURAL)
    body = await get(run.namespace, run.name)
    if body is None or (body.get("metadata") or {}).get("uid") != run.uid:
        ctx.registry.unsegment(run.key, run.uid)
        return
    previous = run.segments
    run.segments = segments
    reason = REASONS[decision.reason]
    figures = {
        "segments": segments,
        "workDoneSeconds": round(run.done_seconds, 3),
        "interruptions": run.interruptions,
    }
    try:
        if plain:
            state = JobState.PAUSED if paused else JobState.RUNNING
            notes = {labels.STATE: state.value, labels.REASON: reason.value}
            notes.update(segment_annotations(figures))
            written = await ctx.kube.patch_job(
                run.namespace, run.name, {"metadata": {"annotations": notes}}
            )
        else:
            doc = {**_conditions(body, run, decision, now, paused=paused), **figures}
            written = await ctx.kube.patch_status(PLURAL, run.namespace, run.name, doc)
    except Exception:
        run.segments = previous
        raise
    run.body = written or body


def _conditions(
    body: dict[str, Any],
    run: SegmentedRun,
    decision: InterruptibleDecision,
    now: datetime,
    *,
    paused: bool,
) -> dict[str, Any]:
    """``Paused`` and ``Running`` (one of them True) and the state they give."""
    status = body.get("status") or {}
    reason, message = REASONS[decision.reason], _message(run, decision, now)
    conditions = status.get("conditions") or []
    for type_, true in ((ConditionType.PAUSED, paused), (ConditionType.RUNNING, not paused)):
        conditions = set_condition(
            conditions, type=type_, status=ConditionStatus.TRUE if true else ConditionStatus.FALSE,
            reason=reason, message=message, now=now, generation=status.get("observedGeneration"),
        )  # fmt: skip
    return {"conditions": conditions, "state": derive_state(conditions, running=True).value}


async def _job_segment(
    ctx: OperatorContext, run: SegmentedRun, start: datetime, now: datetime
) -> dict[str, Any]:
    """A Job segment's run time (from its first container's start) and its share of the SCI."""
    assert run.child_name is not None
    job = await ctx.kube.get_job(run.namespace, run.child_name)
    pods = await job_pods(ctx, job) if job is not None else []
    # The API server's times are whole seconds: a container that started in the second of
    # the resume may read as before it. Later than the resume by then (its time plus that
    # second), it belongs to this run.
    stamps = [t for pod in pods if (t := container_start(pod)) is not None]
    began = [ctx.observed(t) for t in stamps if ctx.observed(t + timedelta(seconds=1)) >= start]
    if not began:
        return {"workSeconds": 0.0}
    first = max(min(began), start)
    figures: dict[str, Any] = {"workSeconds": round(max((now - first).total_seconds(), 0.0), 3)}
    unit = FunctionalUnit.model_validate(((run.body.get("spec") or {}).get("sci") or {}).get(
        "functionalUnit") or {})  # fmt: skip
    measurement = await measure_pods(
        ctx,
        pods,
        region=run.region,
        created=run.created + timedelta(seconds=run.done_seconds),
        functional_unit=unit,
        fallback_window=(first, now),
    )
    if measurement is not None:
        figures.update(segment_share(measurement.estimate, measurement.run_mean))
    return figures
