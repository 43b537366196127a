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

:func:`start_sshd` / :func:`stop_sshd` / :func:`running_sshd` do the same outside fixtures.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
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


@contextlib.contextmanager
def running_sshd() -> Iterator[SshdServer]:
    """A started server in a fresh temporary directory, stopped and removed afterwards."""
    ensure_openssh_server()
    with _launcher.running_sshd() as server:
        yield server


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A loopback OpenSSH server shared by the tests of a session."""
    with running_sshd() as server:
        yield server
