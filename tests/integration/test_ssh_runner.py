"""The SSH runner, the probe and the runner command against a real OpenSSH server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbonaware.errors import (
    HostKeyMismatchError,
    RunLostError,
    RunnerConnectionLostError,
    RunnerError,
    TargetAuthError,
    TargetError,
    TargetUnreachableError,
)
from carbonaware.runners import ssh as ssh_module
from carbonaware.runners.ssh import (
    PROBE_OK_REASON,
    HostKeyPolicy,
    SshRunSpec,
    SshTargetSpec,
    probe_target,
    run_ssh_job,
    stop_ssh_run,
)
from carbonaware.runners.summary import parse_failure, parse_summary

from .operatorproc import free_port, pid_alive
from .sshd import (
    SshdServer,
    generate_key_pair,
    known_hosts_line,
    restart_sshd,
    running_sshd,
    session_pids,
    sshd_server,
    stop_sessions,
    stop_sshd,
)

__all__ = ["sshd_server"]

pytestmark = pytest.mark.integration

CARBONAWARE_CLI = Path(sys.executable).with_name("carbonaware")


@dataclass
class Captured:
    """Job output lines as the runner passed them on, with the time each arrived."""

    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)
    on_stdout: Callable[[bytes], None] | None = None

    def out(self, line: bytes) -> None:
        self.stdout.append(line)
        if self.on_stdout is not None:
            self.on_stdout(line)

    def err(self, line: bytes) -> None:
        self.stderr.append(line)

    @property
    def stdout_text(self) -> str:
        return b"".join(self.stdout).decode()

    @property
    def stderr_text(self) -> str:
        return b"".join(self.stderr).decode()


def target_for(server: SshdServer, **overrides: object) -> SshTargetSpec:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "private_key": server.client_private_key,
        "known_hosts": server.known_hosts,
        "connect_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return SshTargetSpec(**values)  # type: ignore[arg-type]


async def run(
    server: SshdServer, spec: SshRunSpec, captured: Captured | None = None, **target: object
) -> tuple[object, Captured]:
    captured = captured or Captured()
    summary = await run_ssh_job(
        target_for(server, **target), spec, stdout=captured.out, stderr=captured.err
    )
    return summary, captured


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


async def wait_until_async(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def read_pid(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().strip().isdigit())
    return int(path.read_text().strip())


# --------------------------------------------------------------------------- running jobs


async def test_script_runs_in_working_dir_with_env_and_returns_exit_code(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    tricky = 'it\'s "quoted" $HOME `x` \\ and\na second line'
    spec = SshRunSpec(
        script='pwd\nprintf "%s\\n" "$GREETING"\nprintf "%s|" "$TRICKY"\necho to-stderr >&2\n'
        "exit 3\n",
        working_dir=str(tmp_path),
        env=(("GREETING", "hello world"), ("TRICKY", tricky)),
    )

    summary, captured = await run(sshd_server, spec)

    assert summary.exit_code == 3
    assert not summary.timed_out
    lines = captured.stdout_text.split("\n")
    assert lines[0] == str(tmp_path)
    assert lines[1] == "hello world"
    assert captured.stdout_text.endswith(tricky + "|")
    assert captured.stderr_text == "to-stderr\n"


async def test_command_exit_zero_and_host_figures(sshd_server: SshdServer, tmp_path: Path) -> None:
    spec = SshRunSpec(command="echo ok && ls", working_dir=str(tmp_path))
    (tmp_path / "visible-file").write_text("x")

    summary, captured = await run(sshd_server, spec)

    assert summary.exit_code == 0
    assert summary.succeeded
    assert captured.stdout_text == "ok\nvisible-file\n"
    assert summary.cpu_core_seconds is not None
    assert summary.vcpus == os.cpu_count()
    assert summary.samples >= 2
    assert summary.host_utilisation is not None
    assert 0.0 <= summary.host_utilisation <= 1.0
    local_total_kib = int(Path("/proc/meminfo").read_text().split()[1])
    assert summary.memory_total_bytes == local_total_kib * 1024
    assert summary.memory_used_bytes_max is not None
    assert 0 < summary.memory_used_bytes_max <= summary.memory_total_bytes
    assert summary.end_time >= summary.start_time
    assert parse_summary(summary.to_json()) == parse_summary(summary.to_json())


async def test_missing_working_dir_fails_without_running(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    spec = SshRunSpec(command=f"touch {marker}", working_dir=str(tmp_path / "absent"))

    summary, captured = await run(sshd_server, spec)

    assert summary.exit_code == 1
    assert "cannot change to working directory" in captured.stderr_text
    assert not marker.exists()


async def test_shebang_script_runs_under_its_interpreter(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    spec = SshRunSpec(
        script=f"#!{sys.executable}\nimport os, sys\nprint(os.getcwd())\nsys.exit(4)\n",
        working_dir=str(tmp_path),
    )

    summary, captured = await run(sshd_server, spec)

    assert summary.exit_code == 4
    assert captured.stdout_text == f"{tmp_path}\n"


async def test_output_is_streamed_while_the_job_runs(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    # The job only finishes successfully if the test reacted to its first line while it was
    # still running: the line must have been passed on before the job ended.
    go = tmp_path / "go"
    script = (
        "echo ready\n"
        "i=0\n"
        f'while [ ! -e "{go}" ]; do i=$((i+1)); [ "$i" -gt 1200 ] && exit 7; sleep 0.05; done\n'
        "echo done\n"
    )
    captured = Captured(on_stdout=lambda line: go.touch() if line == b"ready\n" else None)

    summary, _ = await run(sshd_server, SshRunSpec(script=script), captured)

    assert summary.exit_code == 0
    assert captured.stdout == [b"ready\n", b"done\n"]


async def test_timeout_terminates_the_job_process_group(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    script = (
        f"echo $$ > {tmp_path}/job.pid\n"
        f"sleep 300 & echo $! > {tmp_path}/child.pid\n"
        "wait\n"
        f"touch {tmp_path}/finished\n"
    )
    spec = SshRunSpec(script=script, timeout_seconds=4, kill_grace_seconds=5)

    summary, _ = await run(sshd_server, spec)

    assert summary.timed_out
    assert summary.exit_code == 128 + 15
    job_pid, child_pid = read_pid(tmp_path / "job.pid"), read_pid(tmp_path / "child.pid")
    assert wait_until(lambda: not pid_alive(job_pid))
    assert wait_until(lambda: not pid_alive(child_pid))
    assert not (tmp_path / "finished").exists()


async def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    script = f"trap '' TERM\necho $$ > {tmp_path}/job.pid\nwhile :; do sleep 0.2; done\n"
    spec = SshRunSpec(script=script, timeout_seconds=3, kill_grace_seconds=1)

    summary, _ = await run(sshd_server, spec)

    assert summary.timed_out
    assert summary.exit_code == 128 + 9
    job_pid = read_pid(tmp_path / "job.pid")
    assert wait_until(lambda: not pid_alive(job_pid))


async def test_cancelling_the_runner_stops_the_remote_job(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(script=f"echo $$ > {pid_file}\nsleep 300\n", kill_grace_seconds=5)
    task = asyncio.create_task(run(sshd_server, spec))
    assert await wait_until_async(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    job_pid = int(pid_file.read_text())

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert wait_until(lambda: not pid_alive(job_pid))


async def test_cpu_core_seconds_are_the_jobs_own(sshd_server: SshdServer) -> None:
    # The job burns ~2 s of CPU and prints what its own rusage says; a second burner outside
    # the job runs at the same time, so a whole-host measurement would be visibly off.
    burn = (
        "import resource, time\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 2.0:\n"
        "    pass\n"
        "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(usage.ru_utime + usage.ru_stime)\n"
    )
    noise = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
    try:
        spec = SshRunSpec(command=f"{sys.executable} -c '{burn}'")
        summary, captured = await run(sshd_server, spec)
    finally:
        noise.kill()
        await noise.wait()

    assert summary.exit_code == 0
    own_seconds = float(captured.stdout_text.strip())
    assert own_seconds >= 2.0
    assert summary.cpu_core_seconds is not None
    assert summary.cpu_core_seconds == pytest.approx(own_seconds, rel=0.2)


# --------------------------------------------------------------------------- failures


@pytest.fixture
def other_key_pair(tmp_path: Path) -> tuple[str, str]:
    return generate_key_pair(tmp_path, "other_key")


def failure_cases(server: SshdServer, other: tuple[str, str]) -> dict[str, dict[str, object]]:
    wrong_host_key = known_hosts_line(server.host, server.port, other[1])
    return {
        "wrong host key": {"known_hosts": wrong_host_key},
        "no known_hosts": {"known_hosts": None},
        "wrong user key": {"private_key": other[0]},
        "wrong user": {"user": "nobody-such-user"},
        "closed port": {"port": free_port()},
        "unresolvable name": {"host": "no-such-host.invalid"},
    }


EXPECTED: dict[str, type[TargetError]] = {
    "wrong host key": HostKeyMismatchError,
    "no known_hosts": HostKeyMismatchError,
    "wrong user key": TargetAuthError,
    "wrong user": TargetAuthError,
    "closed port": TargetUnreachableError,
    "unresolvable name": TargetUnreachableError,
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
async def test_connection_failures_raise_and_run_nothing(
    sshd_server: SshdServer, tmp_path: Path, other_key_pair: tuple[str, str], case: str
) -> None:
    overrides = failure_cases(sshd_server, other_key_pair)[case]
    marker = tmp_path / "ran"

    with pytest.raises(EXPECTED[case]) as raised:
        await run(sshd_server, SshRunSpec(command=f"touch {marker}"), **overrides)

    assert not marker.exists()
    assert raised.value.reason == EXPECTED[case].reason
    message = str(raised.value)
    assert "PRIVATE KEY" not in message
    if EXPECTED[case] is HostKeyMismatchError:
        # The message names the key the server presented, so the user can check and add it.
        host_key_blob = sshd_server.host_public_key.split()[1]
        assert host_key_blob in message
        assert f"[{sshd_server.host}]:{sshd_server.port}" in message

    probe = await probe_target(
        host=str(overrides.get("host", sshd_server.host)),
        port=int(overrides.get("port", sshd_server.port)),  # type: ignore[call-overload]
        user=str(overrides.get("user", sshd_server.user)),
        private_key=str(overrides.get("private_key", sshd_server.client_private_key)),
        known_hosts=overrides.get("known_hosts", sshd_server.known_hosts),  # type: ignore[arg-type]
        host_key_policy=HostKeyPolicy.STRICT,
        timeout=10.0,
    )
    assert not probe.reachable
    assert probe.reason == EXPECTED[case].reason


async def test_probe_succeeds_with_the_right_host_key(sshd_server: SshdServer) -> None:
    probe = await probe_target(
        sshd_server.host,
        sshd_server.port,
        sshd_server.user,
        sshd_server.client_private_key,
        sshd_server.known_hosts,
        HostKeyPolicy.STRICT,
        10.0,
    )

    assert probe.reachable
    assert probe.reason == PROBE_OK_REASON == "Connected"


async def test_accept_any_connects_without_known_hosts_only_when_chosen(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"

    with pytest.raises(HostKeyMismatchError):
        await run(sshd_server, SshRunSpec(command=f"touch {marker}"), known_hosts=None)
    assert not marker.exists()

    summary, _ = await run(
        sshd_server,
        SshRunSpec(command=f"touch {marker}"),
        known_hosts=None,
        host_key_policy=HostKeyPolicy.ACCEPT_ANY,
    )
    assert summary.exit_code == 0
    assert marker.exists()

    probe = await probe_target(
        sshd_server.host,
        sshd_server.port,
        sshd_server.user,
        sshd_server.client_private_key,
        None,
        HostKeyPolicy.ACCEPT_ANY,
        10.0,
    )
    assert probe.reachable
    assert "AcceptAny" in probe.message


async def test_unparsable_known_hosts_is_reported_without_echoing_it(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    pasted = sshd_server.known_hosts + sshd_server.client_private_key

    with pytest.raises(HostKeyMismatchError) as raised:
        await run(sshd_server, SshRunSpec(command=f"touch {marker}"), known_hosts=pasted)

    assert re.search(r"\(line \d+\)", str(raised.value))
    for fragment in _key_fragments(sshd_server.client_private_key):
        assert fragment not in str(raised.value)
    assert not marker.exists()


async def test_a_connection_that_cannot_be_restored_is_reported_lost(tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    run_id = f"lost-link-{uuid.uuid4()}"
    with running_sshd() as server:
        spec = SshRunSpec(
            script=f"echo $$ > {pid_file}\nsleep 300\n", run_id=run_id, reattach_seconds=2
        )
        task = asyncio.create_task(run(server, spec))
        assert await wait_until_async(lambda: pid_file.exists() and pid_file.read_text() != "")
        # The listener goes away for good, then the open connection is cut.
        sessions = session_pids(server)
        assert sessions
        stop_sshd(server)
        stop_sessions(sessions)

        with pytest.raises(RunnerConnectionLostError) as raised:
            await asyncio.wait_for(task, 60)
    job_pid = int(pid_file.read_text())
    try:
        # The run goes on on the server, and the message says how to attach to it.
        assert pid_alive(job_pid)
        assert run_id in str(raised.value)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pid, signal.SIGKILL)


# --------------------------------------------------------------------------- exactly once


def new_run_id(purpose: str) -> str:
    return f"{purpose}-{uuid.uuid4()}"


def runs_of(count_file: Path) -> int:
    """How often the job ran: each run appends one line to the file on the server."""
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def run_dir_of(server: SshdServer, run_id: str) -> Path:
    return server.home / ".carbonaware" / "runs" / run_id


def wait_for_go(go: Path, seconds: int = 120) -> str:
    """Shell lines that wait (bounded) until the test creates ``go``."""
    rounds = seconds * 20
    return (
        f'i=0; while [ ! -e "{go}" ]; do i=$((i+1)); [ "$i" -gt {rounds} ] && exit 7; '
        "sleep 0.05; done\n"
    )


async def test_two_concurrent_calls_with_one_run_id_run_the_job_once(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(
        script=f"echo ran >> {count}\necho output\nsleep 1\nexit 6\n",
        run_id=new_run_id("concurrent"),
    )

    (first, first_out), (second, second_out) = await asyncio.gather(
        run(sshd_server, spec), run(sshd_server, spec)
    )

    assert runs_of(count) == 1
    for summary in (first, second):
        assert summary.exit_code == 6
        assert not summary.timed_out
        assert summary.duration_seconds >= 1
    assert abs(first.start_time - second.start_time) <= timedelta(seconds=1)
    assert abs(first.end_time - second.end_time) <= timedelta(seconds=1)
    assert first.cpu_core_seconds == second.cpu_core_seconds
    assert sorted([first.attached, second.attached]) == [False, True]
    assert first_out.stdout_text == second_out.stdout_text == "output\n"


async def test_a_later_call_attaches_to_the_finished_run_and_reports_when_it_ran(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=f"echo ran >> {count}\necho once\n", run_id=new_run_id("later"))

    first, _ = await run(sshd_server, spec)
    await asyncio.sleep(1.5)  # the second call attaches well after the run ended
    second, second_out = await run(sshd_server, spec)

    assert runs_of(count) == 1
    assert first.attached is False
    assert second.attached is True
    assert second.exit_code == first.exit_code == 0
    assert abs(second.start_time - first.start_time) <= timedelta(seconds=0.5)
    assert abs(second.end_time - first.end_time) <= timedelta(seconds=0.5)
    assert second.end_time < datetime.now(UTC) - timedelta(seconds=1)
    assert second_out.stdout_text == "once\n"
    # A call that only attached to a finished run has no host figures of its own to report.
    assert second.samples == 0
    assert first.samples >= 2


def start_cli(
    server: SshdServer, key_file: Path, tmp_path: Path, name: str, *args: str
) -> tuple[subprocess.Popen[str], Path]:
    termination_log = tmp_path / f"{name}-termination-log"
    termination_log.write_text("")
    process = subprocess.Popen(
        [
            str(CARBONAWARE_CLI),
            "runner",
            "ssh",
            f"--host={server.host}",
            f"--port={server.port}",
            f"--user={server.user}",
            f"--key-file={key_file}",
            f"--termination-log={termination_log}",
            "--connect-timeout-seconds=10",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CARBONAWARE_SSH_KNOWN_HOSTS": server.known_hosts},
    )
    return process, termination_log


def test_a_killed_runner_leaves_the_job_running_and_a_new_runner_attaches(
    sshd_server: SshdServer, key_file: Path, tmp_path: Path
) -> None:
    count, pid_file, go = tmp_path / "count", tmp_path / "job.pid", tmp_path / "go"
    script = f"echo ran >> {count}\necho $$ > {pid_file}\n{wait_for_go(go)}echo done\nexit 9\n"
    run_id = new_run_id("cli")
    first, _ = start_cli(
        sshd_server, key_file, tmp_path, "first", f"--run-id={run_id}", f"--script={script}"
    )
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 60)
    finally:
        first.kill()  # SIGKILL: the runner cannot stop anything
        first.communicate()
    job_pid = int(pid_file.read_text())
    assert pid_alive(job_pid)

    second, termination_log = start_cli(
        sshd_server, key_file, tmp_path, "second", f"--run-id={run_id}", f"--script={script}"
    )
    assert wait_until(lambda: pid_alive(job_pid), 2)
    go.touch()
    stdout, stderr = second.communicate(timeout=120)

    assert second.returncode == 9, stderr
    assert "done\n" in stdout
    summary = parse_summary(termination_log.read_text())
    assert summary.exit_code == 9
    assert summary.attached
    assert runs_of(count) == 1
    assert not pid_alive(job_pid)


def test_the_timeout_holds_on_the_server_with_no_runner_connected(
    sshd_server: SshdServer, key_file: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "job.pid"
    script = f"echo $$ > {pid_file}\nsleep 300 &\nwait\n"
    run_id = new_run_id("timeout")
    args = [f"--run-id={run_id}", f"--script={script}", "--timeout-seconds=3"]
    first, _ = start_cli(sshd_server, key_file, tmp_path, "first", *args, "--kill-grace-seconds=1")
    try:
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "", 60)
    finally:
        first.kill()
        first.communicate()
    job_pid = int(pid_file.read_text())
    assert pid_alive(job_pid)

    # Nobody is connected: the server's own watchdog ends the whole process group.
    assert wait_until(lambda: not pid_alive(job_pid), 30)
    assert wait_until(lambda: process_group_members(job_pid) == [], 10)
    second, termination_log = start_cli(sshd_server, key_file, tmp_path, "second", *args)
    second.communicate(timeout=60)

    assert second.returncode == 124
    summary = parse_summary(termination_log.read_text())
    assert summary.timed_out
    assert summary.exit_code == 128 + 15
    assert summary.attached
    assert 3 <= summary.duration_seconds < 10


def process_group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def test_a_killed_session_is_reattached_without_repeating_output(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    count, pid_file, go = tmp_path / "count", tmp_path / "job.pid", tmp_path / "go"
    script = (
        f"echo ran >> {count}\necho before\necho err-before >&2\necho $$ > {pid_file}\n"
        f"{wait_for_go(go)}echo after\necho err-after >&2\n"
    )
    spec = SshRunSpec(script=script, run_id=new_run_id("session"))
    captured = Captured()
    task = asyncio.create_task(run(sshd_server, spec, captured))
    assert await wait_until_async(lambda: captured.stdout == [b"before\n"])
    assert await wait_until_async(lambda: captured.stderr == [b"err-before\n"])
    # Cut the connection mid-run: the call re-attaches from where its output was.
    stop_sessions(session_pids(sshd_server))
    await asyncio.sleep(1)
    go.touch()

    summary, _ = await asyncio.wait_for(task, 120)

    assert summary.exit_code == 0
    assert summary.attached is False
    assert captured.stdout_text == "before\nafter\n"
    assert captured.stderr_text == "err-before\nerr-after\n"
    assert runs_of(count) == 1


async def test_a_restarted_sshd_is_reattached_after_the_run_ended(tmp_path: Path) -> None:
    count, pid_file, go = tmp_path / "count", tmp_path / "job.pid", tmp_path / "go"
    script = f"echo ran >> {count}\necho $$ > {pid_file}\n{wait_for_go(go)}echo after\nexit 5\n"
    spec = SshRunSpec(script=script, run_id=new_run_id("restart"), reattach_seconds=120)
    with running_sshd() as server:
        task = asyncio.create_task(run(server, spec))
        assert await wait_until_async(lambda: pid_file.exists() and pid_file.read_text() != "")
        sessions = session_pids(server)
        stop_sshd(server)
        stop_sessions(sessions)
        # The job ends while no connection is possible; then the server comes back.
        go.touch()
        assert await wait_until_async(lambda: not pid_alive(int(pid_file.read_text())))
        await asyncio.sleep(1)
        assert not task.done()
        restarted = restart_sshd(server)
        try:
            summary, captured = await asyncio.wait_for(task, 120)
        finally:
            stop_sshd(restarted)

    assert summary.exit_code == 5
    assert captured.stdout_text == "after\n"
    assert runs_of(count) == 1


async def test_the_client_backstop_stops_a_run_the_server_failed_to_stop(
    sshd_server: SshdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "job.pid"
    run_id = new_run_id("backstop")
    spec = SshRunSpec(
        script=f"echo $$ > {pid_file}\nsleep 300\n",
        run_id=run_id,
        timeout_seconds=2,
        kill_grace_seconds=1,
    )
    monkeypatch.setattr(ssh_module, "BACKSTOP_MARGIN_SECONDS", 1.0)
    task = asyncio.create_task(run(sshd_server, spec))
    started = run_dir_of(sshd_server, run_id) / "started"
    assert await wait_until_async(lambda: started.exists() and pid_file.exists())
    watchdog_pid = int(started.read_text().split()[2])
    # Without its watchdog the server cannot enforce the timeout: the client must.
    os.kill(watchdog_pid, signal.SIGKILL)
    job_pid = int(pid_file.read_text())

    summary, _ = await asyncio.wait_for(task, 60)

    assert summary.timed_out
    assert summary.exit_code == 128 + 15
    assert not pid_alive(job_pid)


async def test_stop_ssh_run_stops_a_running_job(sshd_server: SshdServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    run_id = new_run_id("stop")
    spec = SshRunSpec(script=f"echo $$ > {pid_file}\nsleep 300\n", run_id=run_id)
    task = asyncio.create_task(run(sshd_server, spec))
    assert await wait_until_async(lambda: pid_file.exists() and pid_file.read_text() != "")
    job_pid = int(pid_file.read_text())

    stopped = await stop_ssh_run(target_for(sshd_server), run_id, grace_seconds=5)
    summary, _ = await asyncio.wait_for(task, 60)

    assert stopped is not None
    assert stopped.exit_code == 128 + 15
    assert not stopped.timed_out
    assert stopped.attached
    assert summary.exit_code == stopped.exit_code
    assert summary.attached is False
    assert not pid_alive(job_pid)
    # Stopping it again reports the same outcome.
    again = await stop_ssh_run(target_for(sshd_server), run_id, grace_seconds=5)
    assert again is not None
    assert again.exit_code == stopped.exit_code


async def test_stop_ssh_run_before_the_start_means_it_never_runs(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    run_id = new_run_id("never")

    assert await stop_ssh_run(target_for(sshd_server), run_id, grace_seconds=1) is None
    with pytest.raises(RunnerError, match="stopped before it began"):
        await run(sshd_server, SshRunSpec(command=f"touch {marker}", run_id=run_id))

    assert not marker.exists()


async def test_a_run_whose_supervisor_dies_is_lost_and_never_started_again(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    count, pid_file = tmp_path / "count", tmp_path / "job.pid"
    run_id = new_run_id("lost")
    spec = SshRunSpec(
        script=f"echo ran >> {count}\necho $$ > {pid_file}\nsleep 300\n",
        run_id=run_id,
        kill_grace_seconds=1,
    )
    task = asyncio.create_task(run(sshd_server, spec))
    assert await wait_until_async(lambda: pid_file.exists() and pid_file.read_text() != "")
    job_pid = int(pid_file.read_text())
    supervisor_pid = int((run_dir_of(sshd_server, run_id) / "supervisor").read_text().split()[0])

    os.kill(supervisor_pid, signal.SIGKILL)
    try:
        with pytest.raises(RunLostError, match=run_id):
            await asyncio.wait_for(task, 60)
        with pytest.raises(RunLostError):
            await run(sshd_server, spec)
        # Nothing could report the orphaned job's outcome any more, so it was stopped.
        assert wait_until(lambda: not pid_alive(job_pid), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job_pid, signal.SIGKILL)
    assert runs_of(count) == 1


# --------------------------------------------------------------------------- secrets


def _key_fragments(private_key: str) -> list[str]:
    """The base64 body lines of the key: any of them in output would be a leak."""
    return [line for line in private_key.splitlines() if line and "PRIVATE KEY" not in line]


async def test_private_key_never_appears_in_logs_output_or_errors(
    sshd_server: SshdServer,
    tmp_path: Path,
    other_key_pair: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    summary, captured = await run(sshd_server, SshRunSpec(command="echo ran"))
    assert summary.exit_code == 0
    texts += [captured.stdout_text, captured.stderr_text, summary.to_json()]
    texts.append(repr(target_for(sshd_server)))

    for overrides in (
        {"known_hosts": known_hosts_line(sshd_server.host, sshd_server.port, other_key_pair[1])},
        {"user": "nobody-such-user"},
    ):
        with pytest.raises(TargetError) as raised:
            await run(sshd_server, SshRunSpec(command="echo ran"), **overrides)
        texts += [str(raised.value), repr(raised.value)]

    with pytest.raises(TargetAuthError) as unreadable:
        await run(sshd_server, SshRunSpec(command="true"), private_key="not a key\n" * 3)
    texts.append(str(unreadable.value))

    out, err = capsys.readouterr()
    texts += [out, err, caplog.text]
    everything = "\n".join(texts)
    assert "ran" in everything  # the capture did see the run
    for fragment in _key_fragments(sshd_server.client_private_key):
        assert fragment not in everything
    assert "not a key" not in everything


# --------------------------------------------------------------------------- the command


@pytest.fixture
def key_file(sshd_server: SshdServer, tmp_path: Path) -> Path:
    path = tmp_path / "id"
    path.write_text(sshd_server.client_private_key)
    path.chmod(0o400)
    return path


def run_cli(
    server: SshdServer,
    key_file: Path,
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], str]:
    termination_log = tmp_path / "termination-log"
    termination_log.write_text("")
    result = subprocess.run(
        [
            str(CARBONAWARE_CLI),
            "runner",
            "ssh",
            f"--host={server.host}",
            f"--port={server.port}",
            f"--user={server.user}",
            f"--key-file={key_file}",
            f"--termination-log={termination_log}",
            "--connect-timeout-seconds=10",
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    return result, termination_log.read_text()


@pytest.fixture
def known_hosts_file(sshd_server: SshdServer, tmp_path: Path) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sshd_server.known_hosts)
    return path


def test_cli_streams_and_exits_with_the_remote_code(
    sshd_server: SshdServer, key_file: Path, known_hosts_file: Path, tmp_path: Path
) -> None:
    result, record = run_cli(
        sshd_server,
        key_file,
        tmp_path,
        f"--known-hosts-file={known_hosts_file}",
        f"--working-dir={tmp_path}",
        "--env=A=1",
        env={
            "CARBONAWARE_SSH_COMMAND": 'pwd; echo "$A$B"; echo oops >&2; exit 5',
            "CARBONAWARE_SSH_ENV": json.dumps([{"name": "B", "value": "two"}]),
        },
    )

    assert result.returncode == 5
    assert result.stdout == f"{tmp_path}\n1two\n"
    assert "oops\n" in result.stderr
    summary = parse_summary(record)
    assert summary.exit_code == 5
    assert not summary.timed_out
    everything = result.stdout + result.stderr + record
    for fragment in _key_fragments(sshd_server.client_private_key):
        assert fragment not in everything


def test_cli_timeout_exits_124(
    sshd_server: SshdServer, key_file: Path, known_hosts_file: Path, tmp_path: Path
) -> None:
    result, record = run_cli(
        sshd_server,
        key_file,
        tmp_path,
        f"--known-hosts-file={known_hosts_file}",
        "--command=sleep 300",
        "--timeout-seconds=1",
        "--kill-grace-seconds=2",
    )

    assert result.returncode == 124
    assert parse_summary(record).timed_out


@pytest.mark.parametrize(
    ("case", "exit_code", "reason"),
    [
        ("wrong host key", 76, "HostKeyMismatch"),
        ("wrong user", 77, "AuthFailed"),
        ("closed port", 69, "Unreachable"),
    ],
)
def test_cli_connection_failures_have_distinct_exit_codes(
    sshd_server: SshdServer,
    key_file: Path,
    tmp_path: Path,
    other_key_pair: tuple[str, str],
    case: str,
    exit_code: int,
    reason: str,
) -> None:
    marker = tmp_path / "ran"
    args = [f"--command=touch {marker}"]
    known_hosts = sshd_server.known_hosts
    if case == "wrong host key":
        known_hosts = known_hosts_line(sshd_server.host, sshd_server.port, other_key_pair[1])
    elif case == "wrong user":
        args.append("--user=nobody-such-user")
    else:
        args.append(f"--port={free_port()}")

    result, record = run_cli(
        sshd_server,
        key_file,
        tmp_path,
        *args,
        env={"CARBONAWARE_SSH_KNOWN_HOSTS": known_hosts},
    )

    assert result.returncode == exit_code
    assert parse_failure(record).reason == reason
    assert not marker.exists()
    for fragment in _key_fragments(sshd_server.client_private_key):
        assert fragment not in result.stdout + result.stderr + record


@pytest.fixture(autouse=True)
def _no_leftover_temp_dirs(sshd_server: SshdServer) -> Iterator[None]:
    """Every run removes the private temporary directory it made on the server (its
    sessions' TMPDIR; the runs stay in the server's own HOME, removed with the server)."""
    before = set(sshd_server.tmp.glob("carbonaware.*"))
    yield
    assert wait_until(lambda: set(sshd_server.tmp.glob("carbonaware.*")) <= before, 10)
