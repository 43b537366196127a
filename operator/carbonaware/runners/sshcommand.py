"""``carbonaware runner ssh``: the entry point of the SSH-runner pod.

It reads its options (from the command line; long texts from environment variables set by
:mod:`carbonaware.runners.sshpod`, joined back from numbered chunks when they were split), runs
the job with :func:`carbonaware.runners.ssh.run_ssh_job`, streams the job's output to its own
stdout/stderr, writes the result to the termination log and exits with the job's exit code.

``--run-id`` names the run on the server: a runner started again with the same id (a new pod
after the old one died) attaches to the run instead of starting the job a second time.

SIGTERM or SIGINT stops the run on the server, unless ``--detach-on-signal`` is given: then
the runner only lets go of the run, which goes on under its lease and its own timeout (runner
pods use it: a deleted, evicted or drained pod is not a cancel; a new pod attaches).

Exit codes (:data:`EXIT_CODES`); the termination log tells a runner failure from a job that
happened to exit with the same number:

====  ===========================================================================
code  meaning
====  ===========================================================================
0-255 the remote job's own exit status (summary record in the termination log)
124   the job reached ``timeoutSeconds`` and was stopped (summary, timedOut true)
64    invalid options or spec (failure record, reason ``InvalidSpec``)
66    the key file or known_hosts file could not be read (``InvalidSpec``)
69    server unreachable: DNS, refused, timeout (``Unreachable``)
70    the run could not be completed or observed, e.g. the connection was lost and
      not restored in time (``ConnectionLost`` / ``RunnerError``)
71    the server lost the run: its supervisor is gone without an outcome, e.g. the
      server restarted (``RunLost``); the job is not started again
75    the runner was signalled with ``--detach-on-signal``; the run goes on (``Detached``)
76    host key unknown or mismatched, or knownHosts missing (``HostKeyMismatch``)
77    the server rejected the key or user (``AuthFailed``)
143   the runner was signalled and stopped the run (``RunnerError``)
====  ===========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from carbonaware.errors import (
    HostKeyMismatchError,
    RunLostError,
    RunnerConnectionLostError,
    RunnerError,
    SpecError,
    TargetAuthError,
    TargetError,
    TargetUnreachableError,
)
from carbonaware.runners.podenv import (
    COMMAND_ENV,
    JOB_ENV_ENV,
    KNOWN_HOSTS_ENV,
    SCRIPT_ENV,
    join_env_value,
)
from carbonaware.runners.ssh import run_ssh_job
from carbonaware.runners.sshlease import new_run_id
from carbonaware.runners.sshspec import (
    DEFAULT_REATTACH_SECONDS,
    HostKeyPolicy,
    SshRunSpec,
    SshTargetSpec,
    env_pairs,
)
from carbonaware.runners.summary import (
    DETACHED,
    MAX_TERMINATION_MESSAGE_BYTES,
    RunFailure,
    RunSummary,
)

logger = logging.getLogger("carbonaware.runner")

DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")

EXIT_TIMED_OUT = 124
EXIT_USAGE = 64
EXIT_NO_INPUT = 66
EXIT_UNREACHABLE = 69
EXIT_RUNNER_ERROR = 70
EXIT_RUN_LOST = 71
EXIT_DETACHED = 75
EXIT_HOST_KEY_MISMATCH = 76
EXIT_AUTH_FAILED = 77

EXIT_CODES: dict[int, str] = {
    EXIT_TIMED_OUT: "TimedOut",
    EXIT_USAGE: "InvalidSpec",
    EXIT_NO_INPUT: "InvalidSpec",
    EXIT_UNREACHABLE: TargetUnreachableError.reason,
    EXIT_RUNNER_ERROR: "RunnerError",
    EXIT_RUN_LOST: RunLostError.reason,
    EXIT_DETACHED: DETACHED,
    EXIT_HOST_KEY_MISMATCH: HostKeyMismatchError.reason,
    EXIT_AUTH_FAILED: TargetAuthError.reason,
}
"""Runner exit codes other than the job's own, and the reason each stands for."""

_TARGET_EXIT = {
    TargetUnreachableError.reason: EXIT_UNREACHABLE,
    TargetAuthError.reason: EXIT_AUTH_FAILED,
    HostKeyMismatchError.reason: EXIT_HOST_KEY_MISMATCH,
}


@dataclass(frozen=True)
class SshRunnerOptions:
    """Everything the ``runner ssh`` command accepts, before validation."""

    host: str
    user: str
    key_file: Path
    port: int = 22
    known_hosts: str | None = None
    known_hosts_file: Path | None = None
    host_key_policy: str = HostKeyPolicy.STRICT.value
    working_dir: str | None = None
    command: str | None = None
    script: str | None = None
    script_file: Path | None = None
    env: Sequence[str] = ()
    env_json: str | None = None
    timeout_seconds: float | None = None
    connect_timeout_seconds: float = 20.0
    kill_grace_seconds: float = 10.0
    sample_interval_seconds: float = 2.0
    termination_log: Path | None = None
    run_id: str | None = None
    reattach_seconds: float = DEFAULT_REATTACH_SECONDS
    detach_on_signal: bool = False


class _InputError(Exception):
    """An option or input file is unusable; carries the exit code to use."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def configure_logging() -> None:
    """Runner messages go to stderr, prefixed so they stand out from the job's own output."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("carbonaware-runner: %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # asyncssh logs every channel at INFO; its warnings are enough here.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def default_termination_log() -> Path | None:
    """``/dev/termination-log`` when it exists and is writable (inside a pod), else None."""
    path = DEFAULT_TERMINATION_LOG
    return path if path.exists() and os.access(path, os.W_OK) else None


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
        raise _InputError(f"cannot read the {what} {path}: {reason}", EXIT_NO_INPUT) from None


def _parse_env(options: SshRunnerOptions) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    if options.env_json:
        try:
            document = json.loads(options.env_json)
        except ValueError:
            raise _InputError("the env JSON is not valid JSON", EXIT_USAGE) from None
        if not isinstance(document, dict | list):
            raise _InputError(
                'the env JSON must be [{"name": ..., "value": ...}] or {"NAME": "value"}',
                EXIT_USAGE,
            )
        try:
            pairs.extend(env_pairs(document))
        except SpecError as exc:
            raise _InputError(str(exc), EXIT_USAGE) from None
    for item in options.env:
        name, separator, value = item.partition("=")
        if not separator:
            raise _InputError(f"--env takes NAME=VALUE, got {name!r}", EXIT_USAGE)
        pairs.append((name, value))
    return tuple(pairs)


def with_chunked_env(options: SshRunnerOptions, environ: Mapping[str, str]) -> SshRunnerOptions:
    """``options`` with the long texts the pod sent in numbered chunks joined back."""

    def joined(env_name: str, current: str | None) -> str | None:
        if f"{env_name}_CHUNKS" not in environ:
            return current
        if current is not None:
            raise _InputError(
                f"{env_name} is given both whole (or as an option) and in {env_name}_CHUNKS",
                EXIT_USAGE,
            )
        try:
            return join_env_value(env_name, environ)
        except SpecError as exc:
            raise _InputError(str(exc), EXIT_USAGE) from None

    return replace(
        options,
        known_hosts=joined(KNOWN_HOSTS_ENV, options.known_hosts),
        command=joined(COMMAND_ENV, options.command),
        script=joined(SCRIPT_ENV, options.script),
        env_json=joined(JOB_ENV_ENV, options.env_json),
    )


def build_specs(options: SshRunnerOptions) -> tuple[SshTargetSpec, SshRunSpec]:
    """Validate the options and read the key, known_hosts and script files."""
    if options.known_hosts is not None and options.known_hosts_file is not None:
        raise _InputError("give knownHosts as text or as a file, not both", EXIT_USAGE)
    known_hosts = options.known_hosts
    if options.known_hosts_file is not None:
        known_hosts = _read_text(options.known_hosts_file, "known_hosts file")
    script = options.script
    if options.script_file is not None:
        if script is not None:
            raise _InputError("give the script as text or as a file, not both", EXIT_USAGE)
        script = _read_text(options.script_file, "script file")
    try:
        policy = HostKeyPolicy(options.host_key_policy)
    except ValueError:
        raise _InputError(
            f"host key policy must be Strict or AcceptAny, got {options.host_key_policy!r}",
            EXIT_USAGE,
        ) from None
    try:
        private_key = options.key_file.read_bytes()
    except OSError as exc:
        raise _InputError(
            f"cannot read the private key file {options.key_file}: {exc.strerror or 'error'}",
            EXIT_NO_INPUT,
        ) from None
    timeout = options.timeout_seconds if options.timeout_seconds else None
    try:
        target = SshTargetSpec(
            host=options.host,
            port=options.port,
            user=options.user,
            private_key=private_key,
            known_hosts=known_hosts,
            host_key_policy=policy,
            connect_timeout_seconds=options.connect_timeout_seconds,
        )
        run = SshRunSpec(
            command=options.command,
            script=script,
            working_dir=options.working_dir or None,
            env=_parse_env(options),
            timeout_seconds=timeout,
            kill_grace_seconds=options.kill_grace_seconds,
            sample_interval_seconds=options.sample_interval_seconds,
            run_id=options.run_id or None,
            reattach_seconds=options.reattach_seconds,
        )
    except SpecError as exc:
        raise _InputError(str(exc), EXIT_USAGE) from None
    return target, run


def _write_termination_log(path: Path | None, text: str) -> None:
    if path is None:
        return
    encoded = text.encode("utf-8")[:MAX_TERMINATION_MESSAGE_BYTES]
    try:
        path.write_bytes(encoded)
    except OSError as exc:
        logger.warning("cannot write the termination log %s: %s", path, exc.strerror)


def exit_code_for(summary: RunSummary) -> int:
    """The runner's exit code for a finished run (see the module docstring)."""
    if summary.timed_out:
        return EXIT_TIMED_OUT
    if summary.exit_code is None:
        return EXIT_RUNNER_ERROR
    return summary.exit_code


async def _run_until_signalled(
    target: SshTargetSpec, run: SshRunSpec, *, detach: bool
) -> RunSummary:
    """Run the job; SIGTERM/SIGINT to the runner stops the remote job too, or with ``detach``
    only lets go of it (it goes on under its lease; a runner with its run id attaches)."""
    task = asyncio.create_task(run_ssh_job(target, run, stop_on_cancel=not detach))
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, task.cancel)
            handled.append(signum)
    try:
        return await task
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def run_ssh_runner_command(
    options: SshRunnerOptions, environ: Mapping[str, str] | None = None
) -> int:
    """Run the job described by ``options``; returns the process exit code.

    ``environ`` (this process's environment, from the command line) supplies long texts that
    the pod sent in numbered chunks.
    """
    termination_log = options.termination_log
    try:
        if environ is not None:
            options = with_chunked_env(options, environ)
        target, run = build_specs(options)
    except _InputError as exc:
        logger.error("%s", exc)
        _write_termination_log(termination_log, RunFailure("InvalidSpec", str(exc)).to_json())
        return exc.exit_code
    if run.run_id is None:
        run = replace(run, run_id=new_run_id())
    logger.info(
        "run id %s (a runner with --run-id=%s attaches to this run)", run.run_id, run.run_id
    )
    try:
        summary = asyncio.run(_run_until_signalled(target, run, detach=options.detach_on_signal))
    except TargetError as exc:
        logger.error("%s", exc)
        _write_termination_log(termination_log, RunFailure(exc.reason, str(exc)).to_json())
        return _TARGET_EXIT.get(exc.reason, EXIT_UNREACHABLE)
    except RunLostError as exc:
        logger.error("%s", exc)
        _write_termination_log(termination_log, RunFailure(exc.reason, str(exc)).to_json())
        return EXIT_RUN_LOST
    except RunnerError as exc:
        logger.error("%s", exc)
        reason = "ConnectionLost" if isinstance(exc, RunnerConnectionLostError) else "RunnerError"
        _write_termination_log(termination_log, RunFailure(reason, str(exc)).to_json())
        return EXIT_RUNNER_ERROR
    except asyncio.CancelledError:
        if options.detach_on_signal:
            message = (
                f"the runner was stopped before the job finished; run {run.run_id} goes on on "
                "the server under its lease and timeout, and a runner with its id attaches to it"
            )
            logger.warning("%s", message)
            _write_termination_log(termination_log, RunFailure(DETACHED, message).to_json())
            return EXIT_DETACHED
        message = "the runner was stopped before the job finished; the job was signalled to stop"
        logger.error("%s", message)
        _write_termination_log(termination_log, RunFailure("RunnerError", message).to_json())
        return 128 + signal.SIGTERM
    text = summary.to_json()
    _write_termination_log(termination_log, text)
    sys.stderr.flush()
    logger.info("summary %s", text)
    return exit_code_for(summary)
