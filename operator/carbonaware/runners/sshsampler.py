"""Reading an SSH channel line by line, and sampling the server's ``/proc`` during a run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncssh

from carbonaware.runners.procstat import SampleStreamParser
from carbonaware.runners.sshscript import build_sample_once_command, build_sampler_command

logger = logging.getLogger(__name__)

# Output lines longer than this are passed on in pieces rather than buffered without bound.
MAX_LINE_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024
_SAMPLE_COMMAND_TIMEOUT_SECONDS = 10.0


async def read_lines(reader: asyncssh.SSHReader[bytes]) -> AsyncIterator[bytes]:
    """Lines as they arrive; very long lines are passed on in pieces.

    A connection that breaks ends the lines like an end of file: what was received is passed
    on, and the caller tells a lost connection from a finished run by what it was told.
    """
    buffer = b""
    while True:
        try:
            chunk = await reader.read(_READ_CHUNK_BYTES)
        except (OSError, asyncssh.Error):
            break
        if not chunk:
            break
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            yield buffer[start : newline + 1]
            start = newline + 1
        buffer = buffer[start:]
        if len(buffer) >= MAX_LINE_BYTES:
            yield buffer
            buffer = b""
    if buffer:
        yield buffer


class HostSampler:
    """Samples ``/proc/stat`` and ``/proc/meminfo`` when it starts, periodically on a channel
    of its own while the run goes on, and when it stops, so even a short run has two readings.

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
                timeout=_SAMPLE_COMMAND_TIMEOUT_SECONDS,
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
        async for line in read_lines(reader):
            self.parser.feed_line(line.decode("ascii", errors="replace"))

    async def stop(self, *, final_sample: bool = True) -> None:
        """Close the sampling channel, then take the last sample."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._process is not None:
            self._process.close()
            self._process = None
        if final_sample:
            await self._sample_once()
