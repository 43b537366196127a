"""Child processes of the plane: launch bookkeeping, liveness by start time, memory, logs."""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def process_start_ticks(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_ERROR_LINE = re.compile(r'^[EF]\d{4} |[Ee]rror:|"level":"ERROR"|^unknown flag|panic:')


def log_excerpt(path: Path, errors: int = 8, tail: int = 12) -> str:
    """The error lines and the last lines of a component's latest run, for messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    latest = text.rsplit("\n==== ", 1)[-1].splitlines()[1:]
    error_lines = [line for line in latest if _ERROR_LINE.search(line)][-errors:]
    last_lines = [line for line in latest[-tail:] if line not in error_lines]
    parts = []
    if error_lines:
        parts += ["errors:", *error_lines]
    parts += ["last lines:", *last_lines]
    return "\n".join(line[:400] for line in parts)


@dataclasses.dataclass
class Component:
    """One child process of the plane, recognised again by its PID and start time."""

    name: str
    argv: list[str]
    log: Path
    pid: int = 0
    start_ticks: int = 0
    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.pid == 0:
            return False
        if self.process is not None and self.process.poll() is not None:
            return False
        return process_start_ticks(self.pid) == self.start_ticks

    def exit_description(self) -> str:
        if self.process is not None and self.process.returncode is not None:
            return f"exited with code {self.process.returncode}"
        return "is no longer running"


def exited(component: Component) -> bool | None:
    return True if not component.alive() else None
