"""Events about our objects, posted in the background, and owner references.

Events are posted with our own client rather than kopf's, because the refresh loop runs
outside kopf's handler context. Posting never blocks a release and never fails one: an
Event that cannot be written is logged and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import kopf

from carbonaware.errors import KubernetesError
from carbonaware.k8s import Kube

logger = logging.getLogger(__name__)

COMPONENT = "carbon-aware-operator"
_pending: set[asyncio.Task[None]] = set()


async def _post(kube: Kube, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        await kube.create_event(
            obj, type_=type_, reason=reason, message=message, component=COMPONENT
        )
    except KubernetesError as exc:
        logger.info("could not post Event %s: %s", reason, exc)


def post(
    kube: Kube, obj: dict[str, Any] | kopf.Body, *, type_: str, reason: str, message: str
) -> None:
    body = dict(obj)
    if not body.get("metadata", {}).get("uid"):
        return
    task = asyncio.create_task(_post(kube, body, type_, reason, message))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def info(kube: Kube, obj: dict[str, Any] | kopf.Body, *, reason: str, message: str) -> None:
    """A Normal Event on ``obj`` (shown by ``kubectl describe``)."""
    post(kube, obj, type_="Normal", reason=reason, message=message)


def warn(kube: Kube, obj: dict[str, Any] | kopf.Body, *, reason: str, message: str) -> None:
    """A Warning Event on ``obj``."""
    post(kube, obj, type_="Warning", reason=reason, message=message)


def adopt(child: dict[str, Any], owner: dict[str, Any] | kopf.Body) -> None:
    """Owner reference (controller) from ``owner`` on ``child``: deleted with its owner."""
    kopf.adopt(child, owner=cast(kopf.Body, owner))
