"""Run the SSH runner's scripts under a local shell exactly as sshd would: the bootstrap under
``/bin/sh -c`` with the script on stdin, in an account whose HOME and TMPDIR are test folders.

``shell="busybox"`` runs everything under busybox instead (``/bin/sh`` bind-mounted to busybox
in a private mount namespace, and busybox's applets first in PATH), so the scripts are checked
against busybox ash and tools as well as dash and GNU coreutils.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from carbonaware.runners.sshlease import build_run_script, build_stop_script
from carbonaware.runners.sshscript import BOOTSTRAP_COMMAND, ControlLine, split_control_line
from carbonaware.runners.sshspec import SshRunSpec

BUSYBOX = shutil.which("busybox")
_APPLETS = ["sh", "setsid", "mkdir", "mv", "kill", "date", "tail", "head", "wc", "cat", "sleep"]
_APPLETS += ["tr", "env", "rm", "chmod", "mktemp", "touch"]
_BUSYBOX_WRAPPER = 'mount --bind "$0" /bin/sh && exec "$@"'


@cache
def busybox_usable() -> bool:
    """busybox is installed and this user may bind-mount it in a private mount namespace."""
    if BUSYBOX is None or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "/bin/sh", "-c", _BUSYBOX_WRAPPER, BUSYBOX, "/bin/sh", "-c", "true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


@dataclass
class ScriptRun:
    """What one run script printed: exit status, stdout, the job's stderr and control lines."""

    returncode: int
    stdout: bytes
    job_stderr: bytes
    controls: list[ControlLine] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [control.kind for control in self.controls if control.kind != "alive"]

    def first(self, kind: str) -> ControlLine:
        matches = [control for control in self.controls if control.kind == kind]
        assert matches, f"no {kind} control line in {self.kinds}"
        return matches[0]


def parse_output(returncode: int, stdout: bytes, stderr: bytes, marker: str) -> ScriptRun:
    run = ScriptRun(returncode=returncode, stdout=stdout, job_stderr=b"")
    for line in stderr.splitlines(keepends=True):
        output, control = split_control_line(line, marker)
        run.job_stderr += output
        if control is not None:
            run.controls.append(control)
    return run


class FakeServer:
    """An account on "the server": HOME and TMPDIR in ``root``, scripts run by ``shell``."""

    def __init__(self, root: Path, shell: str = "sh") -> None:
        self.home = root / "home"
        self.scratch = root / "scratch"
        self.home.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.shell = shell
        self._path = os.environ.get("PATH", "/usr/bin:/bin")
        if shell == "busybox":
            if not busybox_usable():
                pytest.skip("busybox, or a mount namespace to put it on /bin/sh, is missing")
            applets = root / "busybox-bin"
            applets.mkdir(exist_ok=True)
            for applet in _APPLETS:
                link = applets / applet
                if not link.exists():
                    link.symlink_to(str(BUSYBOX))
            self._path = f"{applets}:{self._path}"

    def argv(self, command_line: str = BOOTSTRAP_COMMAND) -> list[str]:
        """How sshd would run ``command_line`` (the exec request) for this account."""
        command = ["/bin/sh", "-c", command_line]
        if self.shell == "busybox":
            assert BUSYBOX is not None
            return ["unshare", "-m", "/bin/sh", "-c", _BUSYBOX_WRAPPER, BUSYBOX, *command]
        return command

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.home),
            "TMPDIR": str(self.scratch),
            "PATH": self._path,
        }

    def run_dir(self, run_id: str) -> Path:
        return self.home / ".carbonaware" / "runs" / run_id

    def run(self, script: str, marker: str, timeout: float = 60) -> ScriptRun:
        result = subprocess.run(
            self.argv(),
            input=script.encode(),
            capture_output=True,
            env=self.environment(),
            timeout=timeout,
            check=False,
        )
        return parse_output(result.returncode, result.stdout, result.stderr, marker)

    def spawn(self, script: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            self.argv(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environment(),
        )
        assert process.stdin is not None
        process.stdin.write(script.encode())
        process.stdin.close()
        process.stdin = None  # communicate() later only reads
        return process

    def start(
        self,
        spec: SshRunSpec,
        run_id: str,
        token: str = "first",
        offsets: tuple[int, int] = (0, 0),
        marker: str = "__marker_for_tests__",
    ) -> ScriptRun:
        return self.run(start_script(spec, run_id, token, offsets, marker), marker)

    def stop(self, run_id: str, grace: float = 1.0, wait: bool = True) -> ScriptRun:
        marker = "__stop_marker_for_tests__"
        script = build_stop_script(run_id=run_id, marker=marker, grace_seconds=grace, wait=wait)
        return self.run(script, marker)


def start_script(
    spec: SshRunSpec,
    run_id: str,
    token: str = "first",
    offsets: tuple[int, int] = (0, 0),
    marker: str = "__marker_for_tests__",
) -> str:
    return build_run_script(
        spec,
        run_id=run_id,
        marker=marker,
        token=token,
        stdout_offset=offsets[0],
        stderr_offset=offsets[1],
        poll_seconds=0.2,
    )


def finish(process: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> ScriptRun:
    stdout, stderr = process.communicate(timeout=timeout)
    return parse_output(process.returncode, stdout, stderr, marker)


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts as gone)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] in {"Z", "X"}


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] not in {"Z", "X"} and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def processes_with_argv(argv: list[str]) -> list[int]:
    wanted = ("\0".join(argv) + "\0").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "cmdline").read_bytes() == wanted and not gone(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_group(pgid: int | None) -> None:
    if pgid is not None and pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
