"""One connection's view of a run: send a run script, pass the job's output on, follow the
control lines, and stop the run from here when asked to.

A :class:`RunProgress` is what one call has learned of its run across connections (output
offsets, the claim, the process group, the server's clock, the outcome); an
:class:`AttachSession` adds to it over one connection. The run itself lives on the server (see
:mod:`carbonaware.runners.sshlease`), so a session that ends without an outcome only means
this connection saw no more of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncssh

from carbonaware.errors import RunLostError, RunnerError
from carbonaware.runners.procstat import HostSample, aggregate_samples
from carbonaware.runners.sshlease import PREPARE_FAILED_EXIT, build_stop_script
from carbonaware.runners.sshsampler import HostSampler, read_lines
from carbonaware.runners.sshscript import (
    BOOTSTRAP_COMMAND,
    BOOTSTRAP_FAILED_EXIT,
    ControlLine,
    build_kill_command,
    new_marker,
    split_control_line,
)
from carbonaware.runners.summary import RunSummary

logger = logging.getLogger(__name__)

LineSink = Callable[[bytes], None]
"""Receives the job's output one line at a time (newline included when there was one)."""

FINAL_KINDS = frozenset({"end", "lost", "error", "none"})
# After the final control line, how long the script gets to close its channel.
_CLOSE_WAIT_SECONDS = 5.0
# After SIGKILL, how long to wait for the exit record before giving up on the run.
AFTER_KILL_WAIT_SECONDS = 15.0
# A stop script waits up to 10 s for a run that is still starting before it signals.
STOP_START_WAIT_SECONDS = 10.0
_CONTROL_COMMAND_TIMEOUT_SECONDS = 10.0
# How often a waiting session re-checks the client-side backstop.
_BACKSTOP_CHECK_SECONDS = 5.0


@dataclass
class RunProgress:
    """What one call knows of its run, across connections."""

    run_id: str
    token: str
    stdout_offset: int = 0
    stderr_offset: int = 0
    sent: bool = False
    claimed_here: bool | None = None
    pgid: int | None = None
    start_epoch: float | None = None
    # The server's clock minus this process's clock (seconds), measured at the last attach.
    clock_offset: float | None = None
    final: ControlLine | None = None
    samples: list[HostSample] = field(default_factory=list)
    vcpus: int | None = None
    backstop_fired: bool = False
    stop_requested: bool = False

    def server_now(self) -> float | None:
        return None if self.clock_offset is None else time.time() + self.clock_offset


def _moment(server_epoch: float, clock_offset: float | None) -> datetime:
    """A server epoch as this process's time (the clocks' offset measured at attach)."""
    return datetime.fromtimestamp(server_epoch - (clock_offset or 0.0), UTC)


def summarise(progress: RunProgress) -> RunSummary:
    """The outcome recorded on the server, or the error that says why there is none."""
    final, run_id = progress.final, progress.run_id
    if final is None:
        raise RunnerError(f"run {run_id} ended without an outcome")
    if final.kind == "lost":
        raise RunLostError(
            f"run {run_id} was lost on the server: {final.text}. It is not started again; "
            "check the server and create the job again if it should run"
        )
    if final.kind == "error":
        raise RunnerError(f"the server could not prepare run {run_id}: {final.text}")
    if final.kind != "end" or final.exit_code is None:
        raise RunnerError(f"run {run_id} was stopped before it began; it will not run")
    assert final.start_epoch is not None
    assert final.end_epoch is not None
    aggregate = aggregate_samples(progress.samples)
    return RunSummary(
        exit_code=final.exit_code,
        timed_out=final.timed_out or progress.backstop_fired,
        duration_seconds=max(0.0, final.end_epoch - final.start_epoch),
        cpu_core_seconds=final.cpu_core_seconds,
        vcpus=progress.vcpus,
        host_utilisation=aggregate.host_utilisation,
        memory_used_bytes_mean=aggregate.memory_used_bytes_mean,
        memory_used_bytes_max=aggregate.memory_used_bytes_max,
        memory_total_bytes=aggregate.memory_total_bytes,
        samples=aggregate.samples,
        start_time=_moment(final.start_epoch, progress.clock_offset),
        end_time=_moment(final.end_epoch, progress.clock_offset),
        attached=progress.claimed_here is not True,
    )


async def wait_event(event: asyncio.Event, limit_seconds: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), limit_seconds)
    except TimeoutError:
        return False
    return True


async def signal_job(connection: asyncssh.SSHClientConnection, pgid: int, signal_name: str) -> None:
    """Signal the job's process group directly (the last resort when its watchdog did not)."""
    logger.info("sending SIG%s to the job's process group %d", signal_name, pgid)
    try:
        await connection.run(
            build_kill_command(pgid, signal_name),
            check=False,
            timeout=_CONTROL_COMMAND_TIMEOUT_SECONDS,
        )
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        logger.warning("could not send SIG%s to process group %d: %s", signal_name, pgid, exc)


async def request_stop(
    connection: asyncssh.SSHClientConnection, run_id: str, grace_seconds: float
) -> bool:
    """Ask the run's watchdog to stop the job (SIGTERM, SIGKILL after the grace); returns
    whether the request reached the server. A run that has not begun never will."""
    script = build_stop_script(
        run_id=run_id, marker=new_marker(), grace_seconds=grace_seconds, wait=False
    )
    try:
        await connection.run(
            BOOTSTRAP_COMMAND,
            input=script.encode("utf-8"),
            encoding=None,
            check=False,
            timeout=STOP_START_WAIT_SECONDS + _CONTROL_COMMAND_TIMEOUT_SECONDS,
        )
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        logger.warning("could not ask the server to stop run %s: %s", run_id, exc)
        return False
    return True


class AttachSession:
    """Runs one run script on one connection and records what it reports in ``progress``."""

    def __init__(
        self,
        connection: asyncssh.SSHClientConnection,
        progress: RunProgress,
        *,
        stdout: LineSink,
        stderr: LineSink,
        sampler: HostSampler | None = None,
    ) -> None:
        self._connection = connection
        self.progress = progress
        self.marker = new_marker()
        self._stdout = stdout
        self._stderr = stderr
        self._sampler = sampler
        self.clock_epoch: float | None = None
        self.controls = 0
        self.finished = asyncio.Event()

    # ----------------------------------------------------------------------- streams

    async def _pump_stdout(self, reader: asyncssh.SSHReader[bytes]) -> None:
        async for line in read_lines(reader):
            self.progress.stdout_offset += len(line)
            self._stdout(line)

    async def _pump_stderr(self, reader: asyncssh.SSHReader[bytes]) -> None:
        async for line in read_lines(reader):
            output, control = split_control_line(line, self.marker)
            if output:
                self.progress.stderr_offset += len(output)
                self._stderr(output if control is None else output + b"\n")
            if control is not None:
                self._record(control)

    def _record(self, control: ControlLine) -> None:
        self.controls += 1
        progress = self.progress
        if control.kind == "clock" and control.epoch is not None:
            self.clock_epoch = control.epoch
            progress.clock_offset = control.epoch - time.time()
        elif control.kind == "claim":
            progress.claimed_here = control.text == progress.token
        elif control.kind == "start" and control.pgid is not None:
            progress.pgid = control.pgid
            progress.start_epoch = control.start_epoch
        elif control.kind in FINAL_KINDS:
            progress.final = control
            self.finished.set()

    # ----------------------------------------------------------------------- running

    async def run(
        self,
        script: str,
        *,
        backstop: Callable[[], float | None] | None = None,
        kill_grace_seconds: float = 10.0,
        limit_seconds: float | None = None,
        stop_on_cancel: bool = True,
    ) -> bool:
        """Send ``script`` and follow it until its final control line (returns True) or until
        its output ends without one (connection lost: False).

        ``backstop`` returns the seconds left before the client stops the run itself (None:
        not yet known or no limit); ``limit_seconds`` bounds the wait (False when it passes).
        On cancellation with ``stop_on_cancel`` the run is stopped from here (SIGTERM, then
        SIGKILL after ``kill_grace_seconds``) before the cancellation goes on.
        """
        if self._sampler is not None:
            await self._sampler.start()
        try:
            process = await self._connection.create_process(BOOTSTRAP_COMMAND, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            if self._sampler is not None:
                await self._sampler.stop(final_sample=False)
            if isinstance(exc, asyncssh.ChannelOpenError) and not self.progress.sent:
                raise RunnerError(f"the server refused to start the job: {exc}") from None
            logger.warning("could not open a channel for run %s: %s", self.progress.run_id, exc)
            return False
        process.stdin.write(script.encode("utf-8", errors="surrogateescape"))
        process.stdin.write_eof()
        self.progress.sent = True
        pumps = asyncio.gather(self._pump_stdout(process.stdout), self._pump_stderr(process.stderr))
        try:
            await self._follow(pumps, backstop, kill_grace_seconds, limit_seconds)
            if self.finished.is_set():
                with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
                    await asyncio.wait_for(asyncio.shield(pumps), _CLOSE_WAIT_SECONDS)
                    await asyncio.wait_for(process.wait_closed(), _CLOSE_WAIT_SECONDS)
        except asyncio.CancelledError:
            # The caller is being stopped (e.g. the runner pod is deleted): stop the job too.
            if stop_on_cancel:
                await asyncio.shield(self.stop_here(kill_grace_seconds))
            raise
        finally:
            process.close()
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, asyncssh.Error):
                await pumps
            await self._stop_sampler()
        if not self.finished.is_set() and self.controls == 0:
            status = process.exit_status
            if status in {BOOTSTRAP_FAILED_EXIT, PREPARE_FAILED_EXIT}:
                raise RunnerError(
                    "the server could not prepare the job: creating a private temporary "
                    "directory with mktemp in $TMPDIR or /tmp failed"
                )
        return self.finished.is_set()

    async def _follow(
        self,
        pumps: asyncio.Future[Any],
        backstop: Callable[[], float | None] | None,
        kill_grace_seconds: float,
        limit_seconds: float | None,
    ) -> None:
        finished = asyncio.ensure_future(self.finished.wait())
        limit_at = None if limit_seconds is None else time.monotonic() + limit_seconds
        try:
            while not (finished.done() or pumps.done()):
                remaining = backstop() if backstop is not None else None
                if remaining is not None and remaining <= 0:
                    await self._backstop(kill_grace_seconds)
                    return
                if limit_at is not None and time.monotonic() >= limit_at:
                    return
                wake = _BACKSTOP_CHECK_SECONDS if remaining is None else min(remaining, 5.0)
                if limit_at is not None:
                    wake = min(wake, max(0.0, limit_at - time.monotonic()))
                await asyncio.wait(
                    {finished, pumps}, timeout=wake, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            finished.cancel()

    async def _backstop(self, kill_grace_seconds: float) -> None:
        """The server's watchdog did not end the run in time: stop it from here."""
        logger.warning(
            "run %s is past its timeout and the server did not stop it; stopping it from here",
            self.progress.run_id,
        )
        self.progress.backstop_fired = True
        await self._stop(kill_grace_seconds)

    async def stop_here(self, kill_grace_seconds: float) -> None:
        """Stop the run over this connection and wait briefly for its exit record."""
        logger.info("stopping run %s", self.progress.run_id)
        await self._stop(kill_grace_seconds)

    async def _stop(self, kill_grace_seconds: float) -> None:
        if self.finished.is_set():
            return
        if not await request_stop(self._connection, self.progress.run_id, kill_grace_seconds):
            return
        self.progress.stop_requested = True
        if await wait_event(self.finished, kill_grace_seconds + STOP_START_WAIT_SECONDS):
            return
        if self.progress.pgid is not None:
            await signal_job(self._connection, self.progress.pgid, "KILL")
        await wait_event(self.finished, AFTER_KILL_WAIT_SECONDS)

    async def _stop_sampler(self) -> None:
        if self._sampler is None:
            return
        final = self.progress.final
        ended_before_attach = (
            self.progress.claimed_here is not True
            and final is not None
            and final.kind == "end"
            and final.end_epoch is not None
            and self.clock_epoch is not None
            and final.end_epoch < self.clock_epoch
        )
        # Samples of a connection that only attached to a run another call started, and that had
        # ended by then, say nothing about it; the call that started a run keeps its samples
        # even when the run was over before the attach loop read the clock.
        await self._sampler.stop(final_sample=self.finished.is_set() and not ended_before_attach)
        if not ended_before_attach:
            self.progress.samples.extend(self._sampler.parser.samples)
        if self._sampler.parser.vcpus is not None:
            self.progress.vcpus = self._sampler.parser.vcpus
