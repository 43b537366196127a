"""Run a job on a user's server over SSH, measure it, and probe ServerTargets.

:func:`run_ssh_job` connects with mandatory host key checking (unless ``AcceptAny`` is chosen),
authenticates with an in-memory private key, runs the job through the wrapper described in
:mod:`carbonaware.runners.sshscript`, streams its output line by line, enforces the timeout by
signalling the job's process group, and returns a :class:`RunSummary`.

:func:`probe_target` does the same connection and authentication without running anything.

Connection failures become :class:`~carbonaware.errors.TargetError` subclasses whose messages
say what to fix; no message or log line ever contains key material.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncssh

from carbonaware.errors import (
    HostKeyMismatchError,
    RunnerConnectionLostError,
    RunnerError,
    SpecError,
    TargetAuthError,
    TargetError,
    TargetUnreachableError,
)
from carbonaware.runners.procstat import SampleStreamParser, aggregate_samples
from carbonaware.runners.sshscript import (
    BOOTSTRAP_COMMAND,
    BOOTSTRAP_FAILED_EXIT,
    ControlLine,
    build_kill_command,
    build_sample_once_command,
    build_sampler_command,
    build_wrapper_script,
    new_marker,
    split_control_line,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, SshTargetSpec
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
]

logger = logging.getLogger(__name__)

LineSink = Callable[[bytes], None]
"""Receives the job's output one line at a time (newline included when there was one)."""

PROBE_OK_REASON = "Connected"

# Output lines longer than this are passed on in pieces rather than buffered without bound.
_MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024
# After the wrapper reports the end, output still held open by processes that left the job's
# process group is read for this long before the channel is closed.
_OUTPUT_DRAIN_SECONDS = 5.0
# After SIGKILL, how long to wait for the wrapper to report before giving up on the channel.
_AFTER_KILL_WAIT_SECONDS = 15.0
_CONTROL_COMMAND_TIMEOUT_SECONDS = 10.0
_KEEPALIVE_INTERVAL_SECONDS = 30.0
_KEEPALIVE_COUNT_MAX = 4


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`probe_target`: ``reason`` is ``Connected``, ``Unreachable``,
    ``AuthFailed`` or ``HostKeyMismatch``; ``message`` says what to fix."""

    reachable: bool
    reason: str
    message: str


# --------------------------------------------------------------------------- connecting


class _HostKeyRecorder(asyncssh.SSHClient):
    """Remembers a host key that was not in known_hosts, so the error can show its fingerprint.

    asyncssh asks this only for keys it did not already trust; answering False rejects them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.untrusted_key: Any = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.untrusted_key = key
        return False


def _endpoint(target: SshTargetSpec) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.user}@{host}:{target.port}"


def _known_hosts_name(target: SshTargetSpec) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


def _import_client_key(target: SshTargetSpec) -> Any:
    try:
        return asyncssh.import_private_key(target.private_key)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        # The library's message is not passed on: it is never allowed to echo key material.
        raise TargetAuthError(
            f"the private key for {_endpoint(target)} could not be read: the Secret must hold an "
            "unencrypted OpenSSH or PEM private key (ed25519, ecdsa or rsa)"
        ) from None


def _trusted_host_keys(target: SshTargetSpec) -> Any:
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        return None
    if not target.known_hosts or not target.known_hosts.strip():
        # An explicitly empty trust set: asyncssh would otherwise fall back to ~/.ssh/known_hosts.
        return ([], [], [])
    try:
        return asyncssh.import_known_hosts(target.known_hosts)
    except (ValueError, asyncssh.KeyImportError):
        # Only the line number is reported: a misplaced secret pasted there must not be echoed.
        raise HostKeyMismatchError(
            f"knownHosts for {_endpoint(target)} could not be parsed (line "
            f"{_first_bad_known_hosts_line(target.known_hosts)}): it must hold OpenSSH "
            f"known_hosts lines such as the output of ssh-keyscan -p {target.port} {target.host}"
        ) from None


def _first_bad_known_hosts_line(known_hosts: str) -> int:
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        try:
            asyncssh.import_known_hosts(line)
        except (ValueError, asyncssh.KeyImportError):
            return number
    return 0


def _host_key_message(target: SshTargetSpec, recorder: _HostKeyRecorder, detail: str) -> str:
    name = _known_hosts_name(target)
    if not target.known_hosts or not target.known_hosts.strip():
        problem = f"knownHosts is empty, so the host key of {_endpoint(target)} cannot be checked"
    else:
        problem = f"the host key of {_endpoint(target)} is not trusted by knownHosts ({detail})"
    key = recorder.untrusted_key
    if key is None:
        return (
            f"{problem}: add the server's host key line for {name} to knownHosts "
            f"(e.g. from ssh-keyscan -p {target.port} {target.host}, verified out of band), or "
            "set hostKeyPolicy: AcceptAny to skip host key checking"
        )
    public_line = key.export_public_key("openssh").decode("ascii", errors="replace").split()
    suggestion = " ".join([name, *public_line[:2]])
    return (
        f"{problem}; the server presented {key.get_algorithm()} key "
        f"{key.get_fingerprint('sha256')}. If that is the server's key (check with "
        "ssh-keygen -lf on its /etc/ssh/ssh_host_*_key.pub), add this line to knownHosts: "
        f"{suggestion}"
    )


def _unreachable_message(target: SshTargetSpec, exc: BaseException) -> str:
    where = f"{target.host}:{target.port}"
    if isinstance(exc, socket.gaierror):
        return f"host name {target.host!r} does not resolve: check spec.host and DNS"
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{where} refused the connection: check that sshd listens on port {target.port} "
            "and that no firewall blocks it"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no SSH session with {where} within {target.connect_timeout_seconds:g} s: check "
            "the address, the port and any firewall between the cluster and the server"
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return f"the SSH handshake with {where} failed ({exc.reason}): check that it runs sshd"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {type(exc).__name__}"


@asynccontextmanager
async def _connect(target: SshTargetSpec) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An authenticated connection; every failure is mapped to a TargetError subclass."""
    client_key = _import_client_key(target)
    known_hosts = _trusted_host_keys(target)
    recorder = _HostKeyRecorder()
    try:
        connection, _ = await asyncssh.create_connection(
            lambda: recorder,
            target.host,
            target.port,
            username=target.user,
            client_keys=[client_key],
            known_hosts=known_hosts,
            # Nothing from the runner's own environment: no ~/.ssh/config, agent, GSS or
            # password prompts; only the key we were given.
            config=None,
            agent_path=None,
            x509_trusted_certs=None,
            gss_host=None,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            public_key_auth=True,
            preferred_auth="publickey",
            connect_timeout=target.connect_timeout_seconds,
            login_timeout=target.connect_timeout_seconds,
            keepalive_interval=_KEEPALIVE_INTERVAL_SECONDS,
            keepalive_count_max=_KEEPALIVE_COUNT_MAX,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatchError(_host_key_message(target, recorder, exc.reason)) from None
    except asyncssh.PermissionDenied:
        fingerprint = client_key.get_fingerprint("sha256")
        raise TargetAuthError(
            f"{_endpoint(target)} rejected public key authentication: add the public key of the "
            f"Secret's private key ({fingerprint}) to ~{target.user}/.ssh/authorized_keys on the "
            "server, and check the user name"
        ) from None
    except (OSError, asyncssh.Error) as exc:
        raise TargetUnreachableError(_unreachable_message(target, exc)) from None
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        logger.warning(
            "connected to %s without checking its host key (hostKeyPolicy: AcceptAny)",
            _endpoint(target),
        )
    else:
        logger.info("connected to %s", _endpoint(target))
    try:
        yield connection
    finally:
        connection.close()
        with contextlib.suppress(OSError, asyncssh.Error):
            await connection.wait_closed()


async def probe_target(
    host: str,
    port: int,
    user: str,
    private_key: str | bytes,
    known_hosts: str | None,
    host_key_policy: HostKeyPolicy | str = HostKeyPolicy.STRICT,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds connect + handshake + auth, not a call
) -> ProbeResult:
    """TCP connect, SSH handshake with host key check, and authentication; runs nothing."""
    try:
        target = SshTargetSpec(
            host=host,
            port=port,
            user=user,
            private_key=private_key,
            known_hosts=known_hosts,
            host_key_policy=HostKeyPolicy(host_key_policy),
            connect_timeout_seconds=timeout,
        )
        async with _connect(target):
            pass
    except TargetError as exc:
        return ProbeResult(reachable=False, reason=exc.reason, message=str(exc))
    except (SpecError, ValueError) as exc:
        # Invalid parameters (e.g. an unknown policy name) cannot reach any server.
        return ProbeResult(reachable=False, reason=TargetUnreachableError.reason, message=str(exc))
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        message = (
            f"connected to {_endpoint(target)} without checking its host key "
            "(hostKeyPolicy: AcceptAny); set knownHosts and hostKeyPolicy: Strict"
        )
    else:
        message = f"connected and authenticated to {_endpoint(target)}"
    return ProbeResult(reachable=True, reason=PROBE_OK_REASON, message=message)


# --------------------------------------------------------------------------- running


def _writer(stream: Any) -> LineSink:
    def write(line: bytes) -> None:
        stream.write(line)
        stream.flush()

    return write


async def _read_lines(reader: asyncssh.SSHReader[bytes]) -> AsyncIterator[bytes]:
    """Lines as they arrive; very long lines are passed on in pieces."""
    buffer = b""
    while True:
        chunk = await reader.read(_READ_CHUNK_BYTES)
        if not chunk:
            break
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            yield buffer[start : newline + 1]
            start = newline + 1
        buffer = buffer[start:]
        if len(buffer) >= _MAX_LINE_BYTES:
            yield buffer
            buffer = b""
    if buffer:
        yield buffer


@dataclass
class _RunState:
    marker: str
    pgid: int | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    end: ControlLine | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None


async def _pump_stdout(reader: asyncssh.SSHReader[bytes], sink: LineSink) -> None:
    async for line in _read_lines(reader):
        sink(line)


async def _pump_stderr(reader: asyncssh.SSHReader[bytes], sink: LineSink, state: _RunState) -> None:
    async for line in _read_lines(reader):
        output, control = split_control_line(line, state.marker)
        if output:
            sink(output if control is None else output + b"\n")
        if control is None:
            continue
        if control.kind == "start" and control.pgid is not None:
            state.pgid = control.pgid
            state.started.set()
        elif control.kind == "end":
            state.end = control
            state.ended_at = time.monotonic()
            state.ended.set()


class _HostSampler:
    """Samples ``/proc/stat`` and ``/proc/meminfo`` when the job starts, periodically on a
    second channel while it runs, and when it ends, so even a short run has two readings.

    Sampling is best effort: a server without ``/proc`` or that refuses the extra channel still
    runs the job, and the summary then has no host figures.
    """

    def __init__(self, connection: asyncssh.SSHClientConnection, interval_seconds: float) -> None:
        self._connection = connection
        self._interval_seconds = interval_seconds
        self.parser = SampleStreamParser()
        self._process: asyncssh.SSHClientProcess[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _sample_once(self) -> None:
        try:
            result = await self._connection.run(
                build_sample_once_command(),
                check=False,
                timeout=_CONTROL_COMMAND_TIMEOUT_SECONDS,
                encoding="ascii",
                errors="replace",
            )
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            logger.info("host sample failed: %s", exc)
            return
        self.parser.discard_partial()
        for line in str(result.stdout or "").splitlines():
            self.parser.feed_line(line)

    async def start(self) -> None:
        await self._sample_once()
        try:
            self._process = await self._connection.create_process(
                build_sampler_command(self._interval_seconds), encoding=None
            )
        except (OSError, asyncssh.Error) as exc:
            logger.info("host sampling unavailable: %s", exc)
            return
        self._process.stdin.write_eof()
        self._reader = asyncio.create_task(self._read(self._process.stdout))

    async def _read(self, reader: asyncssh.SSHReader[bytes]) -> None:
        with contextlib.suppress(OSError, asyncssh.Error):
            async for line in _read_lines(reader):
                self.parser.feed_line(line.decode("ascii", errors="replace"))

    async def stop(self) -> None:
        """Close the sampling channel, then take the last sample."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._process is not None:
            self._process.close()
            self._process = None
        await self._sample_once()


async def _signal_job(
    connection: asyncssh.SSHClientConnection, pgid: int, signal_name: str
) -> None:
    logger.info("sending SIG%s to the job's process group %d", signal_name, pgid)
    try:
        await connection.run(
            build_kill_command(pgid, signal_name),
            check=False,
            timeout=_CONTROL_COMMAND_TIMEOUT_SECONDS,
        )
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        logger.warning("could not send SIG%s to process group %d: %s", signal_name, pgid, exc)


async def _wait_event(event: asyncio.Event, limit_seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), limit_seconds)
    except TimeoutError:
        return False
    return True


async def _stop_job(
    connection: asyncssh.SSHClientConnection, state: _RunState, grace_seconds: float
) -> None:
    """SIGTERM the job's process group, SIGKILL it after the grace period."""
    if state.pgid is None and not await _wait_event(state.started, grace_seconds):
        logger.warning("the job did not report its process group; closing its channel instead")
        return
    if state.ended.is_set() or state.pgid is None:
        return
    await _signal_job(connection, state.pgid, "TERM")
    if await _wait_event(state.ended, grace_seconds):
        return
    await _signal_job(connection, state.pgid, "KILL")
    await _wait_event(state.ended, _AFTER_KILL_WAIT_SECONDS)


async def _wait_for_output_end(output_done: asyncio.Future[Any], state: _RunState) -> None:
    """Until both output streams end; once the wrapper reported the end, at most a short drain."""
    ended = asyncio.create_task(state.ended.wait())
    try:
        await asyncio.wait({output_done, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
    if not output_done.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(output_done), _OUTPUT_DRAIN_SECONDS)


async def _run_on(
    connection: asyncssh.SSHClientConnection,
    spec: SshRunSpec,
    stdout: LineSink,
    stderr: LineSink,
) -> RunSummary:
    state = _RunState(marker=new_marker())
    wrapper = build_wrapper_script(spec, state.marker).encode("utf-8", errors="surrogateescape")
    sampler = _HostSampler(connection, spec.sample_interval_seconds)
    await sampler.start()
    start_time = datetime.now(UTC)
    started_at = time.monotonic()
    try:
        process = await connection.create_process(BOOTSTRAP_COMMAND, encoding=None)
    except (OSError, asyncssh.Error) as exc:
        await sampler.stop()
        raise RunnerError(f"the server refused to start the job: {exc}") from None
    process.stdin.write(wrapper)
    process.stdin.write_eof()
    pumps = [
        asyncio.create_task(_pump_stdout(process.stdout, stdout)),
        asyncio.create_task(_pump_stderr(process.stderr, stderr, state)),
    ]
    output_done = asyncio.gather(*pumps)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(_wait_for_output_end(output_done, state), spec.timeout_seconds)
        except TimeoutError:
            timed_out = True
            logger.warning("the job reached its timeout of %g s", spec.timeout_seconds or 0)
            await _stop_job(connection, state, spec.kill_grace_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _wait_for_output_end(output_done, state), _OUTPUT_DRAIN_SECONDS
                )
        else:
            # exit-status follows the end of output; wait briefly so it can be read.
            with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                await asyncio.wait_for(process.wait_closed(), _OUTPUT_DRAIN_SECONDS)
    except asyncio.CancelledError:
        # The runner itself is being stopped (e.g. its pod is deleted): stop the job too.
        await asyncio.shield(_stop_job(connection, state, spec.kill_grace_seconds))
        raise
    finally:
        ended_at = state.ended_at if state.ended_at is not None else time.monotonic()
        end_time = datetime.now(UTC)
        process.close()
        for pump in pumps:
            pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, asyncssh.Error):
            await output_done
        await sampler.stop()

    exit_code: int | None = state.end.exit_code if state.end is not None else None
    if state.end is None:
        remote_status = process.exit_status
        if remote_status is None and not timed_out:
            raise RunnerConnectionLostError(
                f"the connection ended after {ended_at - started_at:.0f} s without the job's "
                "exit status (connection lost or sshd stopped); its outcome on the server is "
                "unknown"
            )
        exit_code = remote_status if remote_status is not None and remote_status >= 0 else None
        if exit_code == BOOTSTRAP_FAILED_EXIT and state.pgid is None:
            raise RunnerError(
                "the server could not prepare the job: creating a private temporary directory "
                "with mktemp in $TMPDIR or /tmp failed"
            )
    aggregate = aggregate_samples(sampler.parser.samples)
    return RunSummary(
        exit_code=exit_code,
        timed_out=timed_out,
        duration_seconds=max(0.0, ended_at - started_at),
        cpu_core_seconds=state.end.cpu_core_seconds if state.end is not None else None,
        vcpus=sampler.parser.vcpus,
        host_utilisation=aggregate.host_utilisation,
        memory_used_bytes_mean=aggregate.memory_used_bytes_mean,
        memory_used_bytes_max=aggregate.memory_used_bytes_max,
        memory_total_bytes=aggregate.memory_total_bytes,
        samples=aggregate.samples,
        start_time=start_time,
        end_time=max(end_time, start_time),
    )


async def run_ssh_job(
    target: SshTargetSpec,
    spec: SshRunSpec,
    *,
    stdout: LineSink | None = None,
    stderr: LineSink | None = None,
) -> RunSummary:
    """Run ``spec`` on ``target`` and return what it did.

    The job's stdout/stderr lines go to ``stdout``/``stderr`` (default: this process's own)
    as they arrive. Raises :class:`TargetUnreachableError`, :class:`TargetAuthError` or
    :class:`HostKeyMismatchError` before anything runs on the server, and
    :class:`RunnerError` when the run itself cannot be completed or observed.
    """
    stdout_sink = stdout if stdout is not None else _writer(sys.stdout.buffer)
    stderr_sink = stderr if stderr is not None else _writer(sys.stderr.buffer)
    async with _connect(target) as connection:
        return await _run_on(connection, spec, stdout_sink, stderr_sink)
