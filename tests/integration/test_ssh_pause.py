"""Pausing and resuming an SSH run on a real OpenSSH server: SIGSTOP of its process group holds
the job where it is while the call that started it stays attached, SIGCONT lets it go on, and
it finishes once with all of its work; a paused job still meets its timeout and a stop."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import pytest

from carbonaware.runners.ssh import SshRunSpec, run_ssh_job, stop_ssh_run
from carbonaware.runners.sshsignal import signal_run

from .sshd import SshdServer, sshd_server
from .sshrun import group_processes, run_dir_of, target_for, wait_until_async

__all__ = ["sshd_server"]

pytestmark = pytest.mark.integration

WORK_LINES = 20  # one line every 0.2 s: 4 s of work
PAUSE_SECONDS = 2.0
TERM_HANDLER_JOB = "trap 'echo terminated; exit 3' TERM\necho ready\nwhile :; do sleep 0.1; done\n"


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def group_states(pgid: int) -> list[str]:
    """The states of the live processes in process group ``pgid``."""
    return [state for _, state in group_processes(pgid)]


def all_stopped(pgid: int) -> bool:
    states = group_states(pgid)
    return bool(states) and set(states) == {"T"}


async def started_run(
    server: SshdServer, script: str, lines: list[bytes], **spec: object
) -> tuple[str, asyncio.Task[object], int]:
    """Start a run with its own run id, its stdout passed on to ``lines``; returns the id, the
    attached call and the job's process group once the job has written its first line."""
    run_id = f"pause-{uuid.uuid4()}"
    run_spec = SshRunSpec(script=script, run_id=run_id, **spec)  # type: ignore[arg-type]
    errors: list[bytes] = []  # the shell's own notes ("Terminated") on the job's children
    task: asyncio.Task[object] = asyncio.create_task(
        run_ssh_job(target_for(server), run_spec, stdout=lines.append, stderr=errors.append)
    )
    started = run_dir_of(server, run_id) / "started"
    assert await wait_until_async(lambda: started.exists() and bool(lines))
    return run_id, task, int(started.read_text().split()[0])


async def test_a_paused_run_resumes_where_it_was_and_finishes_once(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    script = (
        f"echo ran >> {count}\ni=0\nwhile [ $i -lt {WORK_LINES} ]; do\n"
        '  i=$((i + 1))\n  echo "$i $(date +%s.%N)"\n  sleep 0.2\ndone\n'
    )
    target, lines = target_for(sshd_server), []
    before = set(sshd_server.tmp.glob("carbonaware.*"))
    run_id, task, pgid = await started_run(sshd_server, script, lines)
    assert await wait_until_async(lambda: len(lines) >= 3)

    assert await signal_run(target, run_id, "STOP")
    assert await wait_until_async(lambda: all_stopped(pgid), 30)
    await asyncio.sleep(PAUSE_SECONDS)  # the pause itself
    # Still a live run to everything that watches it: the job is held, nothing ended.
    assert all_stopped(pgid)
    supervisor = int((run_dir_of(sshd_server, run_id) / "supervisor").read_text().split()[0])
    assert process_state(supervisor) in {"S", "R"}
    assert not (run_dir_of(sshd_server, run_id) / "exit").exists()
    assert not (run_dir_of(sshd_server, run_id) / "lost").exists()
    assert not task.done()

    assert await signal_run(target, run_id, "CONT")
    summary = await asyncio.wait_for(task, 120)

    assert summary.exit_code == 0
    assert not summary.timed_out
    records = [line.decode().split() for line in lines]
    assert [int(counter) for counter, _ in records] == list(range(1, WORK_LINES + 1))
    epochs = [float(epoch) for _, epoch in records]
    gaps = [later - earlier for earlier, later in itertools.pairwise(epochs)]
    assert max(gaps) >= PAUSE_SECONDS
    assert sorted(gaps)[-2] < PAUSE_SECONDS  # one pause; the rest is the work's own pace
    assert summary.duration_seconds >= max(gaps)  # the run's time includes the pause
    assert len(count.read_text().splitlines()) == 1
    # Over: nothing to pause or resume any more.
    assert not await signal_run(target, run_id, "STOP")
    assert not await signal_run(target, run_id, "CONT")
    assert await wait_until_async(lambda: set(sshd_server.tmp.glob("carbonaware.*")) <= before, 10)


async def test_the_timeout_ends_a_paused_job_through_its_term_handler(
    sshd_server: SshdServer,
) -> None:
    # SIGTERM alone would wait for SIGCONT: the job would sleep until SIGKILL (137) at 33 s.
    lines: list[bytes] = []
    run_id, task, pgid = await started_run(
        sshd_server, TERM_HANDLER_JOB, lines, timeout_seconds=3, kill_grace_seconds=30
    )
    assert await signal_run(target_for(sshd_server), run_id, "STOP")
    assert await wait_until_async(lambda: all_stopped(pgid), 30)

    summary = await asyncio.wait_for(task, 60)

    assert summary.timed_out
    assert summary.exit_code == 3
    assert lines == [b"ready\n", b"terminated\n"]
    assert summary.duration_seconds < 15


async def test_stopping_a_paused_run_ends_it_through_its_term_handler(
    sshd_server: SshdServer,
) -> None:
    lines: list[bytes] = []
    run_id, task, pgid = await started_run(
        sshd_server, TERM_HANDLER_JOB, lines, kill_grace_seconds=30
    )
    target = target_for(sshd_server)
    assert await signal_run(target, run_id, "STOP")
    assert await wait_until_async(lambda: all_stopped(pgid), 30)

    stopped = await asyncio.wait_for(stop_ssh_run(target, run_id, grace_seconds=30), 60)
    summary = await asyncio.wait_for(task, 60)

    assert stopped is not None
    assert stopped.exit_code == summary.exit_code == 3
    assert not summary.timed_out
    assert lines == [b"ready\n", b"terminated\n"]
    assert summary.duration_seconds < 15
