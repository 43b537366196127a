"""SSH runs followed by a task of this process (``CARBONAWARE_SSH_MODE=InProcess``).

The run itself lives on the server under a lease named after the job's UID, so the task is
only its observer: when the operator stops, the run goes on; after a restart the reconcile
pass starts a new task for every released, unfinished in-process run, which attaches to the
same run on the server and records its outcome. The ServerTarget's slot stays taken until
the run's outcome is known.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from carbonaware.api.carbonawarejob import CarbonAwareJobSpec
from carbonaware.api.conditions import format_time
from carbonaware.api.servertarget import ServerTargetSpec
from carbonaware.errors import CarbonAwareError, RunnerConnectionLostError, TargetError
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.sshjobs import run_spec, ssh_inputs, ssh_target
from carbonaware.handlers.sshoutcome import (
    Failure,
    failure_reason,
    finish_ssh_run,
    parent_of,
    record_started,
)
from carbonaware.handlers.state import Key, ReleasedWork, TargetKey
from carbonaware.handlers.work import job_target, parse_spec
from carbonaware.runners.ssh import run_ssh_job, stop_ssh_run
from carbonaware.runners.summary import RunSummary

logger = logging.getLogger(__name__)

OUTPUT_LINES_LOGGED = 200


def task_name(key: Key) -> str:
    return f"ssh {key[1]}/{key[2]}"


def following(ctx: OperatorContext, key: Key) -> bool:
    """A task of this process follows the run of ``key``."""
    name = task_name(key)
    return any(task.get_name() == name and not task.done() for task in ctx.background)


def _log_lines(prefix: str) -> Any:
    remaining = [OUTPUT_LINES_LOGGED]

    def sink(line: bytes) -> None:
        if remaining[0] > 0:
            remaining[0] -= 1
            logger.info("%s %s", prefix, line.decode("utf-8", "replace").rstrip())

    return sink


def start_in_process(
    ctx: OperatorContext,
    key: Key,
    uid: str,
    target_key: TargetKey,
    spec: CarbonAwareJobSpec,
    target: ServerTargetSpec,
    private_key: bytes,
) -> None:
    """Start (or attach to) the run of ``key`` from this process, unless already followed."""
    if following(ctx, key):
        return
    ctx.registry.mark_running(target_key, key)
    task = asyncio.create_task(
        run_in_process(ctx, key, uid, target_key, spec, target, private_key), name=task_name(key)
    )
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)


async def run_in_process(
    ctx: OperatorContext,
    key: Key,
    uid: str,
    target_key: TargetKey,
    spec: CarbonAwareJobSpec,
    target: ServerTargetSpec,
    private_key: bytes,
) -> None:
    """Follow the run and record its outcome; never raises. A lost connection leaves the run
    (and its slot) to the next reconcile pass, which attaches again."""
    _, namespace, name = key
    prefix = f"[{namespace}/{name}]"
    summary: RunSummary | None = None
    failure: Failure | None = None
    try:
        await record_started(ctx, namespace, name, uid, format_time(ctx.clock()))
        # stop_on_cancel=False: the operator stopping (an upgrade, a node drain) must not
        # stop the run; the next operator attaches to it. Deleting the job stops it
        # (:func:`stop_run`).
        summary = await run_ssh_job(
            ssh_target(target, private_key),
            run_spec(spec, uid),
            stdout=_log_lines(prefix),
            stderr=_log_lines(prefix),
            stop_on_cancel=False,
        )
    except RunnerConnectionLostError as exc:
        logger.warning("%s lost the connection to the run; attaching again later: %s", prefix, exc)
        return
    except TargetError as exc:
        failure = (failure_reason(exc.reason), str(exc))
    except CarbonAwareError as exc:
        failure = (failure_reason(getattr(exc, "reason", "")), str(exc))
    ctx.registry.mark_finished(target_key, key)
    try:
        await finish_ssh_run(ctx, namespace, name, uid, summary=summary, failure=failure)
    except CarbonAwareError as exc:
        logger.warning("%s could not record the outcome: %s", prefix, exc)


async def reattach(ctx: OperatorContext, released: ReleasedWork) -> None:
    """Follow a released in-process run nobody follows (after a restart, or a lost link)."""
    if released.target is None or following(ctx, released.key):
        return
    parent = await parent_of(ctx, released.namespace, released.name, released.uid)
    if parent is None or (parent.get("status") or {}).get("completionTime"):
        ctx.registry.untrack(released.key, released.uid)
        ctx.registry.mark_finished(released.target, released.key)
        return
    spec = parse_spec(parent.get("spec") or {})
    target, private_key = await ssh_inputs(ctx, released.target)
    logger.info("attaching to the SSH run of %s/%s", released.namespace, released.name)
    start_in_process(ctx, released.key, released.uid, released.target, spec, target, private_key)


async def stop_run(ctx: OperatorContext, key: Key, uid: str, body: dict[str, Any]) -> None:
    """Stop the SSH run of a deleted or cancelled job on its server, from this process: a task
    following it stops, and a runner pod following it sees the run end and exits. (Deleting a
    runner pod does not stop the run: the pod only lets go of it.)"""
    name = task_name(key)
    for task in list(ctx.background):
        if task.get_name() == name:
            task.cancel()
    target_key = job_target(body)
    if target_key is None:
        return
    try:
        target, private_key = await ssh_inputs(ctx, target_key)
        await stop_ssh_run(ssh_target(target, private_key), uid)
        logger.info("stopped the SSH run of %s/%s on its server", key[1], key[2])
    except CarbonAwareError as exc:
        logger.warning("could not stop the SSH run of %s/%s: %s", key[1], key[2], exc)
    finally:
        ctx.registry.mark_finished(target_key, key)
