"""Connections to a user's server, and the ServerTarget probe.

:func:`connect` opens an authenticated connection with mandatory host key checking (unless
``AcceptAny`` is chosen) and an in-memory private key; :func:`probe_target` does the same
without running anything. Connection failures become :class:`~carbonaware.errors.TargetError`
subclasses whose messages say what to fix; no message or log line ever contains key material.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncssh

from carbonaware.errors import (
    HostKeyMismatchError,
    SpecError,
    TargetAuthError,
    TargetError,
    TargetUnreachableError,
)
from carbonaware.runners.sshspec import HostKeyPolicy, SshTargetSpec

logger = logging.getLogger(__name__)

PROBE_OK_REASON = "Connected"

_KEEPALIVE_INTERVAL_SECONDS = 30.0
_KEEPALIVE_COUNT_MAX = 4


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`probe_target`: ``reason`` is ``Connected``, ``Unreachable``,
    ``AuthFailed`` or ``HostKeyMismatch``; ``message`` says what to fix."""

    reachable: bool
    reason: str
    message: str


class _HostKeyRecorder(asyncssh.SSHClient):
    """Remembers a host key that was not in known_hosts, so the error can show its fingerprint.

    asyncssh asks this only for keys it did not already trust; answering False rejects them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.untrusted_key: Any = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.untrusted_key = key
        return False


def endpoint(target: SshTargetSpec) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.user}@{host}:{target.port}"


def _known_hosts_name(target: SshTargetSpec) -> str:
    return target.host if target.port == 22 else f"[{target.host}]:{target.port}"


def _import_client_key(target: SshTargetSpec) -> Any:
    try:
        return asyncssh.import_private_key(target.private_key)
    except (asyncssh.KeyImportError, ValueError, TypeError):
        # The library's message is not passed on: it is never allowed to echo key material.
        raise TargetAuthError(
            f"the private key for {endpoint(target)} could not be read: the Secret must hold an "
            "unencrypted OpenSSH or PEM private key (ed25519, ecdsa or rsa)"
        ) from None


def _trusted_host_keys(target: SshTargetSpec) -> Any:
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        return None
    if not target.known_hosts or not target.known_hosts.strip():
        # An explicitly empty trust set: asyncssh would otherwise fall back to ~/.ssh/known_hosts.
        return ([], [], [])
    try:
        return asyncssh.import_known_hosts(target.known_hosts)
    except (ValueError, asyncssh.KeyImportError):
        # Only the line number is reported: a misplaced secret pasted there must not be echoed.
        raise HostKeyMismatchError(
            f"knownHosts for {endpoint(target)} could not be parsed (line "
            f"{_first_bad_known_hosts_line(target.known_hosts)}): it must hold OpenSSH "
            f"known_hosts lines such as the output of ssh-keyscan -p {target.port} {target.host}"
        ) from None


def _first_bad_known_hosts_line(known_hosts: str) -> int:
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        try:
            asyncssh.import_known_hosts(line)
        except (ValueError, asyncssh.KeyImportError):
            return number
    return 0


def _host_key_message(target: SshTargetSpec, recorder: _HostKeyRecorder, detail: str) -> str:
    name = _known_hosts_name(target)
    if not target.known_hosts or not target.known_hosts.strip():
        problem = f"knownHosts is empty, so the host key of {endpoint(target)} cannot be checked"
    else:
        problem = f"the host key of {endpoint(target)} is not trusted by knownHosts ({detail})"
    key = recorder.untrusted_key
    if key is None:
        return (
            f"{problem}: add the server's host key line for {name} to knownHosts "
            f"(e.g. from ssh-keyscan -p {target.port} {target.host}, verified out of band), or "
            "set hostKeyPolicy: AcceptAny to skip host key checking"
        )
    public_line = key.export_public_key("openssh").decode("ascii", errors="replace").split()
    suggestion = " ".join([name, *public_line[:2]])
    return (
        f"{problem}; the server presented {key.get_algorithm()} key "
        f"{key.get_fingerprint('sha256')}. If that is the server's key (check with "
        "ssh-keygen -lf on its /etc/ssh/ssh_host_*_key.pub), add this line to knownHosts: "
        f"{suggestion}"
    )


def _unreachable_message(target: SshTargetSpec, exc: BaseException) -> str:
    where = f"{target.host}:{target.port}"
    if isinstance(exc, socket.gaierror):
        return f"host name {target.host!r} does not resolve: check spec.host and DNS"
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"{where} refused the connection: check that sshd listens on port {target.port} "
            "and that no firewall blocks it"
        )
    if isinstance(exc, TimeoutError):
        return (
            f"no SSH session with {where} within {target.connect_timeout_seconds:g} s: check "
            "the address, the port and any firewall between the cluster and the server"
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return f"the SSH handshake with {where} failed ({exc.reason}): check that it runs sshd"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot connect to {where}: {exc.strerror}"
    return f"cannot connect to {where}: {type(exc).__name__}"


@asynccontextmanager
async def connect(target: SshTargetSpec) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """An authenticated connection; every failure is mapped to a TargetError subclass."""
    client_key = _import_client_key(target)
    known_hosts = _trusted_host_keys(target)
    recorder = _HostKeyRecorder()
    try:
        connection, _ = await asyncssh.create_connection(
            lambda: recorder,
            target.host,
            target.port,
            username=target.user,
            client_keys=[client_key],
            known_hosts=known_hosts,
            # Nothing from the runner's own environment: no ~/.ssh/config, agent, GSS or
            # password prompts; only the key we were given.
            config=None,
            agent_path=None,
            x509_trusted_certs=None,
            gss_host=None,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            public_key_auth=True,
            preferred_auth="publickey",
            connect_timeout=target.connect_timeout_seconds,
            login_timeout=target.connect_timeout_seconds,
            keepalive_interval=_KEEPALIVE_INTERVAL_SECONDS,
            keepalive_count_max=_KEEPALIVE_COUNT_MAX,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatchError(_host_key_message(target, recorder, exc.reason)) from None
    except asyncssh.PermissionDenied:
        fingerprint = client_key.get_fingerprint("sha256")
        raise TargetAuthError(
            f"{endpoint(target)} rejected public key authentication: add the public key of the "
            f"Secret's private key ({fingerprint}) to ~{target.user}/.ssh/authorized_keys on the "
            "server, and check the user name"
        ) from None
    except (OSError, asyncssh.Error) as exc:
        raise TargetUnreachableError(_unreachable_message(target, exc)) from None
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        logger.warning(
            "connected to %s without checking its host key (hostKeyPolicy: AcceptAny)",
            endpoint(target),
        )
    else:
        logger.info("connected to %s", endpoint(target))
    try:
        yield connection
    finally:
        connection.close()
        with contextlib.suppress(OSError, asyncssh.Error):
            await connection.wait_closed()


async def probe_target(
    host: str,
    port: int,
    user: str,
    private_key: str | bytes,
    known_hosts: str | None,
    host_key_policy: HostKeyPolicy | str = HostKeyPolicy.STRICT,
    timeout: float = 10.0,  # noqa: ASYNC109 - bounds connect + handshake + auth, not a call
) -> ProbeResult:
    """TCP connect, SSH handshake with host key check, and authentication; runs nothing."""
    try:
        target = SshTargetSpec(
            host=host,
            port=port,
            user=user,
            private_key=private_key,
            known_hosts=known_hosts,
            host_key_policy=HostKeyPolicy(host_key_policy),
            connect_timeout_seconds=timeout,
        )
        async with connect(target):
            pass
    except TargetError as exc:
        return ProbeResult(reachable=False, reason=exc.reason, message=str(exc))
    except (SpecError, ValueError) as exc:
        # Invalid parameters (e.g. an unknown policy name) cannot reach any server.
        return ProbeResult(reachable=False, reason=TargetUnreachableError.reason, message=str(exc))
    if target.host_key_policy is HostKeyPolicy.ACCEPT_ANY:
        message = (
            f"connected to {endpoint(target)} without checking its host key "
            "(hostKeyPolicy: AcceptAny); set knownHosts and hostKeyPolicy: Strict"
        )
    else:
        message = f"connected and authenticated to {endpoint(target)}"
    return ProbeResult(reachable=True, reason=PROBE_OK_REASON, message=message)
