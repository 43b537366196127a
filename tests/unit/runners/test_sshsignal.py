"""Pausing and resuming a run: the run goes on to its one end, a paused job still meets its
timeout and its stop through its own SIGTERM handler, and only a live run is signalled.

The real run, stop and locate scripts run under dash (/bin/sh here) and busybox; only the SSH
connection is replaced by one that runs each command as sshd would (see ``fakeserver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from carbonaware.errors import RunnerConnectionLostError, RunnerError, SpecError
from carbonaware.runners import sshsignal
from carbonaware.runners.sshscript import build_kill_command
from carbonaware.runners.sshsignal import signal_run
from carbonaware.runners.sshspec import HostKeyPolicy, SshRunSpec, SshTargetSpec

from .fakeserver import (
    FakeServer,
    finish,
    group_members,
    kill_group,
    start_script,
    wait_until,
)

MARKER = "__marker_for_tests__"
TARGET = SshTargetSpec(
    host="server.example",
    user="batch",
    private_key="unused",
    host_key_policy=HostKeyPolicy.ACCEPT_ANY,
)


@dataclass
class Completed:
    exit_status: int | None
    stdout: bytes
    stderr: bytes


@dataclass
class FakeConnection:
    """Runs each command of a connection under the fake server's shell."""

    server: FakeServer
    commands: list[str] = field(default_factory=list)
    failure: BaseException | None = None

    async def run(self, command: str, *, input: bytes | None = None, **_: Any) -> Completed:
        self.commands.append(command)
        if self.failure is not None:
            raise self.failure
        process = await asyncio.create_subprocess_exec(
            *self.server.argv(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.server.environment(),
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(input), 60)
        return Completed(process.returncode, stdout, stderr)


@pytest.fixture(params=["sh", "busybox"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> FakeServer:
    return FakeServer(tmp_path, shell=request.param)


@pytest.fixture
def connection(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> FakeConnection:
    fake = FakeConnection(server)

    @contextlib.asynccontextmanager
    async def connect(target: SshTargetSpec) -> AsyncIterator[FakeConnection]:
        assert target is TARGET
        yield fake

    monkeypatch.setattr(sshsignal, "connect", connect)
    return fake


def state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


def all_stopped(pgid: int) -> bool:
    members = group_members(pgid)
    return bool(members) and all(state_of(pid) == "T" for pid in members)


def job_group(server: FakeServer, run_id: str, first_output: bytes) -> int:
    """The job's process group, once the job has written ``first_output`` (it runs its own
    code then, not the supervisor's fork that is about to become it)."""
    started, stdout = server.run_dir(run_id) / "started", server.run_dir(run_id) / "stdout"
    assert wait_until(lambda: stdout.exists() and stdout.read_bytes().startswith(first_output))
    assert wait_until(started.exists)
    return int(started.read_text().split()[0])


def test_kill_commands_pause_resume_and_let_a_paused_job_see_sigterm() -> None:
    assert build_kill_command(4242, "STOP").startswith("exec /bin/sh -c 'kill -STOP -4242 ")
    assert build_kill_command(4242, "CONT").startswith("exec /bin/sh -c 'kill -CONT -4242 ")
    term = build_kill_command(4242, "TERM")
    assert term.index("kill -TERM -4242") < term.index("kill -CONT -4242")
    assert "CONT" not in build_kill_command(4242, "KILL")
    with pytest.raises(RunnerError):
        build_kill_command(4242, "HUP")
    with pytest.raises(RunnerError):
        build_kill_command(1, "STOP")


async def test_a_paused_run_goes_on_to_its_one_end(
    server: FakeServer, connection: FakeConnection, tmp_path: Path
) -> None:
    count, go = tmp_path / "count", tmp_path / "go"
    job = (
        f"echo ran >> {count}\necho waiting\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho done\n"
    )
    attach = server.spawn(start_script(SshRunSpec(script=job), "run-p"))
    pgid = job_group(server, "run-p", b"waiting\n")
    try:
        assert await signal_run(TARGET, "run-p", "STOP")
        assert wait_until(lambda: all_stopped(pgid), 30)
        go.touch()
        # Paused: neither the job nor the caller attached to the run moves on.
        assert not wait_until(lambda: attach.poll() is not None or not all_stopped(pgid), 1.5)

        assert await signal_run(TARGET, "run-p", "CONT")
        result = finish(attach, MARKER)
    finally:
        kill_group(pgid)

    assert result.returncode == 0
    assert result.stdout == b"waiting\ndone\n"
    assert result.kinds[-1] == "end"
    assert len(count.read_text().splitlines()) == 1
    assert len(connection.commands) == 4  # locate and signal, twice
    # Over: there is nothing to pause or resume any more (located, not signalled).
    assert not await signal_run(TARGET, "run-p", "STOP")
    assert not await signal_run(TARGET, "run-p", "CONT")
    assert len(connection.commands) == 6


TERM_HANDLER_JOB = "trap 'echo terminated; exit 3' TERM\necho ready\nwhile :; do sleep 0.1; done\n"


async def test_the_timeout_ends_a_paused_job_through_its_term_handler(
    server: FakeServer, connection: FakeConnection
) -> None:
    # Without SIGCONT after SIGTERM the job would sleep through its grace until SIGKILL (137).
    spec = SshRunSpec(script=TERM_HANDLER_JOB, timeout_seconds=2, kill_grace_seconds=30)
    attach = server.spawn(start_script(spec, "run-t"))
    pgid = job_group(server, "run-t", b"ready\n")
    try:
        assert await signal_run(TARGET, "run-t", "STOP")
        result = finish(attach, MARKER)
    finally:
        kill_group(pgid)

    end = result.first("end")
    assert end.timed_out
    assert end.exit_code == 3
    assert result.stdout == b"ready\nterminated\n"
    assert end.end_epoch is not None
    assert end.start_epoch is not None
    assert end.end_epoch - end.start_epoch < 15


async def test_a_stop_request_ends_a_paused_job_through_its_term_handler(
    server: FakeServer, connection: FakeConnection
) -> None:
    attach = server.spawn(start_script(SshRunSpec(script=TERM_HANDLER_JOB), "run-s"))
    pgid = job_group(server, "run-s", b"ready\n")
    try:
        assert await signal_run(TARGET, "run-s", "STOP")
        assert wait_until(lambda: all_stopped(pgid), 30)
        stopped = server.stop("run-s", grace=30)
        result = finish(attach, MARKER)
    finally:
        kill_group(pgid)

    assert stopped.first("end").exit_code == result.first("end").exit_code == 3
    assert not stopped.first("end").timed_out
    assert result.stdout == b"ready\nterminated\n"


async def test_an_unknown_run_is_an_error_and_is_not_created(
    server: FakeServer, connection: FakeConnection
) -> None:
    with pytest.raises(RunnerError, match="no such run"):
        await signal_run(TARGET, "run-unknown", "STOP")

    assert not server.run_dir("run-unknown").exists()
    assert len(connection.commands) == 1  # located, never signalled


def exited_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("record", ["another boot", "an exited process"])
async def test_a_run_whose_supervisor_is_gone_is_not_signalled(
    server: FakeServer, connection: FakeConnection, record: str
) -> None:
    attach = server.spawn(start_script(SshRunSpec(script="echo sleeping\nsleep 300\n"), "run-l"))
    pgid = job_group(server, "run-l", b"sleeping\n")
    supervisor_file = server.run_dir("run-l") / "supervisor"
    supervisor, boot = supervisor_file.read_text().split()
    # Nobody attached declares the run lost, so only the supervisor check keeps its group
    # (after a server restart, maybe another program's by now) from being signalled.
    attach.kill()
    attach.communicate()
    try:
        if record == "another boot":
            supervisor_file.write_text(f"{supervisor} {boot}-before-a-restart\n")
        else:
            supervisor_file.write_text(f"{exited_pid()} {boot}\n")

        assert not await signal_run(TARGET, "run-l", "STOP")
        assert len(connection.commands) == 1  # located, never signalled
        assert state_of(pgid) not in {"T", "gone"}
        assert not (server.run_dir("run-l") / "lost").exists()  # locating changes nothing
    finally:
        kill_group(pgid)
        kill_group(int(supervisor))


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (asyncssh.ConnectionLost("reset"), RunnerConnectionLostError),
        (TimeoutError(), RunnerConnectionLostError),
        (asyncssh.ChannelOpenError(1, "administratively prohibited"), RunnerError),
    ],
)
async def test_connection_problems_raise_runner_errors(
    connection: FakeConnection, failure: BaseException, error: type[RunnerError]
) -> None:
    connection.failure = failure
    with pytest.raises(error, match=re.escape("pause run run-x on batch@server.example:22")):
        await signal_run(TARGET, "run-x", "STOP")


async def test_only_stop_and_cont_are_sent() -> None:
    with pytest.raises(SpecError):
        await signal_run(TARGET, "run-x", "TERM")  # type: ignore[arg-type]
