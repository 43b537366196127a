#!/usr/bin/env python3
"""A real OpenSSH server on loopback: the "company server" of the demo and the SSH tests.

Debian's ``openssh-server`` is installed with apt-get when ``/usr/sbin/sshd`` is missing
(as root). :func:`start_sshd` runs ``sshd -D -e`` on ``127.0.0.1`` and a free port with its
own host key, ``sshd_config``, authorized_keys and a fresh client key pair, all in one
directory. It logs in as the user running it (root is allowed with
``PermitRootLogin prohibit-password``). The server keeps running in its own session until
:func:`stop_sshd` stops it by PID, so a script may start it and exit (the demo does).

Python::

    server = start_sshd(Path("/tmp/sshd"))
    server.known_hosts          # "[127.0.0.1]:PORT ssh-ed25519 AAAA...\\n"
    server.client_private_key   # OpenSSH text, for a Secret
    stop_sshd(server)

Standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The sibling scripts in hack/ are modules too, whether this file runs as a script or is
# imported by path from the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian
from testbed.process import free_ports

SSHD_PATH = Path("/usr/sbin/sshd")
SSH_KEYGEN_PATH = "ssh-keygen"
# sshd's privilege-separation directory; missing on machines where the service never ran.
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")
_START_TIMEOUT_SECONDS = 20.0
_STOP_GRACE_SECONDS = 10.0


class SshdError(RuntimeError):
    """sshd could not be installed, started or stopped."""


class InstallNeedsRootError(SshdError):
    """openssh-server is missing and only root can install it."""


@dataclass
class SshdServer:
    """Connection details of a running sshd. Keys are OpenSSH text."""

    host: str
    port: int
    user: str
    client_private_key: str = field(repr=False)
    client_public_key: str
    host_public_key: str
    known_hosts: str
    directory: Path
    pid: int
    log_path: Path
    # The process's start time in clock ticks since boot: tells our sshd from a later
    # process that got the same PID.
    start_ticks: int = 0

    @property
    def client_key_path(self) -> Path:
        return self.directory / "client_key"

    @property
    def home(self) -> Path:
        """HOME of this server's sessions: the runs it holds are in ``.carbonaware/runs``."""
        return self.directory / "home"

    @property
    def tmp(self) -> Path:
        """TMPDIR of this server's sessions."""
        return self.directory / "tmp"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        ticks = process_start_ticks(self.pid)
        return ticks is not None and (not self.start_ticks or ticks == self.start_ticks)

    def to_json(self) -> dict[str, Any]:
        """Everything but the private key (it stays in ``client_key_path``)."""
        data = dataclasses.asdict(self)
        data.pop("client_private_key")
        data["directory"] = str(self.directory)
        data["log_path"] = str(self.log_path)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SshdServer:
        directory = Path(data["directory"])
        key_path = directory / "client_key"
        return cls(
            **{
                **data,
                "directory": directory,
                "log_path": Path(data["log_path"]),
                "client_private_key": key_path.read_text() if key_path.exists() else "",
            }
        )


def process_start_ticks(pid: int) -> int | None:
    """Start time of a live process (clock ticks since boot); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def ensure_openssh_server() -> None:
    """Install ``openssh-server`` (and ``openssh-client`` for ssh-keygen) if missing."""
    try:
        debian.ensure(str(SSHD_PATH), SSH_KEYGEN_PATH)
    except debian.NeedsRootError as exc:
        raise InstallNeedsRootError(str(exc)) from exc
    except debian.InstallError as exc:
        raise SshdError(str(exc)) from exc


def _free_port(host: str = "127.0.0.1") -> int:
    if host == "127.0.0.1":  # outside the ephemeral range, as the plane's ports
        return free_ports(1)[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def generate_key_pair(directory: Path, name: str) -> tuple[str, str]:
    """A new unencrypted ed25519 key pair made by ssh-keygen: (private, public) text."""
    path = directory / name
    for stale in (path, path.with_suffix(".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN_PATH, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.read_text(), path.with_suffix(".pub").read_text()


def known_hosts_line(host: str, port: int, public_key: str) -> str:
    """``[host]:port alg base64`` as ssh-keyscan would print it."""
    algorithm, blob = public_key.split()[:2]
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {algorithm} {blob}\n"


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log_path: Path, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SshdError(f"sshd exited with {process.returncode}:\n{log_path.read_text()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.settimeout(0.5)
            try:
                client.connect((host, port))
                banner = client.recv(64)
            except OSError:
                banner = b""
            if banner.startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise SshdError(f"sshd did not accept connections on port {port}:\n{log_path.read_text()}")


def _config_text(
    port: int, directory: Path, authorized_keys: Path, user: str, host: str = "127.0.0.1"
) -> str:
    return "\n".join(
        [
            f"Port {port}",
            f"ListenAddress {host}",
            f"HostKey {directory / 'ssh_host_ed25519_key'}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # Temporary directories may be group-writable.
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "PermitUserEnvironment no",
            # Each server keeps its sessions' files (the runs, temporary directories) to itself,
            # so servers started side by side for the same user never see each other's runs.
            f"SetEnv HOME={directory / 'home'} TMPDIR={directory / 'tmp'}",
            "UseDNS no",
            "PrintMotd no",
            "MaxSessions 32",
            "MaxStartups 64",
            "LogLevel VERBOSE",
            "",
        ]
    )


def start_sshd(directory: Path, host: str = "127.0.0.1") -> SshdServer:
    """Start an sshd whose files all live in ``directory``; it outlives the caller.

    It listens on ``host``: loopback by default, or e.g. the host address that pods on a
    real worker node reach this machine at.
    """
    ensure_openssh_server()
    directory.mkdir(parents=True, exist_ok=True)
    for session_dir in ("home", "tmp"):
        (directory / session_dir).mkdir(mode=0o700, exist_ok=True)
    try:
        PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
    except PermissionError as exc:
        raise SshdError(
            f"sshd needs {PRIVILEGE_SEPARATION_DIR}; create it as root "
            f"(sudo mkdir -m 755 {PRIVILEGE_SEPARATION_DIR})"
        ) from exc
    _, host_public = generate_key_pair(directory, "ssh_host_ed25519_key")
    client_private, client_public = generate_key_pair(directory, "client_key")
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(client_public)
    authorized_keys.chmod(0o600)
    user = getpass.getuser()
    config_path = directory / "sshd_config"
    log_path = directory / "sshd.log"
    last_error: SshdError | None = None
    for _attempt in range(3):
        # Another process may take the free port before sshd binds it: then try another.
        port = _free_port(host)
        config_path.write_text(_config_text(port, directory, authorized_keys, user, host))
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(SSHD_PATH), "-D", "-e", "-f", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            _wait_for_port(port, process, log_path, host)
        except SshdError as exc:
            last_error = exc
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            continue
        return SshdServer(
            host=host,
            port=port,
            user=user,
            client_private_key=client_private,
            client_public_key=client_public,
            host_public_key=host_public,
            known_hosts=known_hosts_line(host, port, host_public),
            directory=directory,
            pid=process.pid,
            log_path=log_path,
            start_ticks=process_start_ticks(process.pid) or 0,
        )
    raise SshdError(f"sshd could not be started: {last_error}")


def _reaped_or_gone(server: SshdServer) -> bool:
    """True once the process has exited (reaping it when it is our child)."""
    try:
        finished, _ = os.waitpid(server.pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (started by an earlier process): its parent, init, reaps it.
        return not server.alive()
    return bool(finished)


def stop_sshd(server: SshdServer) -> None:
    """Stop the server by its PID (SIGTERM, then SIGKILL) and wait until it is gone.

    Works from any process, not only the one that started it; a PID now used by another
    process (``start_ticks`` differs) is left alone.
    """
    if not server.alive():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(server.pid, os.WNOHANG)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while time.monotonic() < deadline:
        if _reaped_or_gone(server):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(server.pid, 0)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    while server.alive():
        if time.monotonic() >= deadline:
            raise SshdError(f"sshd (pid {server.pid}) did not exit after SIGKILL")
        time.sleep(0.05)


@contextlib.contextmanager
def running_sshd(host: str = "127.0.0.1") -> Iterator[SshdServer]:
    """A started server in a fresh temporary directory, stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="carbonaware-sshd-"))
    server = start_sshd(directory, host)
    try:
        yield server
    finally:
        stop_sshd(server)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    """``python hack/sshd.py DIR``: start a server in DIR and print its details as JSON."""
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: sshd.py DIRECTORY", file=sys.stderr)
        return 2
    server = start_sshd(Path(sys.argv[1]).resolve())
    print(json.dumps(server.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
