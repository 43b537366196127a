"""ServerTargets: capacity in the registry, and a periodic probe of every target.

Probes run from the refresh loop (:func:`probe_due_targets`), not from per-object timers,
so there is no finalizer on a ServerTarget and deleting one never waits for the operator.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import kopf
from pydantic import ValidationError

from carbonaware import GROUP, VERSION
from carbonaware.api.conditions import (
    ConditionStatus,
    ConditionType,
    Reason,
    find_condition,
    format_time,
    set_condition,
)
from carbonaware.api.servertarget import PLURAL, HostKeyPolicy, ServerTargetSpec
from carbonaware.errors import CarbonAwareError, TargetError
from carbonaware.handlers import events
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.sshjobs import check_host_allowed, private_key
from carbonaware.handlers.state import TargetKey
from carbonaware.handlers.work import describe_validation_error
from carbonaware.runners.ssh import probe_target
from carbonaware.runners.sshspec import HostKeyPolicy as RunnerHostKeyPolicy

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 15.0
PROBE_CONCURRENCY = 8


@kopf.on.event(GROUP, VERSION, PLURAL)
async def servertarget_event(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    ctx = context_of(memo)
    meta = body.get("metadata", {})
    key: TargetKey = (str(meta.get("namespace")), str(meta.get("name")))
    if event.get("type") == "DELETED":
        ctx.registry.drop_target(key)
        ctx.metrics.forget_target(*key)
        return
    try:
        spec = ServerTargetSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError as exc:
        logger.warning("ServerTarget %s/%s: %s", *key, describe_validation_error(exc, "spec"))
        return
    state = ctx.registry.set_target(key, max_concurrent=spec.max_concurrent, region=spec.region)
    first_sight = state.spec is None or state.generation != meta.get("generation")
    state.spec = spec
    state.generation = meta.get("generation")
    state.body = dict(body)
    if first_sight:
        state.last_probe = None  # probe a new or edited target at the next tick
        follow_target_region(ctx, key, spec.region)


def follow_target_region(ctx: OperatorContext, key: TargetKey, region: str | None) -> None:
    """Held jobs without their own spec.region plan with their target's region, also when
    they were seen before the target (operator start) or the target's region was edited."""
    if not region:
        return
    for work in ctx.registry.held():
        if work.target == key and not (work.body.get("spec") or {}).get("region"):
            work.region = region


def probe_failure_reason(error: CarbonAwareError) -> Reason:
    """Why a probe could not even start (no key): the target error's reason if we know it."""
    if isinstance(error, TargetError):
        try:
            return Reason(error.reason)
        except ValueError:
            pass
    return Reason.SECRET_NOT_FOUND


def host_key_condition(
    policy: HostKeyPolicy, reason: Reason
) -> tuple[ConditionStatus, Reason, str]:
    """``HostKeyChecked``: False (a warning) when checking is off, else what the probe saw."""
    if policy is HostKeyPolicy.ACCEPT_ANY:
        return (
            ConditionStatus.FALSE,
            Reason.HOST_KEY_CHECK_DISABLED,
            "hostKeyPolicy AcceptAny: the server's identity is not checked, so a "
            "man-in-the-middle could receive the jobs; set knownHosts and use Strict.",
        )
    if reason is Reason.HOST_KEY_MISMATCH:
        return (
            ConditionStatus.TRUE,
            Reason.HOST_KEY_MISMATCH,
            "Host keys are checked against knownHosts; the server's key did not match.",
        )
    return (
        ConditionStatus.TRUE,
        Reason.HOST_KEY_VERIFIED,
        "Host keys are checked against knownHosts.",
    )


def counts_of(ctx: OperatorContext, key: TargetKey) -> dict[str, int]:
    return {"running": len(ctx.registry.target(key).running), "queued": ctx.registry.queued_on(key)}


async def probe_one(ctx: OperatorContext, key: TargetKey) -> None:
    state = ctx.registry.target(key)
    spec, body = state.spec, state.body
    if spec is None or body is None:
        return
    now = ctx.clock()
    try:
        await check_host_allowed(ctx, spec)
        key_bytes = await private_key(ctx, key[0], spec)
        result = await probe_target(
            spec.host,
            spec.port,
            spec.user,
            key_bytes,
            spec.known_hosts,
            RunnerHostKeyPolicy(spec.host_key_policy.value),
            PROBE_TIMEOUT_SECONDS,
        )
        reachable, reason, message = result.reachable, Reason(result.reason), result.message
    except CarbonAwareError as exc:
        reachable, reason, message = False, probe_failure_reason(exc), str(exc)
    generation = body.get("metadata", {}).get("generation")
    previous = (body.get("status") or {}).get("conditions") or []
    conditions = set_condition(
        previous,
        type=ConditionType.REACHABLE,
        status=ConditionStatus.TRUE if reachable else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    checked, checked_reason, checked_message = host_key_condition(spec.host_key_policy, reason)
    conditions = set_condition(
        conditions,
        type=ConditionType.HOST_KEY_CHECKED,
        status=checked,
        reason=checked_reason,
        message=checked_message,
        now=now,
        generation=generation,
    )
    status = {
        "conditions": conditions,
        "lastProbeTime": format_time(now),
        **counts_of(ctx, key),
        "observedGeneration": generation,
    }
    # The probe's result is known now, whether or not the status write below succeeds.
    ctx.metrics.target_reachable.labels(*key).set(1 if reachable else 0)
    written = await ctx.kube.patch_status(PLURAL, key[0], key[1], status)
    state.body = {**body, "status": written.get("status", status)}
    state.last_probe = now
    was_disabled = find_condition(previous, ConditionType.HOST_KEY_CHECKED)
    if checked_reason is Reason.HOST_KEY_CHECK_DISABLED and (
        was_disabled is None or was_disabled.get("reason") != checked_reason.value
    ):
        events.warn(ctx.kube, body, reason=checked_reason.value, message=checked_message)


async def write_counts(ctx: OperatorContext, key: TargetKey) -> None:
    """``running``/``queued`` between probes, written only when they changed."""
    state = ctx.registry.target(key)
    if state.body is None:
        return
    counts = counts_of(ctx, key)
    shown = state.body.get("status") or {}
    if all(shown.get(field) == value for field, value in counts.items()):
        return
    written = await ctx.kube.patch_status(PLURAL, key[0], key[1], counts)
    state.body = {**state.body, "status": written.get("status", {**shown, **counts})}


async def probe_due_targets(ctx: OperatorContext) -> None:
    """Probe every target not probed for ``ssh_probe_seconds`` (a few at a time); write the
    running/queued counts of the others when they changed."""
    now = ctx.clock()
    every = timedelta(seconds=ctx.settings.ssh_probe_seconds)
    known = {key: state for key, state in ctx.registry.targets().items() if state.spec is not None}
    due = {
        key
        for key, state in known.items()
        if state.last_probe is None or now - state.last_probe >= every
    }
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def guarded(key: TargetKey) -> None:
        async with gate:
            try:
                await (probe_one if key in due else write_counts)(ctx, key)
            except CarbonAwareError as exc:
                logger.warning("probe of ServerTarget %s/%s: %s", *key, exc)

    await asyncio.gather(*(guarded(key) for key in known))
