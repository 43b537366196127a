"""Option handling of `carbonaware runner ssh` before anything connects."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from carbonaware.errors import RunLostError
from carbonaware.runners import sshcommand
from carbonaware.runners.sshcommand import (
    EXIT_CODES,
    EXIT_DETACHED,
    EXIT_NO_INPUT,
    EXIT_RUN_LOST,
    EXIT_RUNNER_ERROR,
    EXIT_TIMED_OUT,
    EXIT_USAGE,
    SshRunnerOptions,
    build_specs,
    exit_code_for,
    run_ssh_runner_command,
)
from carbonaware.runners.sshspec import HostKeyPolicy
from carbonaware.runners.summary import RunSummary, parse_failure


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "id"
    path.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZQ==\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    return path


def options(default_key_file: Path, **overrides: object) -> SshRunnerOptions:
    values: dict[str, object] = {
        "host": "server.example",
        "user": "batch",
        "key_file": default_key_file,
        "command": "echo hi",
    }
    values.update(overrides)
    return SshRunnerOptions(**values)  # type: ignore[arg-type]


def test_env_from_json_and_flags_is_merged_in_order(key_file: Path) -> None:
    target, run = build_specs(
        options(
            key_file,
            env_json=json.dumps([{"name": "A", "value": "1"}]),
            env=("B=two=2", "C="),
            timeout_seconds=0,
            host_key_policy="AcceptAny",
        )
    )

    assert run.env == (("A", "1"), ("B", "two=2"), ("C", ""))
    assert run.timeout_seconds is None
    assert target.host_key_policy is HostKeyPolicy.ACCEPT_ANY
    assert target.private_key == key_file.read_bytes()


def test_files_are_read(key_file: Path, tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("h ssh-ed25519 AAAA\n")
    (tmp_path / "job.sh").write_text("echo from file\n")

    target, run = build_specs(
        options(
            key_file,
            command=None,
            script_file=tmp_path / "job.sh",
            known_hosts_file=tmp_path / "known_hosts",
        )
    )

    assert target.known_hosts == "h ssh-ed25519 AAAA\n"
    assert run.script == "echo from file\n"


@pytest.mark.parametrize(
    ("overrides", "exit_code"),
    [
        ({"command": None}, EXIT_USAGE),
        ({"script": "echo also"}, EXIT_USAGE),
        ({"env": ("NOEQUALS",)}, EXIT_USAGE),
        ({"env": ("1BAD=x",)}, EXIT_USAGE),
        ({"env_json": "{not json"}, EXIT_USAGE),
        ({"env_json": '"a string"'}, EXIT_USAGE),
        ({"host_key_policy": "Sometimes"}, EXIT_USAGE),
        ({"port": 0}, EXIT_USAGE),
        ({"known_hosts": "x", "known_hosts_file": Path("/x")}, EXIT_USAGE),
        ({"known_hosts_file": Path("/nonexistent/known_hosts")}, EXIT_NO_INPUT),
        ({"key_file": Path("/nonexistent/id")}, EXIT_NO_INPUT),
        ({"run_id": "a/b"}, EXIT_USAGE),
        ({"run_id": "x" * 65}, EXIT_USAGE),
        ({"reattach_seconds": -1.0}, EXIT_USAGE),
    ],
)
def test_bad_options_exit_with_a_usage_code_and_a_failure_record(
    key_file: Path, tmp_path: Path, overrides: dict[str, object], exit_code: int
) -> None:
    termination_log = tmp_path / "termination-log"

    code = run_ssh_runner_command(options(key_file, termination_log=termination_log, **overrides))

    assert code == exit_code
    failure = parse_failure(termination_log.read_text())
    assert failure.reason == "InvalidSpec"
    assert failure.message


def _summary(exit_code: int | None, timed_out: bool) -> RunSummary:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    return RunSummary(exit_code, timed_out, 1.0, 1.0, 2, 0.5, 1, 1, 2, 2, moment, moment)


def test_exit_code_mapping() -> None:
    assert exit_code_for(_summary(0, False)) == 0
    assert exit_code_for(_summary(3, False)) == 3
    assert exit_code_for(_summary(143, True)) == EXIT_TIMED_OUT
    assert exit_code_for(_summary(None, False)) == EXIT_RUNNER_ERROR


def test_run_id_and_reattach_window_reach_the_run_spec(key_file: Path) -> None:
    _, named = build_specs(options(key_file, run_id="job-uid-1", reattach_seconds=30.0))
    _, unnamed = build_specs(options(key_file, run_id=""))

    assert named.run_id == "job-uid-1"
    assert named.reattach_seconds == 30.0
    assert unnamed.run_id is None


@pytest.mark.parametrize(
    ("overrides", "environ"),
    [
        (
            {"script": "whole"},
            {"CARBONAWARE_SSH_SCRIPT_CHUNKS": "1", "CARBONAWARE_SSH_SCRIPT_0": "x"},
        ),
        (
            {"command": None},
            {"CARBONAWARE_SSH_SCRIPT_CHUNKS": "2", "CARBONAWARE_SSH_SCRIPT_0": "x"},
        ),
        ({"env_json": "[]"}, {"CARBONAWARE_SSH_ENV_CHUNKS": "1", "CARBONAWARE_SSH_ENV_0": "[]"}),
    ],
)
def test_chunked_texts_that_conflict_or_are_incomplete_are_invalid(
    key_file: Path, tmp_path: Path, overrides: dict[str, object], environ: dict[str, str]
) -> None:
    termination_log = tmp_path / "termination-log"

    code = run_ssh_runner_command(
        options(key_file, termination_log=termination_log, **overrides), environ=environ
    )

    assert code == EXIT_USAGE
    assert parse_failure(termination_log.read_text()).reason == "InvalidSpec"


def test_a_lost_run_has_its_own_exit_code_and_reason(
    key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []

    async def lost(target: object, run: object, **_: object) -> RunSummary:
        seen.append(getattr(run, "run_id", None))
        raise RunLostError("run x was lost on the server: the server restarted")

    monkeypatch.setattr(sshcommand, "run_ssh_job", lost)
    termination_log = tmp_path / "termination-log"

    code = run_ssh_runner_command(options(key_file, termination_log=termination_log))

    assert code == EXIT_RUN_LOST == 71
    assert EXIT_CODES[EXIT_RUN_LOST] == "RunLost"
    failure = parse_failure(termination_log.read_text())
    assert failure.reason == "RunLost"
    assert "server restarted" in failure.message
    # Without --run-id the runner still names its run (and logs the id), so it can be attached.
    assert seen[0] is not None
    assert len(seen[0]) == 32


@pytest.mark.parametrize(
    ("detach", "exit_code", "reason"),
    [(True, EXIT_DETACHED, "Detached"), (False, 128 + signal.SIGTERM, "RunnerError")],
)
def test_sigterm_detaches_from_the_run_or_stops_it(
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    detach: bool,
    exit_code: int,
    reason: str,
) -> None:
    """A runner pod that is deleted gets SIGTERM: with --detach-on-signal the run is left
    going on the server (the run call is told not to stop it), otherwise it is stopped."""
    told: list[bool] = []

    async def signalled(target: object, run: object, *, stop_on_cancel: bool) -> RunSummary:
        told.append(stop_on_cancel)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(30)
        raise AssertionError("SIGTERM did not stop the runner")

    monkeypatch.setattr(sshcommand, "run_ssh_job", signalled)
    termination_log = tmp_path / "termination-log"

    code = run_ssh_runner_command(
        options(key_file, termination_log=termination_log, detach_on_signal=detach)
    )

    assert code == exit_code
    assert told == [not detach]
    failure = parse_failure(termination_log.read_text())
    assert failure.reason == reason
    assert ("goes on on the server" in failure.message) is detach
    assert EXIT_CODES[EXIT_DETACHED] == "Detached"
