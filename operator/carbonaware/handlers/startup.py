"""Operator start-up and shutdown: kopf settings, the shared context, the refresh loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

import kopf

from carbonaware.api import labels
from carbonaware.config import OperatorSettings
from carbonaware.handlers.context import OperatorContext, context_of
from carbonaware.handlers.intensity import RegionIntensity
from carbonaware.handlers.loop import run_forever
from carbonaware.handlers.peering import PeeringGate
from carbonaware.k8s import Kube
from carbonaware.metrics import Metrics
from carbonaware.providers.factory import build_provider

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
    settings.batching.worker_limit = 64


def build_context(settings: OperatorSettings, metrics: Metrics | None = None) -> OperatorContext:
    metrics = metrics or Metrics()
    provider = build_provider(
        settings,
        on_request=lambda name, outcome: metrics.provider_requests.labels(name, outcome).inc(),
    )
    return OperatorContext(
        settings=settings,
        kube=Kube.connect(),
        metrics=metrics,
        provider=provider,
        intensity=RegionIntensity(provider, metrics),
    )


@kopf.on.startup()
async def started(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    ctx = getattr(memo, "ctx", None)
    if not isinstance(ctx, OperatorContext):
        operator_settings = getattr(memo, "settings", None) or OperatorSettings()
        ctx = build_context(operator_settings)
        memo.ctx = ctx
        if operator_settings.metrics_port:
            ctx.metrics.serve(operator_settings.metrics_port)
    gate = PeeringGate(ctx.kube, getattr(memo, "peering", None))
    memo.loop_task = asyncio.create_task(run_forever(ctx, gate.is_active), name="refresh-loop")
    memo.loop_task.add_done_callback(_stop_if_loop_died)
    logger.info(
        "carbon-aware-operator started: providers=%s default region=%s tick=%ss",
        ctx.settings.providers,
        ctx.settings.default_region,
        ctx.settings.tick_seconds,
    )


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
