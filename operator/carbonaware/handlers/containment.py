"""One object's failure stays that object's: the containment helper for per-object steps.

The refresh loop, the reconcile pass and the watch handlers act on many objects; a bug or an
input nobody foresaw in one of them must never stop the others or the process. Every
per-object step (decide, release, status write, measure) runs inside :func:`contained`:

- a domain error that can pass (API unreachable, 5xx, 429, a provider failure) is logged and
  the step runs again at the next tick: nothing is lost;
- an invalid spec ends the object ``Failed`` (reason ``InvalidSpec``) with an Event;
- anything else (an unexpected exception) ends the object ``Failed`` with reason
  ``InternalError``, the step and the error in the message, an Event, and the traceback in
  the log, so it is reported once instead of crash-looping the operator.

Measuring is different: a run whose measurement fails still records its outcome, without an
SCI; :func:`measured` gives the measuring step that behaviour.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.conditions import JobState, Reason
from carbonaware.errors import CarbonAwareError, SpecError
from carbonaware.handlers import events
from carbonaware.handlers import status as status_docs
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.errors import to_kopf
from carbonaware.handlers.state import Key, WorkKind

logger = logging.getLogger(__name__)

T = TypeVar("T")


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def fail_object(
    ctx: OperatorContext,
    key: Key,
    body: dict[str, Any] | None,
    *,
    reason: Reason,
    message: str,
    now: datetime,
) -> None:
    """End one object ``Failed`` (status, or annotations on a plain Job) and post an Event.

    Best effort: when even this write fails the object is only logged and forgotten, so it
    cannot fail every tick.
    """
    kind, namespace, name = key
    ctx.registry.forget(key)
    if body is None and kind == WorkKind.CARBON_AWARE_JOB.value:
        with contextlib.suppress(CarbonAwareError):
            body = await ctx.kube.get_object(PLURAL, namespace, name)
    uid = ((body or {}).get("metadata") or {}).get("uid")
    if uid:
        ctx.registry.remember_released(str(uid))
    try:
        if kind == WorkKind.CARBON_AWARE_JOB.value:
            conditions = ((body or {}).get("status") or {}).get("conditions") or []
            generation = ((body or {}).get("metadata") or {}).get("generation")
            doc = status_docs.failed(
                conditions, reason=reason, message=message, now=now, generation=generation
            )
            await ctx.kube.patch_status(PLURAL, namespace, name, doc)
        else:
            annotations = status_docs.plain_job_failed_annotations(reason=reason)
            await ctx.kube.patch_job(namespace, name, {"metadata": {"annotations": annotations}})
    except CarbonAwareError as exc:
        logger.error("could not mark %s %s/%s Failed: %s", kind, namespace, name, exc)
    if body is not None:
        events.warn(ctx.kube, body, reason=reason.value, message=message)
    ctx.registry.observe_state(key, JobState.FAILED.value)


@contextlib.asynccontextmanager
async def contained(
    ctx: OperatorContext,
    key: Key,
    body: dict[str, Any] | None,
    step: str,
    *,
    kopf_retries: bool = False,
) -> AsyncIterator[None]:
    """Run one per-object ``step``; its failure becomes this object's, never the caller's.

    ``kopf_retries``: in a kopf handler, an error that can pass is handed to kopf, which calls
    the handler again with back-off; elsewhere the next tick or event tries again.
    """
    kind, namespace, name = key
    try:
        yield
    except SpecError as exc:
        logger.warning("%s %s/%s: %s: %s", kind, namespace, name, step, exc)
        await fail_object(
            ctx, key, body, reason=Reason.INVALID_SPEC, message=str(exc), now=ctx.clock()
        )
    except CarbonAwareError as exc:
        if kopf_retries:
            raise to_kopf(exc) from exc
        logger.warning("%s %s/%s: %s: %s", kind, namespace, name, step, exc)
    except Exception as exc:
        logger.exception("%s %s/%s: %s failed unexpectedly", kind, namespace, name, step)
        message = (
            f"The operator could not {step} this {kind} ({describe(exc)}). It was stopped so "
            "that it cannot disturb other jobs; please report this with the object's YAML."
        )
        await fail_object(
            ctx, key, body, reason=Reason.INTERNAL_ERROR, message=message, now=ctx.clock()
        )


async def measured(
    ctx: OperatorContext, what: str, measure: Callable[[], Awaitable[T]]
) -> tuple[T | None, str | None]:
    """Run a measuring step: (its result, None), or (None, why it failed). Never raises, so a
    run whose measurement fails still records its outcome."""
    try:
        return await measure(), None
    except CarbonAwareError as exc:
        logger.warning("no SCI for %s: %s", what, exc)
        return None, str(exc)
    except Exception as exc:
        logger.exception("measuring %s failed unexpectedly", what)
        return None, describe(exc)
