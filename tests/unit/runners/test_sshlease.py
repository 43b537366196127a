"""The run directory protocol: a run starts once, later calls attach, the server enforces the
timeout, a lost supervisor is reported and never restarted, stops, offsets and pruning.

Every test runs the real scripts under dash (/bin/sh here) and under busybox (skipped when
busybox or a private mount namespace is not available).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from carbonaware.errors import SpecError
from carbonaware.runners.sshlease import PRUNE_AFTER_SECONDS, build_run_script, build_stop_script
from carbonaware.runners.sshspec import SshRunSpec
from carbonaware.runners.sshsupervisor import build_supervisor_script

from .fakeserver import (
    FakeServer,
    finish,
    gone,
    group_members,
    kill_group,
    processes_with_argv,
    start_script,
    wait_until,
)

MARKER = "__marker_for_tests__"


@pytest.fixture(params=["sh", "busybox"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> FakeServer:
    return FakeServer(tmp_path, shell=request.param)


def counting_job(count_file: Path, body: str) -> str:
    """A job that first appends a line to ``count_file``: its length is how often it ran."""
    return f"echo ran >> {count_file}\n{body}"


def runs_of(count_file: Path) -> int:
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


def test_start_records_the_outcome_and_a_later_call_attaches(
    server: FakeServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=counting_job(count, "echo out\necho err >&2\nexit 3\n"))

    first = server.start(spec, "run-a", token="first")
    second = server.start(spec, "run-a", token="second")

    assert runs_of(count) == 1
    assert first.first("claim").text == second.first("claim").text == "first"
    for run in (first, second):
        assert run.returncode == 3
        assert run.stdout == b"out\n"
        assert run.job_stderr == b"err\n"
        assert run.kinds[-1] == "end"
    assert first.first("end") == second.first("end")
    end = first.first("end")
    assert end.start_epoch is not None
    assert end.end_epoch is not None
    assert end.start_epoch <= end.end_epoch
    assert first.first("clock").epoch == pytest.approx(time.time(), abs=30)


def test_attach_while_running_never_starts_a_second_copy(
    server: FakeServer, tmp_path: Path
) -> None:
    count, go = tmp_path / "count", tmp_path / "go"
    body = f"echo started\nwhile [ ! -e {go} ]; do sleep 0.05; done\necho done\nexit 4\n"
    spec = SshRunSpec(script=counting_job(count, body))

    first = server.spawn(start_script(spec, "run-b", token="first"))
    assert wait_until(lambda: runs_of(count) == 1)
    second = server.spawn(start_script(spec, "run-b", token="second"))
    assert wait_until(lambda: (server.run_dir("run-b") / "started").exists())
    time.sleep(0.3)  # the second caller is attached and waiting, not starting
    go.touch()
    results = [finish(first, MARKER), finish(second, MARKER)]

    assert runs_of(count) == 1
    for result in results:
        assert result.returncode == 4
        assert result.stdout == b"started\ndone\n"
        assert result.first("claim").text == "first"
    assert results[0].first("end") == results[1].first("end")


def test_concurrent_starts_claim_the_run_once(server: FakeServer, tmp_path: Path) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=counting_job(count, "sleep 1\n"))

    callers = [server.spawn(start_script(spec, "run-c", token=f"t{index}")) for index in range(5)]
    results = [finish(caller, MARKER) for caller in callers]

    assert runs_of(count) == 1
    claims = {result.first("claim").text for result in results}
    assert len(claims) == 1
    assert claims <= {f"t{index}" for index in range(5)}
    assert all(result.returncode == 0 for result in results)


def test_offsets_skip_what_was_already_passed_on(server: FakeServer, tmp_path: Path) -> None:
    spec = SshRunSpec(command="echo one; echo two; echo e1 >&2; echo e2 >&2")
    whole = server.start(spec, "run-d")

    later = server.start(spec, "run-d", offsets=(len(b"one\n"), len(b"e1\n")))
    beyond = server.start(spec, "run-d", offsets=(10_000, 10_000))

    assert whole.stdout == b"one\ntwo\n"
    assert whole.job_stderr == b"e1\ne2\n"
    assert later.stdout == b"two\n"
    assert later.job_stderr == b"e2\n"
    assert beyond.stdout == b""
    assert beyond.job_stderr == b""
    assert beyond.first("end").exit_code == 0


def test_the_server_stops_the_job_at_its_timeout(server: FakeServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(
        script=f"echo $$ > {pid_file}\nsleep 300 &\nwait\ntouch {tmp_path}/finished\n",
        timeout_seconds=1,
        kill_grace_seconds=5,
    )

    run = server.start(spec, "run-e")

    end = run.first("end")
    assert end.timed_out
    assert end.exit_code == 128 + signal.SIGTERM
    assert end.end_epoch is not None
    assert end.start_epoch is not None
    assert 0.9 <= end.end_epoch - end.start_epoch < 5
    assert wait_until(lambda: group_members(run.first("start").pgid or 0) == [])
    assert not (tmp_path / "finished").exists()


def test_the_timeout_escalates_to_sigkill(server: FakeServer, tmp_path: Path) -> None:
    spec = SshRunSpec(
        script="trap '' TERM\nwhile :; do sleep 0.2; done\n",
        timeout_seconds=1,
        kill_grace_seconds=1,
    )

    run = server.start(spec, "run-f")

    end = run.first("end")
    assert end.timed_out
    assert end.exit_code == 128 + signal.SIGKILL
    assert wait_until(lambda: group_members(run.first("start").pgid or 0) == [])


def test_stragglers_of_a_timed_out_job_get_the_grace_then_sigkill(
    server: FakeServer, tmp_path: Path
) -> None:
    child_file = tmp_path / "child.pid"
    spec = SshRunSpec(
        script=(
            f"(trap '' TERM; while :; do sleep 0.2; done) &\necho $! > {child_file}\n"
            "exec sleep 300\n"
        ),
        timeout_seconds=1,
        kill_grace_seconds=2,
    )

    began = time.monotonic()
    run = server.start(spec, "run-s")
    took = time.monotonic() - began
    straggler = int(child_file.read_text())
    try:
        end = run.first("end")
        assert end.timed_out
        assert end.exit_code == 128 + signal.SIGTERM
        # The outcome is recorded only once the straggler that ignored SIGTERM got SIGKILL.
        assert gone(straggler)
        assert group_members(run.first("start").pgid or 0) == []
        assert took >= 2.5
    finally:
        if not gone(straggler):
            os.kill(straggler, signal.SIGKILL)


def test_the_timeout_holds_without_any_caller(server: FakeServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(
        script=f"echo $$ > {pid_file}\nsleep 300\n", timeout_seconds=2, kill_grace_seconds=1
    )
    caller = server.spawn(start_script(spec, "run-g"))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    caller.kill()
    caller.wait()
    job_pid = int(pid_file.read_text())

    assert not gone(job_pid)
    assert wait_until(lambda: gone(job_pid), 20)
    later = server.start(spec, "run-g", token="later")
    assert later.first("end").timed_out
    assert later.first("claim").text == "first"


def test_no_watchdog_sleep_is_left_after_a_normal_end(server: FakeServer, tmp_path: Path) -> None:
    limit = random.randint(100_000, 999_999)
    timed = server.start(SshRunSpec(command="echo quick", timeout_seconds=limit), "run-h")
    untimed = server.start(SshRunSpec(command="echo quick"), "run-i")

    assert timed.first("end").exit_code == 0
    assert untimed.first("end").exit_code == 0
    assert wait_until(lambda: processes_with_argv(["sleep", str(limit)]) == [], 5)
    assert processes_with_argv(["sleep", str(limit)]) == []
    assert not (server.run_dir("run-h") / "timedout").exists()


def test_the_watchdog_ends_its_sleep_even_if_a_sigterm_to_it_is_lost(tmp_path: Path) -> None:
    # A SIGTERM that reaches a just-forked child before it has reset the shell's handlers is
    # lost (busybox ash lost some when the job ended at once): the sleep ran on
    # and the watchdog waited for it, so the supervisor never wrote the exit record. Here every
    # sleep ignores SIGTERM, as one that lost it would. Under dash only: busybox ash runs its
    # own sleep applet whatever PATH says.
    server = FakeServer(tmp_path, shell="sh")
    limit = random.randint(100_000, 999_999)
    deaf = tmp_path / "deaf"
    deaf.mkdir()
    real_sleep = shutil.which("sleep", path=server.environment()["PATH"])
    (deaf / "sleep").write_text(f"#!/bin/sh\ntrap '' TERM\nexec {real_sleep} \"$@\"\n")
    (deaf / "sleep").chmod(0o755)
    supervise = tmp_path / "supervise"
    spec = SshRunSpec(command="sleep 0.3", timeout_seconds=limit)
    supervise.write_text(build_supervisor_script(spec))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "job").write_text("sleep 0.3\n")
    try:
        server.run(f"PATH={deaf}:$PATH; export PATH; /bin/sh {supervise} {run_dir}", MARKER, 20)
        assert (run_dir / "exit").read_text().split()[:2] == ["0", "0"]
    finally:
        left = processes_with_argv([str(real_sleep), str(limit)])
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == []


def test_a_killed_supervisor_is_reported_lost_and_never_restarted(
    server: FakeServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=counting_job(count, "sleep 300\n"), kill_grace_seconds=1)
    caller = server.spawn(start_script(spec, "run-j"))
    run_dir = server.run_dir("run-j")
    assert wait_until(lambda: (run_dir / "started").exists())
    supervisor_pid = int((run_dir / "supervisor").read_text().split()[0])
    pgid_text, _, watchdog_text = (run_dir / "started").read_text().split()
    pgid, watchdog_pid = int(pgid_text), int(watchdog_text)
    try:
        os.kill(supervisor_pid, signal.SIGKILL)
        lost = finish(caller, MARKER)
        again = server.start(spec, "run-j", token="again")
        # The orphaned job is stopped (its outcome can never be recorded), and its watchdog
        # ends with it.
        assert wait_until(lambda: group_members(pgid) == [])
        assert wait_until(lambda: gone(watchdog_pid))
    finally:
        kill_group(pgid)

    assert lost.kinds[-1] == "lost"
    assert "supervisor" in lost.first("lost").text
    assert again.kinds[-1] == "lost"
    assert again.first("lost") == lost.first("lost")
    assert runs_of(count) == 1
    assert not (run_dir / "exit").exists()


def test_a_claim_whose_claimer_died_is_lost_and_never_started(
    server: FakeServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=counting_job(count, "true\n"))
    run_dir = server.run_dir("run-k")
    run_dir.mkdir(parents=True)
    # The claim of a call that died before it could start the supervisor.
    (run_dir / "claim").write_text(f"{2**22 + 12345} gone-token 1700000000\n")

    first = server.start(spec, "run-k", token="late")
    second = server.start(spec, "run-k", token="later")

    assert first.kinds[-1] == "lost"
    assert "never started" in first.first("lost").text
    assert second.first("lost") == first.first("lost")
    assert runs_of(count) == 0


def test_stop_ends_a_running_job_and_every_caller_sees_it(
    server: FakeServer, tmp_path: Path
) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(script=f"echo $$ > {pid_file}\nsleep 300\n", kill_grace_seconds=5)
    caller = server.spawn(start_script(spec, "run-l"))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")

    stopped = server.stop("run-l", grace=5)
    attached = finish(caller, MARKER)

    end = stopped.first("end")
    assert end.exit_code == 128 + signal.SIGTERM
    assert not end.timed_out
    assert attached.first("end") == end
    assert gone(int(pid_file.read_text()))


def test_stop_escalates_to_sigkill_after_its_grace(server: FakeServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(script=f"trap '' TERM\necho $$ > {pid_file}\nwhile :; do sleep 0.2; done\n")
    caller = server.spawn(start_script(spec, "run-m"))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")

    stopped = server.stop("run-m", grace=1)
    finish(caller, MARKER)

    assert stopped.first("end").exit_code == 128 + signal.SIGKILL
    assert gone(int(pid_file.read_text()))


def test_stopping_an_unknown_run_means_it_never_starts(server: FakeServer, tmp_path: Path) -> None:
    count = tmp_path / "count"
    spec = SshRunSpec(script=counting_job(count, "true\n"))

    stopped = server.stop("run-n")
    later = server.start(spec, "run-n")
    stopped_again = server.stop("run-n")

    assert stopped.kinds[-1] == "none"
    assert later.first("end").exit_code is None
    assert stopped_again.first("end").exit_code is None
    assert runs_of(count) == 0


def test_a_stop_that_does_not_wait_returns_at_once(server: FakeServer, tmp_path: Path) -> None:
    pid_file = tmp_path / "job.pid"
    spec = SshRunSpec(script=f"echo $$ > {pid_file}\nsleep 300\n")
    caller = server.spawn(start_script(spec, "run-o"))
    assert wait_until(lambda: pid_file.exists() and pid_file.read_text().strip() != "")

    request = server.stop("run-o", grace=2, wait=False)
    attached = finish(caller, MARKER)

    assert request.returncode == 0
    assert "end" not in request.kinds
    assert attached.first("end").exit_code == 128 + signal.SIGTERM


def _finished_run(runs_dir: Path, name: str, *, end_age_days: float, record: str) -> Path:
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    ended = int(time.time() - end_age_days * 86400)
    if record == "exit":
        (run_dir / "exit").write_text(f"0 0 {ended - 5}.25 {ended}.5 0m0s 0m0s 0m0s 0m0s\n")
    elif record == "lost":
        (run_dir / "lost").write_text(f"{ended}.5 the server restarted\n")
    (run_dir / "stdout").write_text("old output\n")
    return run_dir


def test_later_starts_prune_runs_finished_more_than_seven_days_ago(server: FakeServer) -> None:
    runs_dir = server.home / ".carbonaware" / "runs"
    old_exit = _finished_run(runs_dir, "old-exit", end_age_days=8, record="exit")
    old_lost = _finished_run(runs_dir, "old-lost", end_age_days=8, record="lost")
    recent = _finished_run(runs_dir, "recent", end_age_days=6.9, record="exit")
    running = _finished_run(runs_dir, "still-running", end_age_days=30, record="")
    (runs_dir / "strange").mkdir()
    (runs_dir / "strange" / "exit").write_text("garbage\n")

    attach_only = server.start(SshRunSpec(command="true"), "recent")
    assert attach_only.first("end").exit_code == 0
    assert old_exit.exists()  # attaching to an existing run prunes nothing
    server.start(SshRunSpec(command="true"), "new-run")

    assert PRUNE_AFTER_SECONDS == 7 * 86400
    assert not old_exit.exists()
    assert not old_lost.exists()
    assert recent.exists()
    assert running.exists()
    assert (runs_dir / "strange").exists()
    assert (runs_dir / "new-run" / "exit").exists()


def test_the_run_directory_is_private(server: FakeServer) -> None:
    server.start(SshRunSpec(command="echo secret"), "run-p")

    run_dir = server.run_dir("run-p")
    assert run_dir.stat().st_mode & 0o077 == 0
    assert (run_dir / "stdout").stat().st_mode & 0o077 == 0
    assert (run_dir.parent).stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("run_id", ["", "a/b", "..", "a b", "$(reboot)", "x" * 65, "a_b", "é"])
def test_scripts_refuse_run_ids_unsafe_in_a_path(run_id: str) -> None:
    spec = SshRunSpec(command="true")

    with pytest.raises(SpecError):
        build_run_script(spec, run_id=run_id, marker=MARKER, token="t")
    with pytest.raises(SpecError):
        build_stop_script(run_id=run_id, marker=MARKER, grace_seconds=1)


def test_no_user_text_reaches_the_shell_unquoted(server: FakeServer, tmp_path: Path) -> None:
    marker_file = tmp_path / "injected"
    spec = SshRunSpec(
        script=f"echo 'CARBONAWARE_EOF_x'\necho done\n# $(touch {marker_file})\n",
        env=(("A", f"$(touch {marker_file})'\"`touch {marker_file}`"),),
        working_dir=str(tmp_path),
    )

    run = server.start(spec, "run-q")

    assert run.stdout == b"CARBONAWARE_EOF_x\ndone\n"
    assert not marker_file.exists()


def test_a_256_kib_script_with_large_env_values_runs_byte_for_byte(server: FakeServer) -> None:
    filler = "".join(f"# line {index} with quotes ' \" ` $ \\\n" for index in range(6000))
    script = "#!/bin/sh\n" + filler + 'printf "%s %s\\n" "${#BIG}" "${#OTHER}"\n'
    script += "#" * (256 * 1024 - len(script.encode()) - 1) + "\n"
    assert len(script.encode()) == 256 * 1024
    env = (("BIG", "b" * (128 * 1024 - 10)), ("OTHER", "o" * 32 * 1024))

    run = server.start(SshRunSpec(script=script, env=env), "run-big")

    assert run.first("end").exit_code == 0
    assert run.stdout == f"{128 * 1024 - 10} {32 * 1024}\n".encode()
    assert (server.run_dir("run-big") / "job").read_bytes() == script.encode()


def test_a_home_without_room_for_the_run_is_an_error_and_runs_nothing(
    server: FakeServer, tmp_path: Path
) -> None:
    count = tmp_path / "count"
    # A file where the runs directory should go: nothing can be created under it.
    (server.home / ".carbonaware").write_text("not a directory\n")

    run = server.start(SshRunSpec(script=counting_job(count, "true\n")), "run-err")

    assert run.returncode == 125
    assert run.kinds[-1] == "error"
    assert "cannot create the run directory" in run.first("error").text
    assert runs_of(count) == 0
