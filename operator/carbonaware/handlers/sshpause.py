"""Pause and resume the SSH run of a released CarbonAwareJob on its server.

The run is found as a cancel finds it (:mod:`carbonaware.handlers.cancel`): the released,
unfinished work its status describes, the ServerTarget and key Secret through
:func:`~carbonaware.handlers.sshjobs.ssh_inputs` (allow-list included), and the job's UID as
the run id. Pausing is SIGSTOP of the job's process group on the server, resuming SIGCONT
(:func:`~carbonaware.runners.sshsignal.signal_run`); whoever follows the run (a runner pod
or a task of this process) stays attached meanwhile and sees nothing but a quiet job.
"""

from __future__ import annotations

import logging
from typing import Any

from carbonaware.errors import SpecError
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.sshjobs import ssh_inputs, ssh_target
from carbonaware.handlers.tracking import released_work_of
from carbonaware.runners.sshsignal import PauseSignal, signal_run

logger = logging.getLogger(__name__)


async def signal_ssh_run(ctx: OperatorContext, body: dict[str, Any], signal: PauseSignal) -> bool:
    """SIGSTOP (pause) or SIGCONT (resume) the SSH run of the CarbonAwareJob ``body``.

    Returns True once the run's process group was signalled, False when the run is over: the
    job has finished, or its run ended, was lost or is being stopped on the server. Raises
    :class:`~carbonaware.errors.SpecError` for a job with no released SSH run (held, or not
    an SSH job), and what :func:`~carbonaware.handlers.sshjobs.ssh_inputs` and
    :func:`~carbonaware.runners.sshsignal.signal_run` raise (a missing ServerTarget or key,
    an unreachable server, a run whose job has not started yet).
    """
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    action = "pause" if signal == "STOP" else "resume"
    if (body.get("status") or {}).get("completionTime"):
        return False
    released = released_work_of(body)
    if released is None or released.target is None:
        raise SpecError(
            f"CarbonAwareJob {namespace}/{name} has no released SSH run to {action}: only a "
            "released job with spec.ssh runs on a server"
        )
    target, key = await ssh_inputs(ctx, released.target)
    signalled = await signal_run(ssh_target(target, key), released.uid, signal)
    if signalled:
        logger.info(
            "%s the SSH run of %s/%s on ServerTarget %s",
            "paused" if signal == "STOP" else "resumed",
            namespace,
            name,
            released.target[1],
        )
    else:
        logger.info(
            "did not %s the SSH run of %s/%s: it is over on ServerTarget %s",
            action,
            namespace,
            name,
            released.target[1],
        )
    return signalled
