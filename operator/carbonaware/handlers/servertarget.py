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
    format_time,
    set_condition,
)
from carbonaware.api.servertarget import PLURAL, HostKeyPolicy, ServerTargetSpec
from carbonaware.errors import CarbonAwareError
from carbonaware.handlers import events
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.sshjobs import private_key
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


async def probe_one(ctx: OperatorContext, key: TargetKey) -> None:
    state = ctx.registry.target(key)
    spec, body = state.spec, state.body
    if spec is None or body is None:
        return
    now = ctx.clock()
    try:
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
        reachable, reason, message = False, Reason.SECRET_NOT_FOUND, str(exc)
    generation = body.get("metadata", {}).get("generation")
    conditions = (body.get("status") or {}).get("conditions") or []
    conditions = set_condition(
        conditions,
        type=ConditionType.REACHABLE,
        status=ConditionStatus.TRUE if reachable else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )
    accept_any = spec.host_key_policy is HostKeyPolicy.ACCEPT_ANY
    conditions = set_condition(
        conditions,
        type=ConditionType.HOST_KEY_CHECKED,
        status=ConditionStatus.FALSE if accept_any else ConditionStatus.TRUE,
        reason=Reason.HOST_KEY_CHECK_DISABLED if accept_any else Reason.HOST_KEY_VERIFIED,
        message=(
            "hostKeyPolicy AcceptAny: the server's identity is not checked, so a "
            "man-in-the-middle could receive the jobs; set knownHosts and use Strict."
            if accept_any
            else "Host keys are checked against knownHosts."
        ),
        now=now,
        generation=generation,
    )
    status = {
        "conditions": conditions,
        "lastProbeTime": format_time(now),
        "running": len(state.running),
        "queued": ctx.registry.queued_on(key),
        "observedGeneration": generation,
    }
    written = await ctx.kube.patch_status(PLURAL, key[0], key[1], status)
    state.body = {**body, "status": written.get("status", status)}
    state.last_probe = now
    ctx.metrics.target_reachable.labels(*key).set(1 if reachable else 0)
    if accept_any and not (body.get("status") or {}).get("lastProbeTime"):
        events.warn(
            ctx.kube,
            body,
            reason=Reason.HOST_KEY_CHECK_DISABLED.value,
            message=str(conditions[-1]["message"]),
        )


async def probe_due_targets(ctx: OperatorContext) -> None:
    """Probe every target not probed for ``ssh_probe_seconds`` (a few at a time)."""
    now = ctx.clock()
    every = timedelta(seconds=ctx.settings.ssh_probe_seconds)
    due = [
        key
        for key, state in ctx.registry.targets().items()
        if state.spec is not None and (state.last_probe is None or now - state.last_probe >= every)
    ]
    gate = asyncio.Semaphore(PROBE_CONCURRENCY)

    async def guarded(key: TargetKey) -> None:
        async with gate:
            try:
                await probe_one(ctx, key)
            except CarbonAwareError as exc:
                logger.warning("probe of ServerTarget %s/%s: %s", *key, exc)

    await asyncio.gather(*(guarded(key) for key in due))
