"""Operator start-up and shutdown: kopf settings, the shared context, the refresh loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.config import OperatorSettings
from carbonaware.errors import CarbonAwareError, ConfigError
from carbonaware.handlers.admission import webhook_server
from carbonaware.handlers.context import (
    OperatorContext,
    PolicyCache,
    ScaledClock,
    context_of,
    same_time,
    wall_clock,
)
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.loop import run_forever
from carbonaware.handlers.peering import PeeringGate
from carbonaware.handlers.reconcile import initial_sync
from carbonaware.k8s import Kube
from carbonaware.metrics import Metrics
from carbonaware.providers.base import Outcome, RequestHook
from carbonaware.providers.factory import HTTP_PROVIDERS, build_provider
from carbonaware.runners.allowlist import HostAllowList
from carbonaware.runners.sshpod import COMPONENT, COMPONENT_LABEL

logger = logging.getLogger(__name__)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's bookkeeping under our domain, so our status schema stays strict."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=labels.KOPF_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=labels.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{labels.DOMAIN}/kopf-finalizer"
    settings.posting.reporting_component = "carbon-aware-operator"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.error_backoffs = [1, 2, 5, 10, 20]
    # At most worker_limit objects are worked on at once, and an object's worker stays
    # idle_timeout after its last event: with kopf's default of 5 s, thousands of jobs
    # created together queue behind idle workers for minutes before their first status.
    # One second lets them through about as fast as the API server answers (bench/scale.py).
    settings.queueing.worker_limit = 64
    settings.queueing.idle_timeout = 1.0
    # Watch only what is ours, filtered by the API server: managed plain Jobs and our child
    # Jobs (both carry carbonaware.io/managed), and SSH-runner pods. Unrelated Jobs and Pods
    # never reach the operator (bench/unrelated.py measures the memory this saves).
    settings.watching.label_selectors["batch", "jobs"] = labels.MANAGED
    settings.watching.label_selectors["v1", "pods"] = f"{COMPONENT_LABEL}={COMPONENT}"


def provider_request_hooks(metrics: Metrics) -> tuple[RequestHook, RequestHook]:
    """``(on_request, on_fetch)`` for the provider chain, feeding
    ``carbonaware_provider_requests_total``: every HTTP attempt of an HTTP provider (``ok`` or
    the failure's outcome, retries included), every fetch of a local source (static, trace),
    and every ``stale`` answer (a remembered value served because the upstream failed)."""

    def count(provider: str, outcome: str) -> None:
        metrics.provider_requests.labels(provider, outcome).inc()

    def count_fetch(provider: str, outcome: str) -> None:
        # HTTP providers' fetches are already counted attempt by attempt by ``count``.
        if outcome == Outcome.STALE or provider not in HTTP_PROVIDERS:
            count(provider, outcome)

    return count, count_fetch


def build_context(settings: OperatorSettings, metrics: Metrics | None = None) -> OperatorContext:
    metrics = metrics or Metrics()
    on_request, on_fetch = provider_request_hooks(metrics)
    clock: Callable[[], datetime] = wall_clock
    observed: Callable[[datetime], datetime] = same_time
    if settings.time_scale != 1.0:
        scaled = ScaledClock.from_settings(settings)
        clock, observed = scaled, scaled.at
        logger.warning(
            "operator time runs %gx as fast as the wall clock from %s (CARBONAWARE_TIME_SCALE):"
            " a testing and demo aid, not for production",
            scaled.scale,
            scaled.origin.isoformat(),
        )
    provider = build_provider(settings, clock=clock, on_request=on_request, on_fetch=on_fetch)
    return OperatorContext(
        allowed_hosts=HostAllowList.parse(settings.ssh_allowed_hosts),
        settings=settings,
        kube=Kube.connect(timeout_seconds=settings.kube_timeout_seconds),
        metrics=metrics,
        provider=provider,
        intensity=RegionIntensity(provider, metrics, blend=settings.forecast_blend),
        policies=PolicyCache(ttl=settings.webhook_policy_cache_seconds),
        clock=clock,
        observed=observed,
    )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else ``$KUBECONFIG`` as it is now (not as it was when a
    client library was first imported)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def started(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    ctx = getattr(memo, "ctx", None)
    if not isinstance(ctx, OperatorContext):
        operator_settings = getattr(memo, "settings", None) or OperatorSettings()
        try:
            ctx = build_context(operator_settings)
        except ConfigError as exc:  # broken settings stop the operator, with the reason
            raise kopf.PermanentError(str(exc)) from exc
        serve_metrics(
            ctx.metrics, operator_settings.metrics_port, operator_settings.metrics_address
        )
        memo.ctx = ctx
    if ctx.settings.webhook_port:
        settings.admission.server = webhook_server(ctx.settings)
    # Before kopf starts watching (it waits for this handler), so a job seen at start-up is
    # never released onto a ServerTarget whose slots runs from before the restart still hold.
    try:
        await initial_sync(ctx)
    except CarbonAwareError as exc:
        logger.warning("counting the runs already going failed (the loop retries): %s", exc)
    gate = PeeringGate(ctx.kube, getattr(memo, "peering", None))
    memo.loop_task = asyncio.create_task(run_forever(ctx, gate.is_active), name="refresh-loop")
    memo.loop_task.add_done_callback(_stop_if_loop_died)
    logger.info(
        "carbon-aware-operator started: providers=%s default region=%s tick=%ss",
        ctx.settings.providers,
        ctx.settings.default_region,
        ctx.settings.tick_seconds,
    )


def serve_metrics(metrics: Metrics, port: int, address: str = "0.0.0.0") -> None:
    """``/metrics`` on ``port`` (0: off). A port that cannot be bound stops the operator: a
    retry of this handler would find the context built and run on without metrics."""
    if not port:
        return
    try:
        metrics.serve(port, address)
    except OSError as exc:
        raise kopf.PermanentError(
            f"cannot serve metrics on port {port} (CARBONAWARE_METRICS_PORT): {exc.strerror or exc}"
        ) from exc


@kopf.on.probe(id="refreshLoop")
def refresh_loop_alive(memo: kopf.Memo, **_: Any) -> str:
    """The liveness probe: fails once no tick has completed for ``liveness_ticks`` ticks (a
    hung call, a wedged loop), so Kubernetes restarts the operator."""
    ctx = context_of(memo)
    idle = time.monotonic() - ctx.last_tick_completed
    allowed = ctx.settings.liveness_ticks * ctx.settings.tick_seconds
    if idle > allowed:
        raise kopf.PermanentError(
            f"the refresh loop has not completed a tick for {idle:.0f} s (limit {allowed:.0f} s)"
        )
    return f"last tick {idle:.1f} s ago"


def _stop_if_loop_died(task: asyncio.Task[None]) -> None:
    """Without its loop the operator would hold jobs forever: exit, so it is restarted."""
    if task.cancelled() or task.exception() is None:
        return
    logger.critical("the refresh loop died: %r; stopping the operator", task.exception())
    os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
async def stopped(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "loop_task", None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    ctx = context_of(memo)
    for background in list(ctx.background):
        background.cancel()
    await ctx.provider.aclose()
    ctx.kube.close()
