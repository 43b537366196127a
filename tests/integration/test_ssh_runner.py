"""The SSH runner and the probe against a real OpenSSH server: running jobs, connection
failures, and no secret in any output."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import pytest

from carbonaware.errors import (
    HostKeyMismatchError,
    RunnerConnectionLostError,
    TargetAuthError,
    TargetError,
    TargetUnreachableError,
)
from carbonaware.runners.ssh import (
    PROBE_OK_REASON,
    HostKeyPolicy,
    SshRunSpec,
    probe_target,
)
from carbonaware.runners.summary import parse_summary

from .operatorproc import free_port, pid_alive
from .sshd import (
    SshdServer,
    known_hosts_line,
    running_sshd,
    session_pids,
    sshd_server,
    stop_sessions,
    stop_sshd,
)
from .sshrun import (
    Captured,
    key_fragments,
    no_leftover_temp_dirs,
    other_key_pair,
    read_pid,
    run,
    target_for,
    wait_until,
    wait_until_async,
)

__all__ = ["no_leftover_temp_dirs", "other_key_pair", "sshd_server"]

pytestmark = pytest.mark.integration


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
    for fragment in key_fragments(sshd_server.client_private_key):
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


# --------------------------------------------------------------------------- secrets


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
    for fragment in key_fragments(sshd_server.client_private_key):
        assert fragment not in everything
    assert "not a key" not in everything
