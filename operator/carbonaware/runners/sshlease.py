"""The run directory on the server: what makes an SSH run happen exactly once.

Pure string building, so the scripts are unit-tested under a local ``/bin/sh`` without a
server. They need POSIX ``sh`` (dash, busybox ash, bash) and ``setsid``, ``mkdir``, ``mv``,
``kill``, ``date``, ``tail``, ``head``, ``wc``, ``cat`` and ``sleep`` from GNU coreutils or
busybox. Each is uploaded on stdin of :data:`~carbonaware.runners.sshscript.BOOTSTRAP_COMMAND`,
so the exec request never carries user data.

Every run lives in ``$HOME/.carbonaware/runs/<run-id>/`` on the server:

``claim``       ``<pid> <token> <epoch>``: who claimed the run (``mkdir`` of the directory is
                the atomic claim; the token tells the claiming call from later ones)
``job``         the script or command line, byte for byte
``supervise``   the supervisor script
``supervisor``  ``<pid> <boot id>`` of the supervisor, written first thing
``go``          a directory: whoever creates it decides whether the job may begin (the
                supervisor) or never will (a caller that found the claimer gone)
``started``     ``<pgid> <start epoch> <watchdog pid>`` once the job runs
``armed``       the watchdog is ready to be told to stop
``stdout``,     the job's output; callers read them from the byte offsets they were already
``stderr``      given, so a re-attach does not repeat what was passed on
``stop``        a stop request: the grace in seconds between SIGTERM and SIGKILL
``stopping``    the watchdog has signalled the job (timeout or stop request)
``timedout``    the stop was the run's own timeout
``exit``        ``<status|-> <timedout 0|1> <start epoch> <end epoch> <times output>``,
                written once (write, then ``mv``); ``-`` means the job never ran
``lost``        ``<epoch> <reason>``: the supervisor is gone without an exit record (the
                server restarted, or it was killed); final, the job is never started again,
                and a job still running without its supervisor is stopped

The first call with a run id (:func:`build_run_script`) claims the directory, writes the job
and starts the supervisor detached (``setsid``, stdin ``/dev/null``, output to files), so the
run survives the SSH connection, the runner pod or the operator. Every call, the first one
included, then attaches (:mod:`carbonaware.runners.sshfollow`): it reports the server's clock,
the claim token and the job's process group, streams new output, and ends with the exit record
(or ``lost``). A later call with the same id attaches and never starts a second copy.

The supervisor starts the job in its own session and process group, and a watchdog that sends
SIGTERM to that group at ``timeoutSeconds`` and SIGKILL after the kill grace, also when no
client is connected. A stop request (:func:`build_stop_script`) goes to the same watchdog. When
the job's leader exits the supervisor sends SIGTERM to whatever it left in its group, reads
the job's own CPU time with ``times`` and writes the exit record. :func:`build_locate_script`
reports the job's process group from ``started`` while the run goes on, so that it can be
paused and resumed (:mod:`carbonaware.runners.sshsignal`).

Finished runs (with an ``exit`` or ``lost`` record) are removed by later starts on the same
account once that record is :data:`PRUNE_AFTER_SECONDS` (7 days) old; until then a call with
the same id gets the recorded outcome. After that, the same id would start a new run.

Runs survive the SSH session only where the server does not kill a user's processes at logout
(systemd-logind ``KillUserProcesses=no``, Debian's default, or ``loginctl enable-linger``).
"""

from __future__ import annotations

import secrets
import shlex

from carbonaware.runners.sshfollow import build_follow_script
from carbonaware.runners.sshspec import SshRunSpec, validate_run_id
from carbonaware.runners.sshsupervisor import (
    COMMON_FUNCTIONS,
    build_supervisor_script,
    whole_seconds,
)

RUNS_DIRECTORY = ".carbonaware/runs"
PRUNE_AFTER_SECONDS = 7 * 24 * 3600
# Exit status of a run script that cannot prepare the run (same as the bootstrap's).
PREPARE_FAILED_EXIT = 125

_PRELUDE = r"""
temporary_dir=$1
trap 'rm -rf "$temporary_dir"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
# A lost connection shows up as SIGPIPE on the next write; trapping it still cleans up.
trap 'exit 141' PIPE
umask 077
marker={marker}
say() {{
  printf '%s %s\n' "$marker" "$*" >&2
}}
nap() {{
  sleep "$1" 2>/dev/null || sleep 1
}}
{common}
if [ -z "$HOME" ]; then
  say error HOME is not set on the server
  exit {failed}
fi
runs_dir="$HOME/{runs}"
run_dir="$runs_dir/{run_id}"
boot_id=-
[ -r /proc/sys/kernel/random/boot_id ] && read -r boot_id < /proc/sys/kernel/random/boot_id
mkdir -p "$runs_dir" 2>/dev/null
supervisor_alive() {{
  [ -f "$run_dir/supervisor" ] || return 1
  read -r supervisor_pid supervisor_boot < "$run_dir/supervisor"
  [ "$supervisor_boot" = - ] || [ "$boot_id" = - ] || [ "$supervisor_boot" = "$boot_id" ] ||
    return 1
  kill -0 "$supervisor_pid" 2>/dev/null
}}
"""

_PRUNE = r"""
prune() {{
  oldest=$(date +%s)
  oldest=$((oldest - {prune_after}))
  for old_dir in "$runs_dir"/*; do
    [ -d "$old_dir" ] && [ "$old_dir" != "$run_dir" ] || continue
    finished=
    if [ -f "$old_dir/exit" ]; then
      read -r _ _ _ finished _ < "$old_dir/exit"
    elif [ -f "$old_dir/lost" ]; then
      read -r finished _ < "$old_dir/lost"
    fi
    finished=${{finished%%.*}}
    case $finished in '' | *[!0-9]*) continue ;; esac
    [ "$finished" -lt "$oldest" ] && rm -rf -- "$old_dir"
  done
}}
"""

_CLAIM = r"""
fail_prepare() {{
  mkdir "$run_dir/go" 2>/dev/null
  put lost "$(now) the server could not write the run's files in $run_dir (disk full or quota?)"
  say error cannot write the run files in "$run_dir" "(disk full or quota?)"
  exit {failed}
}}
if mkdir "$run_dir" 2>/dev/null; then
  put claim "$$ {token} $(now)" || fail_prepare
  cat > "$run_dir/job" <<'{job_delimiter}' || fail_prepare
{payload}{job_delimiter}
  chmod 700 "$run_dir/job" || fail_prepare
  cat > "$run_dir/supervise" <<'{supervisor_delimiter}' || fail_prepare
{supervisor}{supervisor_delimiter}
  if command -v setsid >/dev/null 2>&1; then
    setsid /bin/sh "$run_dir/supervise" "$run_dir" </dev/null >/dev/null 2>>"$run_dir/log" &
  else
    /bin/sh "$run_dir/supervise" "$run_dir" </dev/null >/dev/null 2>>"$run_dir/log" &
  fi
  prune
fi
if [ ! -d "$run_dir" ]; then
  say error cannot create the run directory "$run_dir"
  exit {failed}
fi
"""

_STOP = r"""
if mkdir "$run_dir" 2>/dev/null; then
  # No such run: record that it was stopped before it began, so it never will.
  put claim "$$ - $(now)"
  mkdir "$run_dir/go"
  moment=$(now)
  put exit "- 0 $moment $moment"
  say none
  exit 0
fi
if [ ! -f "$run_dir/exit" ] && [ ! -f "$run_dir/lost" ]; then
  put stop {grace}
  waited=0
  while [ ! -f "$run_dir/armed" ] || [ ! -f "$run_dir/started" ]; do
    [ -f "$run_dir/exit" ] || [ -f "$run_dir/lost" ] || [ "$waited" -ge 100 ] && break
    nap 0.1
    waited=$((waited + 1))
  done
  if [ -f "$run_dir/armed" ] && [ -f "$run_dir/started" ] && [ ! -f "$run_dir/exit" ]; then
    read -r stop_pgid _ stop_watchdog < "$run_dir/started"
    if ! kill -USR1 "$stop_watchdog" 2>/dev/null; then
      # No watchdog: SIGTERM, then SIGCONT so a paused job acts on it.
      kill -TERM "-$stop_pgid" 2>/dev/null || kill -TERM "$stop_pgid" 2>/dev/null
      kill -CONT "-$stop_pgid" 2>/dev/null || kill -CONT "$stop_pgid" 2>/dev/null
    fi
  fi
fi
"""

_LOCATE = r"""
if [ ! -d "$run_dir" ]; then
  say error there is no such run on the server
  exit 0
fi
waited=0
while [ ! -f "$run_dir/started" ]; do
  [ -f "$run_dir/exit" ] || [ -f "$run_dir/lost" ] || [ "$waited" -ge 100 ] && break
  nap 0.1
  waited=$((waited + 1))
done
if [ -f "$run_dir/exit" ] || [ -f "$run_dir/lost" ] || [ -f "$run_dir/stop" ] ||
  [ -f "$run_dir/stopping" ]; then
  say none
elif [ ! -f "$run_dir/started" ]; then
  say error the run has not started its job yet
elif supervisor_alive; then
  read -r job_pgid job_start _ < "$run_dir/started"
  say start "$job_pgid" "$job_start"
else
  # The supervisor is gone (the next attach records the run lost): its group is not trusted.
  say none
fi
exit 0
"""


def new_run_id() -> str:
    """A random run id, for calls that do not name their run."""
    return secrets.token_hex(16)


def new_claim_token() -> str:
    """A random token that tells the call that claimed a run from later ones."""
    return secrets.token_hex(8)


def _delimiter_for(text: str) -> str:
    """A here-document delimiter that appears as no line of ``text``."""
    while True:
        delimiter = f"CARBONAWARE_EOF_{secrets.token_hex(12)}"
        if f"\n{delimiter}\n" not in f"\n{text}":
            return delimiter


def _prelude(run_id: str, marker: str) -> str:
    return _PRELUDE.format(
        marker=shlex.quote(marker),
        common=COMMON_FUNCTIONS.strip(),
        failed=PREPARE_FAILED_EXIT,
        runs=RUNS_DIRECTORY,
        run_id=validate_run_id(run_id),
    ).lstrip()


def build_run_script(
    spec: SshRunSpec,
    *,
    run_id: str,
    marker: str,
    token: str,
    stdout_offset: int = 0,
    stderr_offset: int = 0,
    poll_seconds: float = 0.5,
) -> str:
    """Start the run ``run_id`` unless it exists, then attach to it (the ``run.sh`` uploaded
    through stdin of the bootstrap).

    Output is passed on from the given byte offsets of the job's stdout and stderr.
    """
    payload = spec.script if spec.script is not None else spec.command or ""
    if not payload.endswith("\n"):
        payload += "\n"
    supervisor = build_supervisor_script(spec)
    if not supervisor.endswith("\n"):
        supervisor += "\n"
    claim = _CLAIM.format(
        token=shlex.quote(token),
        failed=PREPARE_FAILED_EXIT,
        job_delimiter=_delimiter_for(payload),
        payload=payload,
        supervisor_delimiter=_delimiter_for(supervisor),
        supervisor=supervisor,
    )
    prune = _PRUNE.format(prune_after=PRUNE_AFTER_SECONDS)
    attach = build_follow_script(
        stream=True,
        stdout_offset=stdout_offset,
        stderr_offset=stderr_offset,
        poll_seconds=poll_seconds,
        grace_seconds=spec.kill_grace_seconds,
    )
    return _prelude(run_id, marker) + prune + claim + attach


def build_stop_script(
    *,
    run_id: str,
    marker: str,
    grace_seconds: float,
    wait: bool = True,
    poll_seconds: float = 0.5,
) -> str:
    """Stop the run ``run_id``: its watchdog sends SIGTERM to the job's process group, then
    SIGKILL after ``grace_seconds``.

    With ``wait`` the script then attaches (without output) until the exit record; without, it
    returns once the stop was requested. A run id that was never started is recorded as
    stopped before it began, so no later call starts it.
    """
    stop = _STOP.format(grace=whole_seconds(grace_seconds))
    if not wait:
        return _prelude(run_id, marker) + stop + "exit 0\n"
    attach = build_follow_script(
        stream=False,
        stdout_offset=0,
        stderr_offset=0,
        poll_seconds=poll_seconds,
        grace_seconds=grace_seconds,
    )
    return _prelude(run_id, marker) + stop + attach


def build_locate_script(*, run_id: str, marker: str) -> str:
    """Report where the run ``run_id`` is, changing nothing: ``start <pgid> <start epoch>``
    while its job runs under a live supervisor (of this boot), ``none`` once it is over or
    ending (exit record, lost, stop requested or under way, supervisor gone), ``error`` when
    there is no such run or its job has not started within about 10 s.
    """
    return _prelude(run_id, marker) + _LOCATE
