"""The supervisor of an SSH run: the detached script that runs the job on the server.

See :mod:`carbonaware.runners.sshlease` for the run directory it works in. Started in its own
session by the call that claimed the run, it records its pid (and the boot it runs in), takes
the ``go`` decision, starts the job with ``setsid`` in its own process group (stdin
``/dev/null``, output appended to files), and starts a watchdog. The watchdog sends SIGTERM to
the job's process group at ``timeoutSeconds`` (or when a stop is requested: a ``stop`` file and
SIGUSR1) and SIGKILL after the grace; a normal end kills its sleep, so nothing is left behind.
The watchdog ends its own ``sleep`` with SIGKILL, never a signal that can be caught: a forked
child keeps the shell's handlers until it resets them and execs, so a SIGTERM that arrives in
that moment is taken by the child's copy of the handler and lost, and the ``sleep`` then runs
on with the watchdog waiting for it (under busybox ash, 21 of 2,800 runs of the watchdog's
pattern with a job that ended at once hung so). After the job's leader exits, the supervisor
sends SIGTERM to what it left in its group, reads the job's own CPU time with ``times`` and
writes the exit record (write, then ``mv``). Portable ``sleep`` takes whole seconds, so the
timeout and the grace are rounded up. Process groups are signalled as ``kill -TERM -<pgid>``,
the one form dash, bash and busybox all accept (busybox's kill takes no ``--``; dash needs one
after ``-s TERM``).

A job may be paused with SIGSTOP of its process group and resumed with SIGCONT
(:mod:`carbonaware.runners.sshsignal`). The supervisor's ``wait`` is not ended by a stopped
child (a shell without job control waits for it to exit, not to stop), and the watchdog is
in the supervisor's own session, so the timeout counts on while the job is paused (it is wall
time) and still ends it: every SIGTERM is followed by SIGCONT, so a job that handles SIGTERM
gets its grace to act on it.
"""

from __future__ import annotations

import math
import shlex

from carbonaware.runners.sshscript import interpreter_for, quote_path
from carbonaware.runners.sshspec import SshRunSpec

# How long a sleep stands for "no timeout" (about 68 years; fits a 32-bit signed integer).
_NO_TIMEOUT_SLEEP_SECONDS = 2147483647

COMMON_FUNCTIONS = r"""
now() {
  now_value=$(date +%s.%N 2>/dev/null)
  case $now_value in
    '' | *[!0-9.]* | .* | *. | *.*.*) now_value=$(date +%s) ;;
  esac
  printf '%s\n' "$now_value"
}
put() {
  printf '%s\n' "$2" > "$run_dir/.$1.$$" && mv -f "$run_dir/.$1.$$" "$run_dir/$1"
}
"""

_SUPERVISOR = r"""
run_dir=$1
{common}
boot_id=-
[ -r /proc/sys/kernel/random/boot_id ] && read -r boot_id < /proc/sys/kernel/random/boot_id
put supervisor "$$ ${{boot_id:--}}"
# A caller that found the claimer gone may have declared the run lost: then never begin.
mkdir "$run_dir/go" 2>/dev/null || exit 0
: >> "$run_dir/stdout"
: >> "$run_dir/stderr"
if [ -f "$run_dir/stop" ]; then
  moment=$(now)
  put exit "- 0 $moment $moment"
  exit 0
fi
cd "$HOME" 2>/dev/null
{change_directory}
start_epoch=$(now)
if command -v setsid >/dev/null 2>&1; then
  setsid {runner} "$run_dir/job" </dev/null >>"$run_dir/stdout" 2>>"$run_dir/stderr" &
else
  {runner} "$run_dir/job" </dev/null >>"$run_dir/stdout" 2>>"$run_dir/stderr" &
fi
job_pid=$!
(
  quit=
  nap_pid=
  trap 'quit=1; [ -z "$nap_pid" ] || kill -KILL "$nap_pid" 2>/dev/null' TERM
  trap '[ -z "$nap_pid" ] || kill -KILL "$nap_pid" 2>/dev/null' USR1
  : > "$run_dir/armed"
  sleep {limit} &
  nap_pid=$!
  if [ -n "$quit" ] || [ -f "$run_dir/stop" ]; then kill -KILL "$nap_pid" 2>/dev/null; fi
  wait "$nap_pid"
  [ -n "$quit" ] && exit 0
  grace={grace}
  if [ -f "$run_dir/stop" ]; then
    read -r grace < "$run_dir/stop"
  elif kill -0 "-$job_pid" 2>/dev/null || kill -0 "$job_pid" 2>/dev/null; then
    : > "$run_dir/timedout"
  fi
  : > "$run_dir/stopping"
  trap '' USR1
  kill -TERM "-$job_pid" 2>/dev/null || kill -TERM "$job_pid" 2>/dev/null
  # A paused (SIGSTOPped) job acts on a SIGTERM it handles only once it runs again.
  kill -CONT "-$job_pid" 2>/dev/null || kill -CONT "$job_pid" 2>/dev/null
  nap_pid=
  sleep "$grace" &
  nap_pid=$!
  [ -n "$quit" ] && kill -KILL "$nap_pid" 2>/dev/null
  wait "$nap_pid"
  [ -n "$quit" ] && exit 0
  kill -KILL "-$job_pid" 2>/dev/null || kill -KILL "$job_pid" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
watchdog_pid=$!
put started "$job_pid $start_epoch $watchdog_pid"
wait "$job_pid"
status=$?
end_epoch=$(now)
if [ -f "$run_dir/stopping" ] && kill -0 "-$job_pid" 2>/dev/null; then
  # A stopped job's stragglers get the rest of the grace, then SIGKILL, from the watchdog.
  wait "$watchdog_pid"
else
  # Whatever the job left running (or paused) in its process group ends with it.
  kill -TERM "-$job_pid" 2>/dev/null && kill -CONT "-$job_pid" 2>/dev/null
  kill -TERM "$watchdog_pid" 2>/dev/null
  wait "$watchdog_pid"
fi
timed_out=0
[ -f "$run_dir/timedout" ] && timed_out=1
times > "$run_dir/times"
put exit "$status $timed_out $start_epoch $end_epoch $(tr '\n' ' ' < "$run_dir/times")"
"""


def whole_seconds(seconds: float) -> int:
    """Portable ``sleep`` takes whole seconds: round up, at least 1."""
    return max(1, math.ceil(seconds))


def build_supervisor_script(spec: SshRunSpec) -> str:
    """The detached script that runs the job, enforces its timeout and records its outcome."""
    interpreter = interpreter_for(spec.script) if spec.script is not None else ["/bin/sh"]
    # env(1) sets the job's variables without touching the supervisor's own shell variables.
    assignments = [shlex.quote(f"{name}={value}") for name, value in spec.env]
    runner = " ".join(["env", *assignments, *(shlex.quote(part) for part in interpreter)])
    change_directory = ""
    if spec.working_dir is not None:
        target = quote_path(spec.working_dir)
        change_directory = (
            f"cd -- {target} 2>/dev/null || {{\n"
            f"  printf 'carbonaware: cannot change to working directory %s\\n' {target} "
            '>> "$run_dir/stderr"\n'
            "  moment=$(now)\n"
            '  put exit "1 0 $moment $moment"\n'
            "  exit 0\n"
            "}"
        )
    limit = (
        whole_seconds(spec.timeout_seconds)
        if spec.timeout_seconds is not None
        else _NO_TIMEOUT_SLEEP_SECONDS
    )
    return _SUPERVISOR.format(
        common=COMMON_FUNCTIONS.strip(),
        change_directory=change_directory,
        runner=runner,
        limit=limit,
        grace=whole_seconds(spec.kill_grace_seconds),
    ).lstrip()
