"""The fixed shell commands the SSH runner sends to the server, and its control-line parser.

Pure string building, so it is unit-tested (and can be run under a local ``/bin/sh``) without a
server.

The exec request of every run is a fixed one-liner, :data:`BOOTSTRAP_COMMAND`, that holds no
user data: it makes a private temporary directory, copies stdin into ``run.sh`` there and
executes it with ``/bin/sh`` (a non-login shell: no profile is read). Whatever login shell the
account has only sees ``exec /bin/sh -c '...'``. What ``run.sh`` holds (start or attach to a run,
stop or locate a run) is built by :mod:`carbonaware.runners.sshlease`.

The script reports to the runner on stderr with control lines tagged by a per-connection random
marker (:func:`new_marker`), which :func:`split_control_line` separates from the job's own
stderr. :func:`build_kill_command` signals a process group directly (the runner's last resort
when the server's watchdog did not act, and the pause and resume of a run);
:func:`build_sampler_command` and :func:`build_sample_once_command` sample ``/proc/stat`` and
``/proc/meminfo`` while a run goes on.
"""

from __future__ import annotations

import math
import secrets
import shlex
from dataclasses import dataclass

from carbonaware.errors import RunnerError
from carbonaware.runners.procstat import parse_times_output

BOOTSTRAP_COMMAND = (
    "exec /bin/sh -c '"
    'umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/carbonaware.XXXXXXXXXX") || exit 125; '
    'cat > "$d/run.sh" || exit 125; exec /bin/sh "$d/run.sh" "$d"'
    "'"
)

# Exit status of the bootstrap when it cannot even create its temporary files.
BOOTSTRAP_FAILED_EXIT = 125

_SAMPLE_ONCE = (
    'read -r l < /proc/stat && echo "$l"; '
    'while read -r k v u; do case "$k" in MemTotal:|MemAvailable:) echo "$k $v $u";; esac; '
    "done < /proc/meminfo; echo sample-end || exit 0"
)


def new_marker() -> str:
    """A random tag for control lines, so job output can never be mistaken for one."""
    return f"__carbonaware_{secrets.token_hex(12)}__"


def quote_path(path: str) -> str:
    """Quote a working directory, expanding a leading ``~`` to the account's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:]) if path[2:] else '"$HOME"'
    return shlex.quote(path)


def interpreter_for(script: str) -> list[str]:
    """The argv prefix that runs the script file: its ``#!`` line, else ``/bin/sh``.

    The kernel's rule is followed (interpreter path, then at most one argument: the rest of the
    line), but the interpreter is invoked explicitly so scripts also run from a ``noexec``
    temporary directory.
    """
    if not script.startswith("#!"):
        return ["/bin/sh"]
    first_line = script[2:].split("\n", 1)[0].strip()
    if not first_line:
        return ["/bin/sh"]
    parts = first_line.split(None, 1)
    return [parts[0], parts[1].strip()] if len(parts) == 2 else [parts[0]]


def build_kill_command(pgid: int, signal_name: str) -> str:
    """Signal the job's whole process group (falls back to the process when no group exists).

    ``kill -TERM -<pgid>`` is the form dash, bash and busybox all read as a process group:
    busybox's kill takes no ``--``, and dash needs one after ``-s TERM``. STOP and CONT pause
    and resume the job. SIGTERM is followed by SIGCONT: a paused job that handles SIGTERM
    only sees it once it runs again (SIGKILL ends a stopped process by itself).
    """
    if pgid <= 1:
        raise RunnerError(f"refusing to signal process group {pgid}")
    if signal_name not in {"TERM", "KILL", "STOP", "CONT"}:
        raise RunnerError(f"unsupported signal {signal_name}")
    signals = [signal_name, "CONT"] if signal_name == "TERM" else [signal_name]
    kills = " ".join(
        f"kill -{name} -{pgid} 2>/dev/null || kill -{name} {pgid} 2>/dev/null;" for name in signals
    )
    return f"exec /bin/sh -c '{kills} exit 0'"


def build_sampler_command(interval_seconds: float) -> str:
    """A loop printing a host sample every ``interval_seconds`` (the first after one interval).

    Only shell builtins read ``/proc``; the loop ends on its next write once the channel is
    closed.
    """
    interval = f"{max(0.1, interval_seconds):.3f}"
    return f"exec /bin/sh -c 'while :; do sleep {interval} || exit 0; {_SAMPLE_ONCE}; done'"


def build_sample_once_command() -> str:
    """``vcpus N`` and one host sample, taken when a run starts and when it ends."""
    return (
        "exec /bin/sh -c '"
        "n=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null); "
        f'echo "vcpus ${{n:-0}}"; {_SAMPLE_ONCE}'
        "'"
    )


@dataclass(frozen=True)
class ControlLine:
    """A control line from the run script (see :mod:`carbonaware.runners.sshlease`).

    ``clock`` carries the server's clock (``epoch``), ``claim`` the token of the call that
    claimed the run, ``start`` the job's process group and start epoch, ``end`` the exit
    record (exit status or None when the job never ran, whether it timed out, start and end
    epochs, the job's CPU seconds), ``lost``/``error`` a reason in ``text``; ``none`` says a stop
    found no run and made sure none will start, or a locate found the run over or ending;
    ``alive`` is a heartbeat.
    """

    kind: str
    pgid: int | None = None
    exit_code: int | None = None
    cpu_core_seconds: float | None = None
    timed_out: bool = False
    start_epoch: float | None = None
    end_epoch: float | None = None
    epoch: float | None = None
    text: str = ""


def _epoch(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _parse_fields(fields: list[str]) -> ControlLine:
    kind, rest = (fields[0], fields[1:]) if fields else ("", [])
    if kind == "start" and rest and rest[0].isdigit():
        return ControlLine(
            kind="start", pgid=int(rest[0]), start_epoch=_epoch(rest[1]) if len(rest) > 1 else None
        )
    if kind == "end" and len(rest) >= 4 and (rest[0].isdigit() or rest[0] == "-"):
        start_epoch, end_epoch = _epoch(rest[2]), _epoch(rest[3])
        if rest[1] in {"0", "1"} and start_epoch is not None and end_epoch is not None:
            return ControlLine(
                kind="end",
                exit_code=int(rest[0]) if rest[0].isdigit() else None,
                timed_out=rest[1] == "1",
                start_epoch=start_epoch,
                end_epoch=max(start_epoch, end_epoch),
                cpu_core_seconds=parse_times_output(" ".join(rest[4:])),
            )
    if kind == "clock" and rest and (epoch := _epoch(rest[0])) is not None:
        return ControlLine(kind="clock", epoch=epoch)
    if kind == "claim" and rest:
        return ControlLine(kind="claim", text=rest[0])
    if kind == "lost" and rest:
        return ControlLine(kind="lost", epoch=_epoch(rest[0]), text=" ".join(rest[1:]))
    if kind == "error":
        return ControlLine(kind="error", text=" ".join(rest))
    if kind in {"none", "alive"}:
        return ControlLine(kind=kind)
    return ControlLine(kind="unknown")


def split_control_line(line: bytes, marker: str) -> tuple[bytes, ControlLine | None]:
    """Separate a control line from job output sharing the stderr stream.

    Returns (job output that preceded the marker on the same line, parsed control line), or
    (line, None) when the line carries no marker.
    """
    encoded_marker = marker.encode("ascii")
    index = line.find(encoded_marker)
    if index < 0:
        return line, None
    prefix = line[:index]
    fields = line[index + len(encoded_marker) :].decode("utf-8", errors="replace").split()
    return prefix, _parse_fields(fields)
