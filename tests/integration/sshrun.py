"""What the SSH runner tests share: output capture, the target for a test server, the
runner command's arguments, waits, a run's directory on the server, the processes of a run's
process group, key fixtures, and the check that every run cleans up its temporary directory."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from carbonaware.runners.ssh import (
    SshRunSpec,
    SshTargetSpec,
    run_ssh_job,
)

from .sshd import SshdServer, generate_key_pair

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


def key_fragments(private_key: str) -> list[str]:
    """The base64 body lines of the key: any of them in output would be a leak."""
    return [line for line in private_key.splitlines() if line and "PRIVATE KEY" not in line]


@pytest.fixture(autouse=True)
def no_leftover_temp_dirs(sshd_server: SshdServer) -> Iterator[None]:
    """Every run removes the private temporary directory it made on the server (its
    sessions' TMPDIR; the runs stay in the server's own HOME, removed with the server)."""
    before = set(sshd_server.tmp.glob("carbonaware.*"))
    yield
    assert wait_until(lambda: set(sshd_server.tmp.glob("carbonaware.*")) <= before, 10)


@pytest.fixture
def other_key_pair(tmp_path: Path) -> tuple[str, str]:
    """A key pair the test server does not know."""
    return generate_key_pair(tmp_path, "other_key")


@pytest.fixture
def key_file(sshd_server: SshdServer, tmp_path: Path) -> Path:
    """The test server's client key in a file, as a runner pod mounts it."""
    path = tmp_path / "id"
    path.write_text(sshd_server.client_private_key)
    path.chmod(0o400)
    return path


def run_dir_of(server: SshdServer, run_id: str) -> Path:
    """Where the server keeps run ``run_id``'s files (``started``, ``exit``, ...)."""
    return server.home / ".carbonaware" / "runs" / run_id


def group_processes(pgid: int) -> list[tuple[int, str]]:
    """The live processes of process group ``pgid``: (pid, state letter) from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
            found.append((int(entry.name), fields[0]))
    return found


def runner_command(
    server: SshdServer, key_file: Path, termination_log: Path, *args: str
) -> list[str]:
    """``carbonaware runner ssh`` against the test server, as a runner pod runs it."""
    return [
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
    ]
