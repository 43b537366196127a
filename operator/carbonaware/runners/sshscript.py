"""The shell text the SSH runner sends to the server, and the parser for its control lines.

Pure string building, so it is unit-tested (and can be run under a local ``/bin/sh``) without a
server.

How a run works on the server:

1. The exec request is a fixed one-liner, :data:`BOOTSTRAP_COMMAND`, that holds no user data:
   it makes a private temporary directory, copies stdin into ``run.sh`` there and executes it
   with ``/bin/sh`` (a non-login shell: no profile is read). Whatever login shell the account
   has only sees ``exec /bin/sh -c '...'``.
2. The wrapper (:func:`build_wrapper_script`) writes the job text to a file, changes to the
   working directory and starts the job through ``env NAME=VALUE...`` with ``setsid`` in its
   own session and process group, with stdin from ``/dev/null``. It reports the job's process
   group id on stderr as a control line tagged with a per-run random marker.
3. When the job ends the wrapper terminates anything the job left running in its process
   group, reads the CPU time of its waited-for children with the ``times`` builtin (that is
   the job's own CPU, not the host's), reports exit status and CPU on a second control line,
   removes the temporary directory and exits with the job's status.

On timeout the runner sends ``kill -TERM -<pgid>`` (then ``-KILL``) over a second channel
(:func:`build_kill_command`); the wrapper is outside that process group, so it survives to
report. A third channel (:func:`build_sampler_command`) samples ``/proc/stat`` and
``/proc/meminfo`` while the job runs.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass

from carbonaware.errors import RunnerError
from carbonaware.runners.procstat import parse_times_output
from carbonaware.runners.sshspec import SshRunSpec

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


def _quote_path(path: str) -> str:
    """Quote a working directory, expanding a leading ``~`` to the account's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:]) if path[2:] else '"$HOME"'
    return shlex.quote(path)


def _interpreter_for(script: str) -> list[str]:
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


def build_wrapper_script(spec: SshRunSpec, marker: str) -> str:
    """The ``run.sh`` uploaded through stdin of :data:`BOOTSTRAP_COMMAND`."""
    if spec.script is not None:
        payload = spec.script
        interpreter = _interpreter_for(spec.script)
    else:
        payload = spec.command or ""
        interpreter = ["/bin/sh"]
    if not payload.endswith("\n"):
        payload += "\n"
    delimiter = f"CARBONAWARE_EOF_{secrets.token_hex(12)}"
    while f"\n{delimiter}\n" in f"\n{payload}":
        delimiter = f"CARBONAWARE_EOF_{secrets.token_hex(12)}"
    quoted_marker = shlex.quote(marker)
    # env(1) sets the job's variables without touching the wrapper's own shell variables.
    assignments = [shlex.quote(f"{name}={value}") for name, value in spec.env]
    runner = " ".join(["env", *assignments, *(shlex.quote(part) for part in interpreter)])
    lines = [
        "d=$1",
        f"m={quoted_marker}",
        "trap 'rm -rf \"$d\"' EXIT",
        "trap 'exit 129' HUP",
        "trap 'exit 130' INT",
        "trap 'exit 143' TERM",
        # A lost connection shows up as SIGPIPE; trapping it still removes the directory.
        "trap 'exit 141' PIPE",
        f"cat > \"$d/job\" <<'{delimiter}'",
        payload + delimiter,
        'chmod 700 "$d/job" || exit 125',
    ]
    if spec.working_dir is not None:
        target = _quote_path(spec.working_dir)
        lines.append(
            f"cd -- {target} || {{ printf 'carbonaware: cannot change to working directory "
            f"%s\\n' {target} >&2; exit 1; }}"
        )
    lines += [
        "if command -v setsid >/dev/null 2>&1; then",
        f'  setsid {runner} "$d/job" </dev/null &',
        "else",
        f'  {runner} "$d/job" </dev/null &',
        "fi",
        "p=$!",
        'printf \'%s start %s\\n\' "$m" "$p" >&2',
        'wait "$p"',
        "rc=$?",
        # Whatever the job left running in its process group ends with it.
        'kill -s TERM -- "-$p" 2>/dev/null',
        'times > "$d/times"',
        "{ printf '%s end %s ' \"$m\" \"$rc\"; tr '\\n' ' ' < \"$d/times\"; printf '\\n'; } >&2",
        'exit "$rc"',
        "",
    ]
    return "\n".join(lines)


def build_kill_command(pgid: int, signal_name: str) -> str:
    """Signal the job's whole process group (falls back to the process when no group exists)."""
    if pgid <= 1:
        raise RunnerError(f"refusing to signal process group {pgid}")
    if signal_name not in {"TERM", "KILL"}:
        raise RunnerError(f"unsupported signal {signal_name}")
    return (
        f"exec /bin/sh -c 'kill -s {signal_name} -- -{pgid} 2>/dev/null "
        f"|| kill -s {signal_name} -- {pgid} 2>/dev/null; exit 0'"
    )


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
    """A control line from the wrapper: ``start`` carries the pgid, ``end`` the exit status
    and the job's CPU seconds."""

    kind: str
    pgid: int | None = None
    exit_code: int | None = None
    cpu_core_seconds: float | None = None


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
    fields = line[index + len(encoded_marker) :].decode("ascii", errors="replace").split(None, 2)
    if len(fields) >= 2 and fields[0] == "start" and fields[1].isdigit():
        return prefix, ControlLine(kind="start", pgid=int(fields[1]))
    if len(fields) >= 2 and fields[0] == "end" and fields[1].isdigit():
        times_text = fields[2] if len(fields) == 3 else ""
        return prefix, ControlLine(
            kind="end",
            exit_code=int(fields[1]),
            cpu_core_seconds=parse_times_output(times_text),
        )
    return prefix, ControlLine(kind="unknown")
