"""The remote run script, run under the local /bin/sh exactly as sshd would run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carbonaware.errors import RunnerError
from carbonaware.runners.sshscript import (
    ControlLine,
    build_kill_command,
    build_sample_once_command,
    build_sampler_command,
    new_marker,
    split_control_line,
)
from carbonaware.runners.sshspec import SshRunSpec

from .fakeserver import FakeServer, ScriptRun


@pytest.fixture(params=["sh", "busybox"])
def shell(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_like_sshd(
    spec: SshRunSpec, tmp_path: Path, shell: str = "sh"
) -> tuple[ScriptRun, list[ControlLine], bytes]:
    """Start a fresh run through the bootstrap under /bin/sh -c, as sshd does, and wait for it."""
    run = FakeServer(tmp_path, shell=shell).start(spec, run_id="run-1")
    controls = [control for control in run.controls if control.kind != "alive"]
    return run, controls, run.job_stderr


def test_exit_code_env_and_working_dir(tmp_path: Path, shell: str) -> None:
    workdir = tmp_path / "dir with spaces"
    workdir.mkdir()
    spec = SshRunSpec(
        command='pwd; echo "$ALPHA/$BETA"; exit 42',
        working_dir=str(workdir),
        env=(("ALPHA", "a b"), ("BETA", "$(not run)")),
    )

    result, controls, _ = run_like_sshd(spec, tmp_path, shell)

    assert result.returncode == 42
    assert result.stdout.decode() == f"{workdir}\na b/$(not run)\n"
    kinds = [control.kind for control in controls]
    assert kinds == ["clock", "claim", "start", "end"]
    start, end = controls[2], controls[3]
    assert start.pgid is not None
    assert start.pgid > 1
    assert end.exit_code == 42
    assert not end.timed_out
    assert end.cpu_core_seconds is not None


def test_script_text_is_passed_verbatim(tmp_path: Path, shell: str) -> None:
    script = (
        "cat <<'X'\n"
        "quotes ' \" ` $(date) ${HOME} \\\n"
        "X\n"
        "echo CARBONAWARE_EOF_0000\n"
        "printf 'no trailing newline'"
    )

    result, _, _ = run_like_sshd(SshRunSpec(script=script), tmp_path, shell)

    assert result.returncode == 0
    assert result.stdout.decode() == (
        "quotes ' \" ` $(date) ${HOME} \\\nCARBONAWARE_EOF_0000\nno trailing newline"
    )


def test_job_env_cannot_clobber_the_wrapper(tmp_path: Path, shell: str) -> None:
    names = ("run_dir", "marker", "job_pid", "status", "temporary_dir", "stdout_offset", "HOME")
    spec = SshRunSpec(
        command="echo " + " ".join(f'"${name}"' for name in names) + "; exit 3",
        env=tuple((name, "/x") for name in names),
    )

    result, controls, _ = run_like_sshd(spec, tmp_path, shell)

    assert result.returncode == 3
    assert result.stdout == b" ".join([b"/x"] * len(names)) + b"\n"
    assert [control.kind for control in controls] == ["clock", "claim", "start", "end"]
    assert controls[-1].exit_code == 3
    assert list((tmp_path / "scratch").iterdir()) == []


def test_temporary_directory_is_removed(tmp_path: Path, shell: str) -> None:
    result, _, _ = run_like_sshd(SshRunSpec(command="ls -d $TMPDIR/carbonaware.*"), tmp_path, shell)

    assert result.returncode == 0
    assert b"carbonaware." in result.stdout
    assert list((tmp_path / "scratch").iterdir()) == []


def test_home_relative_working_dir(tmp_path: Path, shell: str) -> None:
    home_jobs = FakeServer(tmp_path).home / "jobs"
    home_jobs.mkdir()

    result, _, _ = run_like_sshd(SshRunSpec(command="pwd", working_dir="~/jobs"), tmp_path, shell)

    assert result.stdout.decode().strip() == str(home_jobs)


def test_missing_working_dir_stops_before_the_job(tmp_path: Path, shell: str) -> None:
    marker = tmp_path / "ran"
    spec = SshRunSpec(command=f"touch {marker}", working_dir=str(tmp_path / "absent"))

    result, controls, stderr = run_like_sshd(spec, tmp_path, shell)

    assert result.returncode == 1
    assert "start" not in [control.kind for control in controls]
    assert controls[-1].kind == "end"
    assert controls[-1].exit_code == 1
    assert b"cannot change to working directory" in stderr
    assert not marker.exists()


def test_shebang_picks_the_interpreter(tmp_path: Path, shell: str) -> None:
    script = f"#!{sys.executable} -u\nimport sys\nprint(sys.argv[0].endswith('/job'))\n"

    result, _, _ = run_like_sshd(SshRunSpec(script=script), tmp_path, shell)

    assert result.returncode == 0
    assert result.stdout == b"True\n"


def test_the_job_runs_in_its_own_process_group(tmp_path: Path, shell: str) -> None:
    result, controls, _ = run_like_sshd(
        # The fifth field of /proc/PID/stat is the process group (busybox ps has no -p).
        SshRunSpec(command="read -r _ _ _ _ pgid _ < /proc/$$/stat; echo $pgid; echo $$"),
        tmp_path,
        shell,
    )

    pgid, pid = (int(value) for value in result.stdout.split())
    assert pgid == pid == controls[2].pgid


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def test_processes_left_in_the_job_group_are_stopped(tmp_path: Path, shell: str) -> None:
    pid_file = tmp_path / "straggler"
    spec = SshRunSpec(command=f"sleep 300 & echo $! > {pid_file}; exit 0")

    result, _, _ = run_like_sshd(spec, tmp_path, shell)

    assert result.returncode == 0
    straggler = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not _gone(straggler) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(straggler)


@pytest.mark.parametrize("shell", ["sh", "busybox"])
def test_kill_command_targets_the_group(tmp_path: Path, shell: str) -> None:
    server = FakeServer(tmp_path, shell=shell)
    group = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 300 & echo $! ; exec sleep 300"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert group.stdout is not None
    child = int(group.stdout.readline())

    subprocess.run(server.argv(build_kill_command(group.pid, "TERM")), check=True, timeout=30)

    assert group.wait(timeout=10) == -15
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
    assert "-TERM -" in build_kill_command(4242, "TERM")
    with pytest.raises(RunnerError):
        build_kill_command(1, "TERM")
    with pytest.raises(RunnerError):
        build_kill_command(4242, "HUP")


def test_sample_commands_run_and_report_vcpus(tmp_path: Path) -> None:
    once = subprocess.run(
        ["/bin/sh", "-c", build_sample_once_command()], capture_output=True, text=True, check=True
    )
    loop = subprocess.Popen(
        ["/bin/sh", "-c", build_sampler_command(0.1)], stdout=subprocess.PIPE, text=True
    )
    assert loop.stdout is not None
    first_lines = [loop.stdout.readline() for _ in range(8)]
    loop.kill()
    loop.wait()

    assert once.stdout.startswith(f"vcpus {os.cpu_count()}\ncpu ")
    assert "MemAvailable:" in once.stdout
    assert once.stdout.rstrip().endswith("sample-end")
    assert first_lines[0].startswith("cpu ")
    assert first_lines.count("sample-end\n") == 2


def test_split_control_line() -> None:
    marker = new_marker()

    assert split_control_line(b"plain\n", marker) == (b"plain\n", None)
    output, control = split_control_line(f"partial{marker} start 123 17.5\n".encode(), marker)
    assert output == b"partial"
    assert control == ControlLine(kind="start", pgid=123, start_epoch=17.5)
    _, end = split_control_line(
        f"{marker} end 7 1 100.25 160 0m0.00s 0m0.00s 0m1.50s 0m0.50s \n".encode(), marker
    )
    assert end == ControlLine(
        kind="end",
        exit_code=7,
        timed_out=True,
        start_epoch=100.25,
        end_epoch=160.0,
        cpu_core_seconds=2.0,
    )
    _, never_ran = split_control_line(f"{marker} end - 0 5 5\n".encode(), marker)
    assert never_ran == ControlLine(kind="end", exit_code=None, start_epoch=5.0, end_epoch=5.0)
    _, lost = split_control_line(f"{marker} lost 9.5 the server restarted\n".encode(), marker)
    assert lost == ControlLine(kind="lost", epoch=9.5, text="the server restarted")
    _, clock = split_control_line(f"{marker} clock 1700000000.123\n".encode(), marker)
    assert clock == ControlLine(kind="clock", epoch=1700000000.123)
    _, claim = split_control_line(f"{marker} claim abc\n".encode(), marker)
    assert claim == ControlLine(kind="claim", text="abc")
    assert split_control_line(f"{marker} what\n".encode(), marker)[1] == ControlLine("unknown")
    assert split_control_line(f"{marker} end x 0 1 2\n".encode(), marker)[1] == ControlLine(
        "unknown"
    )
    assert split_control_line(f"{marker} end 0 2 1 2\n".encode(), marker)[1] == ControlLine(
        "unknown"
    )
    assert new_marker() != marker
