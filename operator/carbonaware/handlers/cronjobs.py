"""CarbonAwareCronJobs: one CarbonAwareJob per period, created when the period's window opens.

kopf's event handler keeps the cron jobs in the context; the refresh loop calls
:func:`run_cronjobs` every tick, with operator time, so a scaled clock drives them as it
drives holding. Per tick: one list of runs per namespace that has cron jobs, and writes only
for what changed. A run is named after its nominal time (``<cron job>-<minutes since the
epoch>``, as CronJob names its Jobs), so a restart between creating a run and recording it
finds the run by name instead of creating a second one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from carbonaware import GROUP, VERSION
from carbonaware.api import labels
from carbonaware.api.carbonawarejob import KIND as RUN_KIND
from carbonaware.api.carbonawarejob import PLURAL as RUN_PLURAL
from carbonaware.api.conditions import JobState, format_time
from carbonaware.api.cronjob import PLURAL, CarbonAwareCronJobSpec, ConcurrencyPolicy
from carbonaware.errors import CarbonAwareError, KubernetesError
from carbonaware.handlers import events
from carbonaware.handlers.cancel import FINISHED
from carbonaware.handlers.containment import describe
from carbonaware.handlers.context import CronEntry, OperatorContext, context_of
from carbonaware.handlers.work import describe_validation_error, optional_time
from carbonaware.k8s import CONFLICT
from carbonaware.scheduling.cron import CronSchedule, due_period, next_period

logger = logging.getLogger(__name__)

CronKey = tuple[str, str]


@kopf.on.event(GROUP, VERSION, PLURAL)
async def cronjob_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    key: CronKey = (str(meta.get("namespace")), str(meta.get("name")))
    if event.get("type") == "DELETED":
        ctx.cronjobs.pop(key, None)
        return
    previous = ctx.cronjobs.get(key)
    try:
        spec: CarbonAwareCronJobSpec | None = CarbonAwareCronJobSpec.model_validate(
            dict(body.get("spec") or {})
        )
    except ValidationError as exc:
        spec = None
        if previous is None or previous.body["metadata"].get("generation") != meta.get(
            "generation"
        ):
            message = describe_validation_error(exc, "spec")
            logger.warning("CarbonAwareCronJob %s/%s: %s", *key, message)
            events.warn(ctx.kube, body, reason="InvalidSpec", message=message)
    entry = CronEntry(dict(body), spec)
    if previous is not None:
        entry.waiting_for = previous.waiting_for
        # An event queued before our own status write must not take back the period it
        # recorded (the next tick would act on that period again).
        if last_scheduled(previous.body) > last_scheduled(entry.body):
            entry.body["status"] = previous.body.get("status")
    ctx.cronjobs[key] = entry


def last_scheduled(body: dict[str, Any]) -> datetime:
    moment = optional_time((body.get("status") or {}).get("lastScheduleTime"))
    return moment or datetime.min.replace(tzinfo=UTC)


def schedule_of(spec: CarbonAwareCronJobSpec) -> CronSchedule:
    return CronSchedule(
        spec.schedule,
        spec.zone(),
        before=timedelta(seconds=spec.window_before_seconds),
        after=timedelta(seconds=spec.window_after_seconds),
        starting_deadline=(
            timedelta(seconds=spec.starting_deadline_seconds)
            if spec.starting_deadline_seconds is not None
            else None
        ),
    )


def run_name(cron_name: str, nominal: datetime) -> str:
    """``<cron job>-<minutes since the epoch>``: unique per period, stable across restarts."""
    return f"{cron_name}-{int(nominal.timestamp()) // 60}"


def run_body(
    cron: dict[str, Any], spec: CarbonAwareCronJobSpec, nominal: datetime
) -> dict[str, Any]:
    """The CarbonAwareJob of the period ``nominal``: the template, its latest start at the end
    of the window, owned by the cron job."""
    template = spec.job_template
    run_spec = template.spec.to_api()
    expected = timedelta(seconds=template.spec.schedule.expected_duration_seconds)
    latest_start = schedule_of(spec).window(nominal)[1]
    run_spec["schedule"]["deadlineTime"] = format_time(latest_start + expected)
    meta = template.metadata
    name = str(cron["metadata"]["name"])
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": RUN_KIND,
        "metadata": {
            "name": run_name(name, nominal),
            "labels": {**((meta.labels if meta else None) or {}), labels.CRONJOB: name},
            "annotations": {
                **((meta.annotations if meta else None) or {}),
                labels.NOMINAL_TIME: format_time(nominal),
            },
        },
        "spec": run_spec,
    }
    events.adopt(body, cron)
    return body


def runs_of(cron: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs this cron job owns (by owner UID: a namesake's runs are not its own), but not
    those being deleted."""
    uid = cron["metadata"].get("uid")
    return [
        run
        for run in runs
        if any(ref.get("uid") == uid for ref in run["metadata"].get("ownerReferences") or [])
        and not run["metadata"].get("deletionTimestamp")
    ]


def finished(run: dict[str, Any]) -> bool:
    return (run.get("status") or {}).get("state") in FINISHED


def nominal_of(run: dict[str, Any]) -> datetime | None:
    return optional_time((run["metadata"].get("annotations") or {}).get(labels.NOMINAL_TIME))


async def prune_history(
    ctx: OperatorContext, cron: dict[str, Any], spec: CarbonAwareCronJobSpec, runs: list[Any]
) -> list[dict[str, Any]]:
    """Delete finished runs beyond the history limits, oldest first; the runs kept."""
    doomed: list[dict[str, Any]] = []
    for state, limit in (
        (JobState.SUCCEEDED.value, spec.successful_jobs_history_limit),
        (JobState.FAILED.value, spec.failed_jobs_history_limit),
    ):
        done = [run for run in runs if (run.get("status") or {}).get("state") == state]
        done.sort(key=lambda run: nominal_of(run) or ctx.created(run))
        doomed.extend(done[: max(len(done) - limit, 0)])
    for run in doomed:
        meta = run["metadata"]
        await ctx.kube.delete_object(RUN_PLURAL, meta["namespace"], meta["name"], meta["uid"])
        events.info(
            ctx.kube, cron, reason="RunDeleted", message=f"deleted finished run {meta['name']}"
        )
    gone = {id(run) for run in doomed}
    return [run for run in runs if id(run) not in gone]


async def create_run(
    ctx: OperatorContext, cron: dict[str, Any], spec: CarbonAwareCronJobSpec, nominal: datetime
) -> dict[str, Any]:
    """Create the period's run; an existing run of ours by that name (created before a
    restart) counts as created."""
    body = run_body(cron, spec, nominal)
    namespace = str(cron["metadata"]["namespace"])
    try:
        return await ctx.kube.create_object(RUN_PLURAL, namespace, body)
    except KubernetesError as exc:
        if exc.status != CONFLICT:
            raise
        existing = await ctx.kube.get_object(RUN_PLURAL, namespace, body["metadata"]["name"])
        if existing is None or not runs_of(cron, [existing]):
            raise
        return existing


def announce(
    ctx: OperatorContext,
    cron: dict[str, Any],
    outcome: str,
    message: str,
    *,
    reason: str,
    count: int = 1,
    warning: bool = False,
) -> None:
    """An Event on the cron job, and ``count`` periods of ``outcome`` in the metric."""
    post = events.warn if warning else events.info
    post(ctx.kube, cron, reason=reason, message=message)
    ctx.metrics.cron_runs.labels(str(cron["metadata"]["namespace"]), outcome).inc(count)


def report_missed(ctx: OperatorContext, cron: dict[str, Any], missed: int, when: str) -> None:
    """The periods before the one acted on that will not run (once, when it is acted on)."""
    if missed:
        message = (
            f"{missed} period(s) before {when} were missed (the operator was not running or the "
            "cron job was suspended); only the latest runs"
        )
        announce(ctx, cron, "missed", message, reason="MissedSchedule", count=missed, warning=True)


def window_text(schedule: CronSchedule, nominal: datetime) -> str:
    opens, closes = schedule.window(nominal)
    return f"{format_time(opens)} to {format_time(closes)}"


async def act_on_period(
    ctx: OperatorContext,
    entry: CronEntry,
    spec: CarbonAwareCronJobSpec,
    active: list[dict[str, Any]],
    now: datetime,
) -> tuple[datetime | None, list[dict[str, Any]]]:
    """Run, skip or miss the due period, if any; the nominal time now handled (None: none)
    and the runs active afterwards."""
    cron = entry.body
    namespace = str(cron["metadata"]["namespace"])
    status = cron.get("status") or {}
    schedule = schedule_of(spec)
    since = optional_time(status.get("lastScheduleTime")) or ctx.created(cron)
    due = due_period(schedule, since, now)
    if due is None:
        return None, active
    when = format_time(due.nominal)
    if due.late:
        report_missed(ctx, cron, due.missed, when)
        message = (
            f"the period of {when} was missed: its window opened at "
            f"{format_time(due.opened)}, more than startingDeadlineSeconds ago"
        )
        announce(ctx, cron, "missed", message, reason="MissedSchedule", warning=True)
        return due.nominal, active
    if active and spec.concurrency_policy is ConcurrencyPolicy.FORBID:
        if entry.waiting_for != due.nominal:
            entry.waiting_for = due.nominal
            names = ", ".join(run["metadata"]["name"] for run in active)
            message = (
                f"the period of {when} waits: concurrencyPolicy Forbid and {names} is still "
                "held or running"
            )
            announce(ctx, cron, "forbidden", message, reason="JobAlreadyActive")
        return None, active
    report_missed(ctx, cron, due.missed, when)
    if active and spec.concurrency_policy is ConcurrencyPolicy.REPLACE:
        for run in active:
            meta = run["metadata"]
            await ctx.kube.delete_object(RUN_PLURAL, namespace, meta["name"], meta["uid"])
            message = f"deleted {meta['name']} (concurrencyPolicy Replace) for the period of {when}"
            announce(ctx, cron, "replaced", message, reason="RunReplaced")
        active = []
    created = await create_run(ctx, cron, spec, due.nominal)
    message = (
        f"created {created['metadata']['name']} for the period of {when}: it may start from "
        f"{window_text(schedule, due.nominal)}"
    )
    announce(ctx, cron, "created", message, reason="RunCreated")
    logger.info(
        "CarbonAwareCronJob %s/%s: created %s for %s (window %s)", namespace,
        cron["metadata"]["name"], created["metadata"]["name"], when,
        window_text(schedule, due.nominal),
    )  # fmt: skip
    return due.nominal, [*active, created]


def status_doc(
    cron: dict[str, Any],
    spec: CarbonAwareCronJobSpec,
    runs: list[dict[str, Any]],
    active: list[dict[str, Any]],
    handled: datetime | None,
    created: datetime,
) -> dict[str, Any]:
    """``nextScheduleTime``: the first period not handled yet (the next one to run, or one
    waiting for an active run under Forbid)."""
    status = cron.get("status") or {}
    last = handled or optional_time(status.get("lastScheduleTime"))
    nominal, opens = next_period(schedule_of(spec), last or created)
    succeeded = [
        moment
        for run in runs
        if (run.get("status") or {}).get("state") == JobState.SUCCEEDED.value
        and (moment := optional_time(run["status"].get("completionTime")))
    ]
    last_success = optional_time(status.get("lastSuccessfulTime"))
    if succeeded:
        last_success = max([*succeeded, *([last_success] if last_success else [])])
    doc: dict[str, Any] = {
        "active": [
            {
                "name": run["metadata"]["name"],
                "uid": run["metadata"].get("uid"),
                "nominalTime": format_time(nominal_of(run) or created),
            }
            for run in sorted(active, key=lambda run: run["metadata"]["name"])
        ],
        "nextScheduleTime": None if spec.suspend else format_time(nominal),
        "nextWindowStart": None if spec.suspend else format_time(opens),
        "observedGeneration": cron["metadata"].get("generation"),
    }
    if last is not None:
        doc["lastScheduleTime"] = format_time(last)
    if last_success is not None:
        doc["lastSuccessfulTime"] = format_time(last_success)
    return doc


def differs(status: dict[str, Any], doc: dict[str, Any]) -> bool:
    return any(status.get(key) != value for key, value in doc.items())


async def run_cronjob(
    ctx: OperatorContext, entry: CronEntry, runs: list[dict[str, Any]], now: datetime
) -> None:
    cron, spec = entry.body, entry.spec
    if spec is None:
        return
    meta = cron["metadata"]
    runs = await prune_history(ctx, cron, spec, runs_of(cron, runs))
    active = [run for run in runs if not finished(run)]
    handled = None
    if not spec.suspend:
        handled, active = await act_on_period(ctx, entry, spec, active, now)
    doc = status_doc(cron, spec, runs, active, handled, ctx.created(cron))
    if differs(cron.get("status") or {}, doc):
        written = await ctx.kube.patch_status(PLURAL, meta["namespace"], meta["name"], doc)
        entry.body = {**cron, "status": written.get("status", doc)}


async def run_cronjobs(ctx: OperatorContext, now: datetime) -> None:
    """Every cron job's due period, at most one list call per namespace."""
    by_namespace: dict[str, list[CronEntry]] = defaultdict(list)
    for (namespace, _), entry in sorted(ctx.cronjobs.items()):
        if entry.spec is not None:
            by_namespace[namespace].append(entry)
    for namespace, entries in by_namespace.items():
        try:
            runs = await ctx.kube.list_objects(RUN_PLURAL, namespace, labels.CRONJOB)
        except KubernetesError as exc:
            logger.warning("listing the runs of cron jobs in %s: %s", namespace, exc)
            continue
        by_cron: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for run in runs:
            by_cron[(run["metadata"].get("labels") or {}).get(labels.CRONJOB, "")].append(run)
        for entry in entries:
            name = str(entry.body["metadata"]["name"])
            try:
                await run_cronjob(ctx, entry, by_cron[name], now)
            except CarbonAwareError as exc:  # the next tick tries again
                logger.warning("CarbonAwareCronJob %s/%s: %s", namespace, name, exc)
            except Exception as exc:
                # Reported once: the cron job rests until its spec changes.
                logger.exception("CarbonAwareCronJob %s/%s failed unexpectedly", namespace, name)
                entry.spec = None
                events.warn(
                    ctx.kube, entry.body, reason="InternalError",
                    message=f"The operator could not schedule this CarbonAwareCronJob "
                    f"({describe(exc)}); it creates no runs until its spec changes. Please "
                    "report this with the object's YAML.",
                )  # fmt: skip
