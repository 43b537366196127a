"""The runner command (``carbonaware runner ssh``, what a runner pod runs) against a real
OpenSSH server: streamed output, exit codes, the termination log."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from carbonaware.runners.summary import parse_failure, parse_summary

from .operatorproc import free_port
from .sshd import (
    SshdServer,
    known_hosts_line,
    sshd_server,
)
from .sshrun import (
    key_file,
    key_fragments,
    no_leftover_temp_dirs,
    other_key_pair,
    runner_command,
)

__all__ = ["key_file", "no_leftover_temp_dirs", "other_key_pair", "sshd_server"]

pytestmark = pytest.mark.integration


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
        runner_command(server, key_file, termination_log, *args),
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
    for fragment in key_fragments(sshd_server.client_private_key):
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
    for fragment in key_fragments(sshd_server.client_private_key):
        assert fragment not in result.stdout + result.stderr + record
