"""Exactly-once SSH runs against a real OpenSSH server: one run per run id, whatever dies
(the runner, its session, sshd, the supervisor), and stopping a run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from carbonaware.errors import (
    RunLostError,
    RunnerError,
)
from carbonaware.runners import ssh as ssh_module
from carbonaware.runners.ssh import (
    SshRunSpec,
    stop_ssh_run,
)
from carbonaware.runners.summary import parse_summary

from .operatorproc import pid_alive
from .sshd import (
    SshdServer,
    restart_sshd,
    running_sshd,
    session_pids,
    sshd_server,
    stop_sessions,
    stop_sshd,
)
from .sshrun import (
    Captured,
    group_processes,
    key_file,
    no_leftover_temp_dirs,
    run,
    run_dir_of,
    runner_command,
    target_for,
    wait_until,
    wait_until_async,
)

__all__ = ["key_file", "no_leftover_temp_dirs", "sshd_server"]

pytestmark = pytest.mark.integration


def new_run_id(purpose: str) -> str:
    return f"{purpose}-{uuid.uuid4()}"


def runs_of(count_file: Path) -> int:
    """How often the job ran: each run appends one line to the file on the server."""
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


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
        runner_command(server, key_file, termination_log, *args),
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
    assert wait_until(lambda: group_processes(job_pid) == [], 10)
    second, termination_log = start_cli(sshd_server, key_file, tmp_path, "second", *args)
    second.communicate(timeout=60)

    assert second.returncode == 124
    summary = parse_summary(termination_log.read_text())
    assert summary.timed_out
    assert summary.exit_code == 128 + 15
    assert summary.attached
    assert 3 <= summary.duration_seconds < 10


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
