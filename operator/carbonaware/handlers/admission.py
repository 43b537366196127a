"""The mutating admission webhook through which CarbonAwarePolicies govern plain Jobs.

kopf serves it (``settings.admission.server``) when ``CARBONAWARE_WEBHOOK_PORT`` is set; the
webhook configuration is installed by the Helm chart (or, on the local plane, by its
scripts), never by the operator, so the operator needs no right to change admission. Every
Job created in a namespace the configuration selects reaches :func:`govern_job`, which finds
the namespace's governing policy (:func:`carbonaware.api.policy.admission_for`) and patches
the Job being created. The webhook fails open at every level: the configuration's
``failurePolicy: Ignore`` covers an operator that is down or unreachable, and here any error
or a slow API answer leaves the Job unchanged rather than refusing it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from carbonaware.api.policy import Admission, admission_for
from carbonaware.config import OperatorSettings
from carbonaware.handlers.context import PolicyCache, context_of
from carbonaware.k8s import Kube

logger = logging.getLogger(__name__)

WEBHOOK_ID = "govern-jobs"  # kopf serves a handler at /<its id>: the configuration's path
# How long the webhook waits for the policies of a namespace before admitting the Job as it is
# (the configuration's timeoutSeconds is larger, so the API server never waits on us).
LIST_TIMEOUT_SECONDS = 2.0


def apply(admission: Admission, patch: kopf.Patch) -> None:
    """Write what governing changes into kopf's patch of the Job being created."""
    patch.setdefault("metadata", {})
    patch["metadata"]["labels"] = dict(admission.labels)
    patch["metadata"]["annotations"] = dict(admission.annotations)
    if admission.suspend:
        patch["spec"] = {"suspend": True}


async def admit(
    cache: PolicyCache, kube: Kube, job: dict[str, Any], namespace: str
) -> tuple[Admission | None, str]:
    """The admission for a Job being created, and the outcome to count."""
    try:
        policies = await asyncio.wait_for(cache.of(kube, namespace), LIST_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - fail open: the Job is created unchanged
        logger.warning("Job created in %s unchanged: its policies could not be read: %s: %s",
                       namespace, type(exc).__name__, exc)  # fmt: skip
        return None, "error"
    admission = admission_for(job, policies)
    if admission is None:
        return None, "ungoverned"
    return admission, "enforced" if admission.suspend else "shadowed"


async def govern_job(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, dryrun: bool, **_: Any
) -> None:
    """kopf's mutating handler for Jobs being created. Never raises: an exception here would
    refuse the Job (``failurePolicy: Ignore`` covers only a webhook that cannot be called)."""
    try:
        ctx = context_of(memo)
        job = dict(body)
        namespace = str(job.get("metadata", {}).get("namespace") or "")
        admission, outcome = await admit(ctx.policies, ctx.kube, job, namespace)
        if not dryrun:
            ctx.metrics.policy_admissions.labels(namespace, outcome).inc()
        if admission is not None:
            apply(admission, patch)
            logger.info(
                "Job %s/%s governed by CarbonAwarePolicy %s (%s)",
                namespace, job.get("metadata", {}).get("name") or "(generated name)",
                admission.policy, admission.mode.value,
            )  # fmt: skip
    except Exception:  # fail open, never refuse a Job
        logger.exception("the admission webhook failed; the Job is created unchanged")


def register_webhook(registry: kopf.OperatorRegistry | None = None) -> None:
    """Register :func:`govern_job` for Jobs' CREATE (only when the webhook is served: kopf
    refuses to start with admission handlers and no server)."""
    kopf.on.mutate(
        "batch", "v1", "jobs",
        id=WEBHOOK_ID,
        operations=["CREATE"],
        ignore_failures=True,
        side_effects=False,
        registry=registry,
    )(govern_job)  # fmt: skip


def webhook_server(settings: OperatorSettings) -> kopf.WebhookServer:
    """kopf's HTTPS server for the webhook, on the mounted certificate (re-read on renewal)."""
    directory = settings.webhook_cert_dir
    assert directory is not None  # the settings refuse a webhook port without it
    return kopf.WebhookServer(
        addr=settings.webhook_address,
        port=settings.webhook_port,
        certfile=directory / "tls.crt",
        pkeyfile=directory / "tls.key",
        cafile=directory / "ca.crt",
        file_check_interval=settings.webhook_cert_check_seconds,
    )
