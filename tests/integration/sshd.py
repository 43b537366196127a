"""A real OpenSSH server on loopback for integration tests (launcher: ``hack/sshd.py``).

Import the fixture into a test module of this package to use it (pytest finds fixtures by
name in the module's namespace)::

    from .sshd import SshdServer, sshd_server

    __all__ = ["sshd_server"]  # keeps linters from calling the import unused

``sshd_server`` (session scope) installs Debian's ``openssh-server`` with apt-get when
``/usr/sbin/sshd`` is missing, then starts ``sshd -D -e`` on ``127.0.0.1`` and a free port with
its own host key, ``sshd_config``, authorized_keys and a fresh client key pair, all in a
temporary directory. It logs in as the user running the tests (root is allowed with
``PermitRootLogin prohibit-password``). The server is stopped by PID at the end. Tests are
skipped when openssh-server is missing and the user cannot install it.

:func:`start_sshd` / :func:`stop_sshd` / :func:`running_sshd` do the same outside fixtures;
:func:`stop_sessions` ends the server's open connections and :func:`restart_sshd` starts a
stopped server again on the same port with the same keys, for tests of lost connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_launcher() -> ModuleType:
    """Import hack/sshd.py (a standalone script, not an installed package)."""
    name = "carbonaware_hack_sshd"
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / "sshd.py")
    if spec is None or spec.loader is None:
        raise ImportError("cannot load hack/sshd.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_launcher = _load_launcher()

SSHD_PATH: Path = _launcher.SSHD_PATH
SshdServer = _launcher.SshdServer
SshdError = _launcher.SshdError
generate_key_pair = _launcher.generate_key_pair
known_hosts_line = _launcher.known_hosts_line
stop_sshd = _launcher.stop_sshd


def ensure_openssh_server() -> None:
    """Install openssh-server if missing; skip the test when that needs root."""
    try:
        _launcher.ensure_openssh_server()
    except _launcher.InstallNeedsRootError as exc:
        pytest.skip(str(exc))


def start_sshd(directory: Path) -> SshdServer:
    """Start a loopback sshd whose files all live in ``directory``."""
    ensure_openssh_server()
    server: SshdServer = _launcher.start_sshd(directory)
    return server


def _parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def session_pids(server: SshdServer) -> list[int]:
    """The per-connection sshd processes (children of the listener)."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _parent_pid(int(entry.name)) == server.pid
    ]


def stop_sessions(pids: list[int]) -> None:
    """SIGKILL the given per-connection sshd processes: their clients see the link drop."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def restart_sshd(server: SshdServer, timeout_seconds: float = 30.0) -> SshdServer:
    """Start a stopped server again with its own config: same port, host key and client key."""
    stop_sshd(server)
    config_path = server.directory / "sshd_config"
    with server.log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(SSHD_PATH), "-D", "-e", "-f", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), 1):
            break
        if process.poll() is not None:
            raise SshdError(f"sshd did not start again:\n{server.log_text()}")
        time.sleep(0.05)
    else:
        raise SshdError(f"sshd did not listen on port {server.port} again")
    return dataclasses.replace(
        server, pid=process.pid, start_ticks=_launcher.process_start_ticks(process.pid) or 0
    )


@contextlib.contextmanager
def running_sshd(host: str = "127.0.0.1") -> Iterator[SshdServer]:
    """A started server in a fresh temporary directory, stopped and removed afterwards;
    it listens on ``host`` (e.g. ``real_node_plane.real_node_ip`` for pods to reach)."""
    ensure_openssh_server()
    with _launcher.running_sshd(host) as server:
        yield server


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A loopback OpenSSH server shared by the tests of a session."""
    with running_sshd() as server:
        yield server
