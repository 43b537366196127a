"""A real OpenSSH server on loopback for integration tests.

Import the fixture into a test module of this package to use it (pytest finds fixtures by
name in the module's namespace)::

    from .sshd import SshdServer, sshd_server

    __all__ = ["sshd_server"]  # keeps linters from calling the import unused

``sshd_server`` (session scope) installs Debian's ``openssh-server`` with apt-get when
``/usr/sbin/sshd`` is missing, then starts ``sshd -D -e`` on ``127.0.0.1`` and a free port with
its own host key, ``sshd_config``, authorized_keys and a fresh client key pair, all in a
temporary directory. It logs in as the user running the tests (root is allowed with
``PermitRootLogin prohibit-password``). The server is stopped by PID at the end.

:func:`start_sshd` / :func:`stop_sshd` do the same outside pytest fixtures.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD_PATH = Path("/usr/sbin/sshd")
SSH_KEYGEN_PATH = "ssh-keygen"
_INSTALL_LOCK = Path(tempfile.gettempdir()) / "carbonaware-openssh-install.lock"
_START_TIMEOUT_SECONDS = 20.0


@dataclass
class SshdServer:
    """Connection details of a running test sshd. Keys are OpenSSH text."""

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

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def ensure_openssh_server() -> None:
    """Install ``openssh-server`` (and ``openssh-client`` for ssh-keygen) if missing."""
    if SSHD_PATH.exists() and shutil.which(SSH_KEYGEN_PATH):
        return
    if os.geteuid() != 0:
        pytest.skip("openssh-server is not installed and installing it needs root")
    with _INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if SSHD_PATH.exists() and shutil.which(SSH_KEYGEN_PATH):
            return
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"]
        first = subprocess.run(install, env=environment, capture_output=True, check=False)
        if first.returncode != 0 or not SSHD_PATH.exists():
            subprocess.run(["apt-get", "update"], env=environment, capture_output=True, check=False)
            second = subprocess.run(install, env=environment, capture_output=True, text=True)
            if second.returncode != 0 or not SSHD_PATH.exists():
                raise RuntimeError(f"apt-get install openssh-server failed:\n{second.stderr}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def generate_key_pair(directory: Path, name: str) -> tuple[str, str]:
    """A new unencrypted ed25519 key pair made by ssh-keygen: (private, public) text."""
    path = directory / name
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


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log_path.read_text()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.settimeout(0.5)
            try:
                client.connect(("127.0.0.1", port))
                banner = client.recv(64)
            except OSError:
                banner = b""
            if banner.startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on port {port}:\n{log_path.read_text()}")


def start_sshd(directory: Path) -> SshdServer:
    """Start a loopback sshd whose files all live in ``directory``."""
    ensure_openssh_server()
    directory.mkdir(parents=True, exist_ok=True)
    # sshd's privilege-separation directory; missing on machines where the service never ran.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    _, host_public = generate_key_pair(directory, "ssh_host_ed25519_key")
    client_private, client_public = generate_key_pair(directory, "client_key")
    authorized_keys = directory / "authorized_keys"
    authorized_keys.write_text(client_public)
    authorized_keys.chmod(0o600)
    user = getpass.getuser()
    last_error: Exception | None = None
    for _attempt in range(3):
        port = _free_port()
        config_path = directory / "sshd_config"
        pid_path = directory / "sshd.pid"
        config_path.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {directory / 'ssh_host_ed25519_key'}",
                    f"PidFile {pid_path}",
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
                    "UseDNS no",
                    "PrintMotd no",
                    "MaxSessions 32",
                    "MaxStartups 64",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        log_path = directory / "sshd.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(SSHD_PATH), "-D", "-e", "-f", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            _wait_for_port(port, process, log_path)
        except RuntimeError as exc:
            last_error = exc
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            continue
        return SshdServer(
            host="127.0.0.1",
            port=port,
            user=user,
            client_private_key=client_private,
            client_public_key=client_public,
            host_public_key=host_public,
            known_hosts=known_hosts_line("127.0.0.1", port, host_public),
            directory=directory,
            pid=process.pid,
            log_path=log_path,
        )
    raise RuntimeError(f"sshd could not be started: {last_error}")


def stop_sshd(server: SshdServer) -> None:
    """Stop the server by its PID (SIGTERM, then SIGKILL) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(server.pid, os.WNOHANG)
        except ChildProcessError:
            return
        if finished:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(server.pid, 0)


@contextlib.contextmanager
def running_sshd() -> Iterator[SshdServer]:
    """A started server in a fresh temporary directory, stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="carbonaware-sshd-"))
    server = start_sshd(directory)
    try:
        yield server
    finally:
        stop_sshd(server)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A loopback OpenSSH server shared by the tests of a session."""
    with running_sshd() as server:
        yield server
