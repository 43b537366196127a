"""Following a run on the server: the loop every run or stop script ends with.

It reports the server's clock, the claim token once the run is claimed and the job's process
group once it starts, passes on new output from the byte offsets the caller was already given,
and ends with the exit record, printed as an ``end`` control line (exiting with the job's
status), or with ``lost``. While it waits it checks that the run's owner is alive: the
supervisor once it has recorded itself, the claiming call before (a run still unclaimed after
40 rounds has no owner). When the owner is gone without an exit record it records the run lost
(final: the job is never started again), and stops a job still running in this boot whose
processes provably belong to the run. After 20 quick rounds it polls every ``poll_seconds`` and
sends a heartbeat every fourth round, so a caller that went away is noticed by SIGPIPE. See
:mod:`carbonaware.runners.sshlease` for the run directory.
"""

from __future__ import annotations

from carbonaware.runners.sshsupervisor import whole_seconds

_FOLLOW = r"""
pass_on() {{
  passed=$2
  [ -f "$1" ] || return 0
  size=$(wc -c < "$1") || return 0
  size=${{size##*[!0-9]}}
  [ -n "$size" ] && [ "$size" -gt "$2" ] || return 0
  tail -c "+$(($2 + 1))" "$1" 2>/dev/null | head -c "$((size - $2))"
  passed=$size
}}
pass_output() {{
  [ -n "{stream}" ] || return 0
  pass_on "$run_dir/stdout" "$stdout_offset"
  stdout_offset=$passed
  pass_on "$run_dir/stderr" "$stderr_offset" >&2
  stderr_offset=$passed
}}
owner_alive() {{
  if [ -f "$run_dir/supervisor" ]; then
    supervisor_alive
    return
  fi
  if [ -n "$claimer_pid" ]; then
    kill -0 "$claimer_pid" 2>/dev/null
    return
  fi
  unclaimed=$((unclaimed + 1))
  [ "$unclaimed" -lt 40 ]
}}
owned_by_run() {{
  [ -r "/proc/$1/cmdline" ] || return 1
  case $(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) in
    *"$run_dir/$2"*) return 0 ;;
  esac
  return 1
}}
stop_orphan() {{
  # Nothing can record this job's outcome any more: stop it, so that it cannot go on unseen
  # beside a run created again. Only in the boot it started in, and only processes that are
  # provably the run's own (their command line names the run directory).
  [ -f "$run_dir/started" ] && [ "$supervisor_boot" != - ] || return 0
  [ "$supervisor_boot" = "$boot_id" ] || return 0
  read -r orphan_pgid _ orphan_watchdog < "$run_dir/started"
  put stop {grace}
  if owned_by_run "$orphan_watchdog" supervise; then
    kill -USR1 "$orphan_watchdog" 2>/dev/null
  elif owned_by_run "$orphan_pgid" job; then
    kill -TERM "-$orphan_pgid" 2>/dev/null && kill -CONT "-$orphan_pgid" 2>/dev/null
  fi
}}
declare_lost() {{
  if [ -f "$run_dir/supervisor" ]; then
    [ -f "$run_dir/exit" ] && return 0
    put lost "$(now) the run's supervisor (pid $supervisor_pid) ended without recording \
the job's outcome: the server restarted or the supervisor was killed"
    stop_orphan
  elif mkdir "$run_dir/go" 2>/dev/null; then
    put lost "$(now) the run was claimed but never started: the call that claimed it ended first"
  fi
}}
say clock "$(now)"
stdout_offset={stdout_offset}
stderr_offset={stderr_offset}
claimer_pid=
claim_token=
job_pgid=
unclaimed=0
rounds=0
announce() {{
  if [ -z "$claim_token" ] && [ -f "$run_dir/claim" ]; then
    read -r claimer_pid claim_token _ < "$run_dir/claim"
    say claim "$claim_token"
  fi
  if [ -z "$job_pgid" ] && [ -f "$run_dir/started" ]; then
    read -r job_pgid job_start _ < "$run_dir/started"
    say start "$job_pgid" "$job_start"
  fi
}}
while :; do
  announce
  pass_output
  [ -f "$run_dir/exit" ] || [ -f "$run_dir/lost" ] && break
  if ! owner_alive; then
    declare_lost
    nap 0.1
    continue
  fi
  rounds=$((rounds + 1))
  if [ "$rounds" -lt 20 ]; then
    nap 0.1
  else
    nap {poll}
    # A heartbeat: a caller that went away is noticed (SIGPIPE) within a few rounds.
    [ $((rounds % 4)) -eq 0 ] && say alive
  fi
done
# A job that started and ended between two rounds is announced before its end.
announce
pass_output
if [ -f "$run_dir/exit" ]; then
  read -r status _ < "$run_dir/exit"
  printf '%s end ' "$marker" >&2
  cat "$run_dir/exit" >&2
  case $status in '' | *[!0-9]*) exit 0 ;; esac
  exit "$status"
fi
printf '%s lost ' "$marker" >&2
cat "$run_dir/lost" >&2
exit 0
"""


def build_follow_script(
    *,
    stream: bool,
    stdout_offset: int,
    stderr_offset: int,
    poll_seconds: float,
    grace_seconds: float,
) -> str:
    """The attach part of a run or stop script (module docstring). It expects the prelude's
    variables and functions (``run_dir``, ``marker``, ``say``, ``put``, ``now``, ``nap``,
    ``supervisor_alive``). ``stream`` passes the job's output on from the given byte
    offsets; ``grace_seconds`` is the stop grace of an orphaned job."""
    if stdout_offset < 0 or stderr_offset < 0:
        raise ValueError("output offsets must not be negative")
    return _FOLLOW.format(
        grace=whole_seconds(grace_seconds),
        stream="1" if stream else "",
        stdout_offset=int(stdout_offset),
        stderr_offset=int(stderr_offset),
        poll=f"{max(0.1, poll_seconds):.3f}",
    )
