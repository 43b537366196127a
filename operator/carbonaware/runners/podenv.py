"""Long texts in the SSH-runner pod's environment, and the size a pod can carry.

Linux limits one environment string (``NAME=value``) to 128 KiB (``MAX_ARG_STRLEN``) and all of
a process's arguments and environment together to about 2 MiB (``ARG_MAX`` with the default
8 MiB stack); the API server stores objects of at most about 1.5 MiB. A script may be 256 KiB
and a job's env JSON larger still, so :func:`split_env_value` sends a long value as numbered
variables (``NAME_CHUNKS`` = n, then ``NAME_0`` ... ``NAME_<n-1>``) of at most
:data:`CHUNK_BYTES` each, cut on character boundaries; the runner joins them back with
:func:`join_env_value`. A value that fits stays in the single variable ``NAME``.

Kubernetes expands ``$(VAR)`` in a container's command and env values and reduces ``$$`` to
``$``, so a script's ``echo $$`` or ``$(HOME)`` would reach the runner changed: every text
the operator puts there goes through :func:`literal` (each ``$`` doubled), which the kubelet
turns back into the text as written. Chunks are never cut between the two ``$`` of a pair.

:func:`exec_bytes` counts what a pod's command line and environment take in ``execve``;
:data:`MAX_RUNNER_EXEC_BYTES` leaves room under ``ARG_MAX`` for the image's own environment and
under the API server's object limit for the rest of the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from carbonaware.errors import SpecError

KNOWN_HOSTS_ENV = "CARBONAWARE_SSH_KNOWN_HOSTS"
COMMAND_ENV = "CARBONAWARE_SSH_COMMAND"
SCRIPT_ENV = "CARBONAWARE_SSH_SCRIPT"
JOB_ENV_ENV = "CARBONAWARE_SSH_ENV"
LONG_TEXT_ENV_NAMES = (KNOWN_HOSTS_ENV, COMMAND_ENV, SCRIPT_ENV, JOB_ENV_ENV)

CHUNK_BYTES = 100 * 1024
MAX_ENV_STRING_BYTES = 128 * 1024
MAX_RUNNER_EXEC_BYTES = 1024 * 1024
_MAX_CHUNKS = 1000
_POINTER_BYTES = 8


def literal(text: str) -> str:
    """``text`` as a container command or env value that Kubernetes passes on unchanged."""
    return text.replace("$", "$$")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def _pieces(value: str, limit: int) -> list[str]:
    """``value`` cut into pieces of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = _utf8(value)
    pieces: list[str] = []
    start = 0
    while start < len(data):
        end = min(len(data), start + limit)
        # Back off from a UTF-8 continuation byte (10xxxxxx) to the start of its character.
        while end < len(data) and end > start and data[end] & 0xC0 == 0x80:
            end -= 1
        # Never between the two "$" of an escaped pair: an odd run of "$" before the cut.
        dollars = len(data[start:end]) - len(data[start:end].rstrip(b"$"))
        if end < len(data) and dollars % 2 == 1:
            end -= 1
        pieces.append(data[start:end].decode("utf-8", errors="surrogatepass"))
        start = end
    return pieces


def split_env_value(name: str, value: str) -> list[dict[str, str]]:
    """Pod env entries that carry ``value`` under ``name`` (as a :func:`literal`): one, or a
    count and chunks."""
    value = literal(value)
    if len(_utf8(value)) <= CHUNK_BYTES:
        return [{"name": name, "value": value}]
    pieces = _pieces(value, CHUNK_BYTES)
    return [
        {"name": f"{name}_CHUNKS", "value": str(len(pieces))},
        *({"name": f"{name}_{index}", "value": piece} for index, piece in enumerate(pieces)),
    ]


def join_env_value(name: str, environ: Mapping[str, str]) -> str | None:
    """The value :func:`split_env_value` sent under ``name``; None when it sent nothing."""
    count_text = environ.get(f"{name}_CHUNKS")
    if count_text is None:
        return environ.get(name)
    if name in environ:
        raise SpecError(f"{name} is given both whole and as {name}_CHUNKS: give one of them")
    if not count_text.isdigit() or not 1 <= int(count_text) <= _MAX_CHUNKS:
        raise SpecError(f"{name}_CHUNKS must be a number of chunks from 1 to {_MAX_CHUNKS}")
    pieces: list[str] = []
    for index in range(int(count_text)):
        piece = environ.get(f"{name}_{index}")
        if piece is None:
            raise SpecError(f"{name}_{index} is missing: {name} came in {count_text} chunks")
        pieces.append(piece)
    return "".join(pieces)


def exec_bytes(arguments: Sequence[str], env: Sequence[Mapping[str, str]]) -> int:
    """Bytes the kernel counts against ``ARG_MAX`` for this command line and environment:
    each string with its NUL, plus a pointer to it."""
    strings = [*arguments, *(f"{item['name']}={item['value']}" for item in env)]
    return sum(len(_utf8(text)) + 1 + _POINTER_BYTES for text in strings)


def check_fits(arguments: Sequence[str], env: Sequence[Mapping[str, str]]) -> None:
    """SpecError when the runner's command line and environment cannot be passed to it."""
    for item in env:
        size = len(_utf8(f"{item['name']}={item['value']}")) + 1
        if size > MAX_ENV_STRING_BYTES:
            raise SpecError(
                f"the runner pod's variable {item['name']} takes {size} bytes, more than the "
                f"{MAX_ENV_STRING_BYTES} Linux allows for one"
            )
    total = exec_bytes(arguments, env)
    if total > MAX_RUNNER_EXEC_BYTES:
        raise SpecError(
            f"spec.ssh.script or command, spec.ssh.env and the ServerTarget's knownHosts take "
            f"{total // 1024} KiB in the runner pod, more than the "
            f"{MAX_RUNNER_EXEC_BYTES // 1024} KiB it can carry (Linux passes a process about "
            "2 MiB of arguments and environment, and the API server stores objects of about "
            "1.5 MiB): the script and env values must be shorter; put large inputs in files "
            "on the server and read them from there"
        )
