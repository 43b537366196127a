"""Plain value types describing an SSH run: where to connect and what to run.

The operator fills these from its CRD models (``ServerTarget`` and ``CarbonAwareJob.spec.ssh``);
the runner, the probe and the pod-manifest builder take nothing else, so they do not depend on
the API models.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from carbonaware.errors import SpecError

ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,64}$")
DEFAULT_REATTACH_SECONDS = 300.0


def validate_run_id(run_id: str) -> str:
    """``run_id`` if it is safe as one path component in a shell script, else SpecError."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise SpecError(
            f"run id must be 1 to 64 letters, digits or '-' (e.g. a Kubernetes UID), got {run_id!r}"
        )
    return run_id


class HostKeyPolicy(StrEnum):
    """How the server's host key is checked.

    ``Strict`` (default) accepts only keys listed in ``knownHosts``; ``AcceptAny`` turns host key
    checking off and must be chosen explicitly.
    """

    STRICT = "Strict"
    ACCEPT_ANY = "AcceptAny"


@dataclass(frozen=True)
class SshTargetSpec:
    """Connection details for one server. ``private_key`` never appears in a repr."""

    host: str
    user: str
    private_key: str | bytes = field(repr=False)
    port: int = 22
    known_hosts: str | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    connect_timeout_seconds: float = 20.0

    def __post_init__(self) -> None:
        if not self.host or any(ch.isspace() for ch in self.host):
            raise SpecError(f"host must be a DNS name or an IP address, got {self.host!r}")
        if not self.user or any(ch.isspace() or ch == "\0" for ch in self.user):
            raise SpecError(f"user must be a non-empty login name, got {self.user!r}")
        if not 1 <= self.port <= 65535:
            raise SpecError(f"port must be between 1 and 65535, got {self.port}")
        if not (math.isfinite(self.connect_timeout_seconds) and self.connect_timeout_seconds > 0):
            raise SpecError("connect timeout must be a positive number of seconds")
        object.__setattr__(self, "host_key_policy", HostKeyPolicy(self.host_key_policy))


@dataclass(frozen=True)
class SshRunSpec:
    """What to run on the server: exactly one of ``command`` or ``script``.

    ``command`` is one shell command line run as ``cd <working_dir> && <command>`` under
    ``/bin/sh``; ``script`` is a whole script (a ``#!`` first line picks its interpreter, else
    ``/bin/sh``). ``env`` is exported before it starts. ``timeout_seconds`` (None: no limit)
    bounds the run; at the limit the server's own watchdog sends the job's process group
    SIGTERM, then SIGKILL after ``kill_grace_seconds``. The host is sampled every
    ``sample_interval_seconds``.

    ``run_id`` names the run on the server (letters, digits and '-', at most 64 characters; the
    operator passes the CarbonAwareJob's UID): the first call with an id starts the job, every
    later call with the same id attaches to that run and never starts a second copy. None means
    a fresh random id for each call. When the connection drops during a run, the runner
    reconnects and re-attaches for up to ``reattach_seconds``.
    """

    command: str | None = None
    script: str | None = None
    working_dir: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float | None = None
    kill_grace_seconds: float = 10.0
    sample_interval_seconds: float = 2.0
    run_id: str | None = None
    reattach_seconds: float = DEFAULT_REATTACH_SECONDS

    def __post_init__(self) -> None:
        if (self.command is None) == (self.script is None):
            raise SpecError("ssh must set exactly one of command or script")
        payload = self.command if self.command is not None else self.script
        if payload is None or not payload.strip():
            raise SpecError("ssh command or script must not be empty")
        if "\0" in payload:
            raise SpecError("ssh command or script must not contain NUL characters")
        if self.working_dir is not None and (not self.working_dir or "\0" in self.working_dir):
            raise SpecError("ssh workingDir must be a non-empty path without NUL characters")
        env = tuple((str(name), str(value)) for name, value in self.env)
        for name, value in env:
            if not ENV_NAME_PATTERN.match(name):
                raise SpecError(
                    f"ssh env name {name!r} must be a shell variable name "
                    "(letters, digits and _, not starting with a digit)"
                )
            if "\0" in value:
                raise SpecError(f"ssh env value of {name} must not contain NUL characters")
        object.__setattr__(self, "env", env)
        if self.timeout_seconds is not None and not (
            math.isfinite(self.timeout_seconds) and self.timeout_seconds > 0
        ):
            raise SpecError("ssh timeoutSeconds must be a positive number of seconds")
        durations: tuple[tuple[str, float], ...] = (
            ("kill grace", self.kill_grace_seconds),
            ("sample interval", self.sample_interval_seconds),
        )
        for label, seconds in durations:
            if not (math.isfinite(seconds) and seconds > 0):
                raise SpecError(f"{label} must be a positive number of seconds")
        if not (math.isfinite(self.reattach_seconds) and self.reattach_seconds >= 0):
            raise SpecError("reattach seconds must be zero or a positive number of seconds")
        if self.run_id is not None:
            validate_run_id(self.run_id)


def env_pairs(
    env: Mapping[str, str] | Iterable[Mapping[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    """Normalise ``{"A": "1"}`` or ``[{"name": "A", "value": "1"}]`` (the CRD shape) to pairs."""
    if env is None:
        return ()
    if isinstance(env, Mapping):
        return tuple((str(name), str(value)) for name, value in env.items())
    pairs: list[tuple[str, str]] = []
    for item in env:
        if not isinstance(item, Mapping) or "name" not in item:
            raise SpecError("each ssh env entry must be an object with name and value")
        pairs.append((str(item["name"]), str(item.get("value", ""))))
    return tuple(pairs)
