"""Child processes of the plane: launch bookkeeping, liveness by start time, memory, logs."""

from __future__ import annotations

import dataclasses
import random
import re
import socket
import subprocess
from pathlib import Path

# Listening ports are taken from below the kernel's ephemeral range (and below Kubernetes'
# NodePort range, 30000-32767): a port found free there stays free until its server binds it,
# since outgoing connections never take it as their local port. A port from bind(0) is an
# ephemeral one, which any connection of a parallel test may take in between (etcd then failed
# to start with "address already in use").
LISTEN_PORTS_LOW = 10000
LISTEN_PORTS_HIGH = 30000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _listen_range() -> range:
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return range(LISTEN_PORTS_LOW, min(LISTEN_PORTS_HIGH, ephemeral_low))


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports outside the ephemeral range, chosen at random (each held
    open until all are found, so they differ)."""
    candidates = _listen_range()
    chooser = random.SystemRandom()
    sockets: list[socket.socket] = []
    tries = 0
    try:
        while len(sockets) < count:
            tries += 1
            if tries > 200 * count:
                raise OSError(f"no {count} free loopback ports in {candidates}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", chooser.choice(candidates)))
            except OSError:
                sock.close()
                continue
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
