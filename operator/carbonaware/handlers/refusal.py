"""When the API server refuses to create a job's Job or runner pod.

A refusal is information for the user, not a reason to forget the job:

- 403 (a ResourceQuota such as ``count/jobs.batch``, an admission webhook or policy that
  denies with ``Forbidden``, missing RBAC) and 409 (the name is taken by an object that is not
  ours) can pass: the job stays held with ``Held=True``, reason ``CreateRejected``, the API
  server's message quoted, a Warning Event, and the create is tried again with back-off
  (5 s doubling to 60 s). It is released as soon as a create is accepted. If it is still
  refused once the job could no longer finish by its deadline (latest start plus expected
  duration), it ends ``Failed`` with the last refusal.
- 400 and 422 (the Job API or an admission policy says the object is invalid) cannot pass
  by waiting: the job ends ``Failed`` at once, with the message.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from carbonaware.api.conditions import Reason
from carbonaware.errors import KubernetesError
from carbonaware.handlers import events
from carbonaware.handlers.containment import fail_object
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.hold import write_held
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.state import HeldWork
from carbonaware.k8s import BAD_REQUEST, CONFLICT, FORBIDDEN, UNPROCESSABLE
from carbonaware.scheduling.policy import Decision

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 60.0
ADMISSION_MARKERS = ("admission webhook", "ValidatingAdmissionPolicy", "denied request")


def can_pass(error: KubernetesError) -> bool:
    """A refusal worth retrying: quota, admission ``Forbidden``, RBAC, a taken name."""
    return error.status in (FORBIDDEN, CONFLICT)


def is_refusal(error: KubernetesError) -> bool:
    """The API server answered and said no (as opposed to being unreachable or failing)."""
    return error.status in (BAD_REQUEST, FORBIDDEN, CONFLICT, UNPROCESSABLE)


def retry_delay(rejections: int) -> float:
    """Seconds before the next create after ``rejections`` refusals in a row."""
    return float(min(FIRST_RETRY_SECONDS * 2 ** max(rejections - 1, 0), MAX_RETRY_SECONDS))


def backing_off(work: HeldWork) -> bool:
    return work.retry_at is not None and time.monotonic() < work.retry_at


def give_up_time(work: HeldWork) -> datetime:
    """After this, the run could no longer finish when it was due to."""
    return work.latest_start + timedelta(seconds=work.expected_duration_seconds)


async def refused(
    ctx: OperatorContext,
    work: HeldWork,
    error: KubernetesError,
    *,
    what: str,
    decision: Decision,
    snapshot: RegionSnapshot | None,
    now: datetime,
) -> None:
    """Record a refused create of ``what`` (e.g. "Job x"). Caller holds the object's lock."""
    quoted = f"The API server refused to create {what}: {error}"
    logger.warning("%s/%s: %s", work.namespace, work.name, quoted)
    permanent = not can_pass(error)
    if permanent or now > give_up_time(work):
        admission = any(marker in str(error) for marker in ADMISSION_MARKERS)
        reason = Reason.CREATE_REJECTED if admission or not permanent else Reason.INVALID_SPEC
        ending = (
            "; it cannot be created as written: fix the spec and create the job again"
            if permanent
            else f"; still refused after {work.rejections + 1} attempts, and the job can no "
            "longer finish by its deadline"
        )
        await fail_object(ctx, work.key, work.body, reason=reason, message=quoted + ending, now=now)
        return
    work.rejections += 1
    delay = retry_delay(work.rejections)
    work.retry_at = time.monotonic() + delay
    message = (
        f"{quoted}. Due since {decision.planned_start:%Y-%m-%d %H:%M:%S}Z; trying again in "
        f"{delay:.0f} s (attempt {work.rejections}), and released as soon as it is accepted."
    )
    previous = work.held_reason
    await write_held(
        ctx, work, decision, snapshot, now, reason=Reason.CREATE_REJECTED, message=message
    )
    if previous != Reason.CREATE_REJECTED.value or work.rejections in (1, 5, 10, 20):
        events.warn(ctx.kube, work.body, reason=Reason.CREATE_REJECTED.value, message=quoted)
