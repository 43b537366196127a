"""Run a job on a user's server over SSH exactly once, measure it, and probe ServerTargets.

:func:`run_ssh_job` connects (see :mod:`carbonaware.runners.sshconnect`), starts the run named
by ``SshRunSpec.run_id`` unless it already exists on the server, and attaches to it: the job's
output is streamed line by line and the outcome comes from the server's exit record (see
:mod:`carbonaware.runners.sshlease`). The run is supervised on the server, so it goes on when
the connection, this process or its pod dies; a later call with the same run id attaches to it
(from where its output was, when it is the same call re-attaching) and never starts a second
copy. The server enforces ``timeoutSeconds`` itself; the client keeps a backstop.

:func:`stop_ssh_run` stops a run by id from a fresh connection, e.g. after an operator restart.
:func:`probe_target` connects and authenticates without running anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncssh

from carbonaware.errors import (
    CarbonAwareError,
    RunnerConnectionLostError,
    RunnerError,
    SpecError,
    TargetError,
)
from carbonaware.runners.sshattach import (
    AFTER_KILL_WAIT_SECONDS,
    STOP_START_WAIT_SECONDS,
    AttachSession,
    LineSink,
    RunProgress,
    signal_job,
    summarise,
)
from carbonaware.runners.sshconnect import PROBE_OK_REASON, ProbeResult, connect, probe_target
from carbonaware.runners.sshconnect import endpoint as _endpoint
from carbonaware.runners.sshlease import (
    build_run_script,
    build_stop_script,
    new_claim_token,
    new_run_id,
)
from carbonaware.runners.sshsampler import HostSampler
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, SshTargetSpec, validate_run_id
from carbonaware.runners.summary import RunSummary, parse_summary

__all__ = [
    "PROBE_OK_REASON",
    "HostKeyPolicy",
    "LineSink",
    "ProbeResult",
    "RunSummary",
    "SshRunSpec",
    "SshTargetSpec",
    "parse_summary",
    "probe_target",
    "run_ssh_job",
    "stop_ssh_run",
]

logger = logging.getLogger(__name__)

# The client stops a run itself only this long after the server's watchdog should have.
BACKSTOP_MARGIN_SECONDS = 60.0
_REATTACH_FIRST_DELAY_SECONDS = 1.0
_REATTACH_MAX_DELAY_SECONDS = 15.0


def _writer(stream: Any) -> LineSink:
    def write(line: bytes) -> None:
        stream.write(line)
        stream.flush()

    return write


def _discard(line: bytes) -> None:
    del line


def _backstop(spec: SshRunSpec, progress: RunProgress) -> Callable[[], float | None]:
    """Seconds until the client stops the run itself, by the server's clock."""

    def remaining() -> float | None:
        server_now = progress.server_now()
        if spec.timeout_seconds is None or progress.start_epoch is None or server_now is None:
            return None
        limit = spec.timeout_seconds + spec.kill_grace_seconds + BACKSTOP_MARGIN_SECONDS
        return progress.start_epoch + limit - server_now

    return remaining


async def _attach_once(
    target: SshTargetSpec,
    spec: SshRunSpec,
    progress: RunProgress,
    sinks: tuple[LineSink, LineSink],
    stop_on_cancel: bool,
) -> tuple[bool, bool]:
    """One connection: start or attach. Returns (outcome received, server heard from)."""
    async with connect(target) as connection:
        session = AttachSession(
            connection,
            progress,
            stdout=sinks[0],
            stderr=sinks[1],
            sampler=HostSampler(connection, spec.sample_interval_seconds),
        )
        script = build_run_script(
            spec,
            run_id=progress.run_id,
            marker=session.marker,
            token=progress.token,
            stdout_offset=progress.stdout_offset,
            stderr_offset=progress.stderr_offset,
        )
        finished = await session.run(
            script,
            backstop=_backstop(spec, progress),
            kill_grace_seconds=spec.kill_grace_seconds,
            stop_on_cancel=stop_on_cancel,
        )
    if not finished and progress.backstop_fired:
        raise RunnerError(
            f"run {progress.run_id} went past its timeout and did not end after SIGTERM and "
            "SIGKILL of its process group; check the server for processes in state D"
        )
    return finished, session.controls > 0


async def _follow_run(
    target: SshTargetSpec,
    spec: SshRunSpec,
    progress: RunProgress,
    sinks: tuple[LineSink, LineSink],
    stop_on_cancel: bool,
) -> None:
    """Attach until the outcome arrives, re-attaching after a lost connection with back-off
    for up to ``spec.reattach_seconds``."""
    dropped_at: float | None = None
    delay = _REATTACH_FIRST_DELAY_SECONDS
    problem = "the connection ended"
    while True:
        try:
            finished, heard = await _attach_once(target, spec, progress, sinks, stop_on_cancel)
        except TargetError as exc:
            if not progress.sent:
                raise  # nothing was started: the caller learns why at once
            finished, heard, problem = False, False, str(exc)
        if finished:
            return
        if heard:
            dropped_at, delay = None, _REATTACH_FIRST_DELAY_SECONDS
        now = time.monotonic()
        if dropped_at is None:
            dropped_at = now
            logger.warning(
                "lost the connection to %s during run %s; re-attaching for up to %g s",
                _endpoint(target),
                progress.run_id,
                spec.reattach_seconds,
            )
        elapsed = now - dropped_at
        if elapsed >= spec.reattach_seconds:
            raise RunnerConnectionLostError(
                f"the connection to {_endpoint(target)} was lost during run {progress.run_id} "
                f"and could not be re-established within {spec.reattach_seconds:g} s "
                f"({problem}). The run goes on on the server: a call with run id "
                f"{progress.run_id} attaches to it and gets its outcome"
            )
        await asyncio.sleep(min(delay, spec.reattach_seconds - elapsed))
        delay = min(delay * 2, _REATTACH_MAX_DELAY_SECONDS)


async def run_ssh_job(
    target: SshTargetSpec,
    spec: SshRunSpec,
    *,
    stdout: LineSink | None = None,
    stderr: LineSink | None = None,
    stop_on_cancel: bool = True,
) -> RunSummary:
    """Run ``spec`` on ``target`` once (or attach to the run with its ``run_id``) and return
    what it did.

    The job's stdout/stderr lines go to ``stdout``/``stderr`` (default: this process's own)
    as they arrive. Raises :class:`TargetUnreachableError`, :class:`TargetAuthError` or
    :class:`HostKeyMismatchError` when the first connection fails (nothing started then);
    :class:`RunnerConnectionLostError` when the connection was lost and could not be restored
    within ``spec.reattach_seconds`` (the run goes on); :class:`RunLostError` when the server
    lost the run; :class:`RunnerError` when the run cannot be completed or observed.

    Cancelling the call stops the run (SIGTERM to its process group, SIGKILL after the kill
    grace) and waits briefly for its exit record; with ``stop_on_cancel=False`` the run goes
    on and a later call attaches to it.
    """
    progress = RunProgress(run_id=spec.run_id or new_run_id(), token=new_claim_token())
    sinks = (
        stdout if stdout is not None else _writer(sys.stdout.buffer),
        stderr if stderr is not None else _writer(sys.stderr.buffer),
    )
    try:
        await _follow_run(target, spec, progress, sinks, stop_on_cancel)
    except asyncio.CancelledError:
        unstopped = not progress.stop_requested and progress.final is None
        if stop_on_cancel and unstopped and (progress.sent or spec.run_id is not None):
            # No live connection did it: stop the run from a fresh one, within bounds.
            limit = (
                target.connect_timeout_seconds
                + spec.kill_grace_seconds
                + STOP_START_WAIT_SECONDS
                + AFTER_KILL_WAIT_SECONDS
            )
            with contextlib.suppress(CarbonAwareError, TimeoutError, OSError, asyncssh.Error):
                await asyncio.shield(
                    asyncio.wait_for(
                        stop_ssh_run(target, progress.run_id, spec.kill_grace_seconds), limit
                    )
                )
        raise
    return summarise(progress)


async def _stop_once(
    connection: asyncssh.SSHClientConnection,
    progress: RunProgress,
    grace_seconds: float,
    limit_seconds: float,
) -> bool:
    session = AttachSession(connection, progress, stdout=_discard, stderr=_discard)
    script = build_stop_script(
        run_id=progress.run_id, marker=session.marker, grace_seconds=grace_seconds
    )
    return await session.run(script, limit_seconds=limit_seconds, stop_on_cancel=False)


async def stop_ssh_run(
    target: SshTargetSpec, run_id: str, grace_seconds: float = 10.0
) -> RunSummary | None:
    """Stop the run ``run_id`` on ``target``: SIGTERM to the job's process group, SIGKILL after
    ``grace_seconds``, then wait for its exit record.

    Returns the run's outcome (``attached`` True, no host figures), also when it had already
    ended; None when it never began: a run id that was never started is recorded as stopped,
    so no later call starts it. Raises :class:`RunLostError` when the server lost the run and
    :class:`RunnerError` when it did not end in time.
    """
    validate_run_id(run_id)
    if not (math.isfinite(grace_seconds) and grace_seconds > 0):
        raise SpecError("the stop grace must be a positive number of seconds")
    progress = RunProgress(run_id=run_id, token="")
    async with connect(target) as connection:
        limit = grace_seconds + STOP_START_WAIT_SECONDS + AFTER_KILL_WAIT_SECONDS
        finished = await _stop_once(connection, progress, grace_seconds, limit)
        if not finished and progress.pgid is not None:
            # The watchdog did not end it: SIGKILL from here, then read the record again.
            await signal_job(connection, progress.pgid, "KILL")
            finished = await _stop_once(
                connection, progress, grace_seconds, AFTER_KILL_WAIT_SECONDS
            )
    if not finished:
        raise RunnerError(
            f"run {run_id} did not end after the stop request (SIGTERM, then SIGKILL after "
            f"{grace_seconds:g} s); check the server for processes in state D"
        )
    final = progress.final
    if final is not None and final.kind in {"none", "end"} and final.exit_code is None:
        return None  # it never began, and now never will
    return summarise(progress)
