"""Pause and resume an SSH run: SIGSTOP and SIGCONT of its job's whole process group.

:func:`signal_run` connects like every other call (:func:`~carbonaware.runners.sshconnect.
connect`, host key checking included), asks the server where the run is
(:func:`~carbonaware.runners.sshlease.build_locate_script` reads the process group the
supervisor recorded in the run's ``started`` file) and signals that group
(:func:`~carbonaware.runners.sshscript.build_kill_command`). Nothing needs a checkpoint: a
stopped job keeps its memory and resumes where it was.

A paused run is still a live run to everything that watches it: the supervisor's ``wait``
ends only when the job exits (not when it stops), the watchdog and the attach loop live in
other process groups, and the heartbeat comes from the attach loop, not from the job. The
timeout is wall time, so it counts on while the job is paused; when it is reached the
watchdog sends SIGTERM and then SIGCONT, so the job acts on SIGTERM within its grace.

Locating and signalling are two requests: a run that ends in between is signalled in vain
(its group is gone) and reported as paused or resumed; the next observation of the run
gives its outcome. A job signalled in the instant between the supervisor's fork and its own
``setsid`` has no group yet; the signal then goes to that one process, which has no children
yet either.
"""

from __future__ import annotations

import logging
from typing import Literal

import asyncssh

from carbonaware.errors import RunnerConnectionLostError, RunnerError, SpecError
from carbonaware.runners.sshattach import STOP_START_WAIT_SECONDS
from carbonaware.runners.sshconnect import connect, endpoint
from carbonaware.runners.sshlease import PREPARE_FAILED_EXIT, build_locate_script
from carbonaware.runners.sshscript import (
    BOOTSTRAP_COMMAND,
    BOOTSTRAP_FAILED_EXIT,
    ControlLine,
    build_kill_command,
    new_marker,
    split_control_line,
)
from carbonaware.runners.sshspec import SshTargetSpec, validate_run_id

logger = logging.getLogger(__name__)

PauseSignal = Literal["STOP", "CONT"]
"""SIGSTOP pauses a run, SIGCONT resumes it."""

PAUSE_SIGNALS: frozenset[str] = frozenset({"STOP", "CONT"})
_COMMAND_TIMEOUT_SECONDS = 10.0
# The locate script waits up to 10 s for a run whose job is still starting.
_LOCATE_TIMEOUT_SECONDS = STOP_START_WAIT_SECONDS + _COMMAND_TIMEOUT_SECONDS


def _located(stderr: bytes, marker: str) -> ControlLine | None:
    """The locate script's one answer (the last control line it wrote)."""
    answer = None
    for line in stderr.splitlines():
        _, control = split_control_line(line, marker)
        if control is not None:
            answer = control
    return answer


async def _run(
    connection: asyncssh.SSHClientConnection,
    command: str,
    what: str,
    *,
    stdin: bytes | None = None,
    timeout: float,  # noqa: ASYNC109 - bounds one remote command, like asyncssh's own
) -> asyncssh.SSHCompletedProcess:
    try:
        return await connection.run(
            command, input=stdin, encoding=None, check=False, timeout=timeout
        )
    except asyncssh.ChannelOpenError as exc:
        raise RunnerError(f"the server refused a session to {what}: {exc.reason}") from None
    except (OSError, asyncssh.Error) as exc:  # TimeoutError is an OSError
        raise RunnerConnectionLostError(
            f"the connection was lost (or the server did not answer within {timeout:g} s) "
            f"while trying to {what}: {exc or type(exc).__name__}"
        ) from None


async def signal_run(target: SshTargetSpec, run_id: str, signal: PauseSignal) -> bool:
    """Send SIGSTOP (pause) or SIGCONT (resume) to the job of run ``run_id`` on ``target``.

    Returns True once the job's process group was signalled, False when the run is not there
    any more: it ended, was lost, or is being stopped (a stop or its timeout). Raises
    :class:`~carbonaware.errors.TargetError` subclasses when the connection cannot be made,
    :class:`~carbonaware.errors.RunnerConnectionLostError` when it is lost on the way, and
    :class:`~carbonaware.errors.RunnerError` when the server has no such run or its job has
    not started yet (try again later).
    """
    validate_run_id(run_id)
    if signal not in PAUSE_SIGNALS:
        raise SpecError(f"a run is paused with STOP and resumed with CONT, not {signal!r}")
    what = f"{'pause' if signal == 'STOP' else 'resume'} run {run_id} on {endpoint(target)}"
    marker = new_marker()
    script = build_locate_script(run_id=run_id, marker=marker).encode("utf-8")
    async with connect(target) as connection:
        result = await _run(
            connection, BOOTSTRAP_COMMAND, what, stdin=script, timeout=_LOCATE_TIMEOUT_SECONDS
        )
        stderr = result.stderr if isinstance(result.stderr, bytes) else b""
        answer = _located(stderr, marker)
        if answer is None:
            if result.exit_status in {BOOTSTRAP_FAILED_EXIT, PREPARE_FAILED_EXIT}:
                raise RunnerError(
                    f"cannot {what}: the server could not create a private temporary "
                    "directory with mktemp in $TMPDIR or /tmp"
                )
            raise RunnerConnectionLostError(f"cannot {what}: the server did not answer")
        if answer.kind == "error":
            raise RunnerError(f"cannot {what}: {answer.text}")
        if answer.kind != "start" or answer.pgid is None:
            logger.info("run %s is over or ending; not sending SIG%s", run_id, signal)
            return False
        await _run(
            connection,
            build_kill_command(answer.pgid, signal),
            what,
            timeout=_COMMAND_TIMEOUT_SECONDS,
        )
    logger.info("sent SIG%s to process group %d of run %s", signal, answer.pgid, run_id)
    return True
