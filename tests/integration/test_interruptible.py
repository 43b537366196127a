"""Interruptible work: a Job on the real node paused in dirty hours and resumed in clean ones,
and an SSH script stopped and continued on a real sshd.

The operator replays a trace on a scaled clock (one operator hour is 45 s of wall time for
the real node, 22.5 s for the sshd, where no pod has to start): three clean
half-hours, each followed by an hour and a half of dirty grid, before the deadline. A
CarbonAwareJob with ``spec.schedule.interruptible`` whose work is 90 operator minutes runs
a busybox workload on the real node that checkpoints: it counts seconds of work into a file
on a hostPath volume, writes a line when it starts (with the count it resumes from) and one
when it gets SIGTERM, and ends once the count reaches the work. The operator must start it in
the first clean half-hour, pause it (the child Job suspended: its pod gets SIGTERM) and resume
it (unsuspended: a new pod resumes from the checkpoint) at least twice, and see it end
Succeeded by its deadline with its segments in status. Midway, while the job is paused, the
operator is SIGKILLed and started again: the job resumes on plan, from its checkpoint.

The same replay against the loopback sshd: a script counting seconds of work is stopped
(SIGSTOP of its process group) and continued (SIGCONT) by the operator; its own log shows
each pause as a gap, and it runs its work once, to the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .manifests import KEY_SECRET, key_secret, server_target, ssh_job
from .operatorproc import (
    OperatorProcess,
    ScaledClock,
    caj,
    free_port,
    operator_env,
    status_of,
    ticked,
    wait_for,
    when,
)
from .sshd import SshdServer, sshd_server

__all__ = ["sshd_server"]

pytestmark = pytest.mark.integration

# Operator seconds per wall second. On the real node a clean half-hour is 22.5 s, room for a
# pod to start on a loaded node (at 120x, 15 s, a pod started under the whole suite's load
# could miss it); the sshd's script is stopped and continued in milliseconds.
SCALE = 80.0
SSH_SCALE = 160.0
SLOT = timedelta(minutes=30)
CLEAN, DIRTY = 40, 400
WORK = timedelta(minutes=90)  # three clean slots
WORK_WALL_SECONDS = int(WORK.total_seconds() / SCALE)  # what the workload counts: 67 s
SSH_WORK_WALL_SECONDS = int(WORK.total_seconds() / SSH_SCALE)  # what the counter counts: 33 s
MIN_RUN = timedelta(minutes=20)
FINISHED = ("Succeeded", "Failed")
TICKS = timedelta(minutes=4)  # a tick is 1 s of wall time, 80 operator s: three ticks

# Counts wall seconds of work into /data/progress; resumes from it; records each start and
# each SIGTERM (with the count) in /data/log.
WORKLOAD = f"""
n=$(cat /data/progress 2>/dev/null || echo 0)
echo "start $(date +%s) $n" >> /data/log
trap 'echo "sigterm $(date +%s) $n" >> /data/log; exit 143' TERM
while [ "$n" -lt {WORK_WALL_SECONDS} ]; do
  sleep 1 & wait $!
  n=$((n + 1))
  echo "$n" > /data/progress
done
echo "done $(date +%s) $n" >> /data/log
"""


def clean_slots(first: datetime) -> list[datetime]:
    """The starts of the clean half-hours: the first, then one every two hours."""
    return [first + i * 4 * SLOT for i in range(3)]


def write_trace(path: Path, first: datetime) -> Path:
    """Two weeks of flat history, then DIRTY except the clean slots, as the shipped traces'
    columns (the forecast is the actual: the plan is known)."""
    clean = set(clean_slots(first))
    start = first - timedelta(days=15)
    rows = ["Datetime (UTC),Actual Carbon Intensity (gCO2/kWh),Forecast Carbon Intensity "
            "(gCO2/kWh),Index"]  # fmt: skip
    while start < first + timedelta(days=2):
        value = CLEAN if start in clean else DIRTY
        rows.append(f"{start:%Y-%m-%dT%H:%MZ},{value},{value},moderate")
        start += SLOT
    path.write_text("\n".join(rows) + "\n")
    return path


def replay_clock(scale: float = SCALE) -> tuple[ScaledClock, datetime, datetime]:
    """The scaled clock from now, the first clean slot (the second half-hour boundary after
    the origin: a job created at once waits for it) and the deadline (an hour after the last
    clean slot)."""
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), scale)
    first = clock.origin.replace(minute=0, second=0) + SLOT * (clock.origin.minute // 30 + 2)
    return clock, first, clean_slots(first)[-1] + SLOT + timedelta(hours=1)


def replay_env(
    kubeconfig: Path,
    namespace: str,
    clock: ScaledClock,
    first: datetime,
    tmp_path: Path,
    **more: Any,
) -> tuple[dict[str, str], int]:
    """An operator's environment replaying the trace on ``clock``, and its metrics port."""
    trace = write_trace(tmp_path / "trace.csv", first)
    port = free_port()
    env = operator_env(
        kubeconfig,
        providers="trace",
        trace_path=trace,
        trace_shift_to_now=False,
        default_region="GB",
        namespace=namespace,
        metrics_port=port,
        metrics_address="127.0.0.1",
        time_scale=clock.scale,
        time_origin=clock.origin.isoformat(),
        tick_seconds=1,
        **more,
    )
    return env, port


def started(env: dict[str, str], port: int, log: Path) -> OperatorProcess:
    """An operator process, once it has ticked (a job created before would meet no loop)."""
    operator = OperatorProcess(env, log)
    operator.start()
    try:
        wait_for(lambda: ticked(port), timeout=60, what="the operator's first tick")
    except AssertionError:
        operator.stop()
        raise
    return operator


def interruptible_schedule(deadline: datetime) -> dict[str, Any]:
    """WORK of run time by ``deadline``, runs of at least MIN_RUN."""
    return {
        "deadlineTime": deadline.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expectedDurationSeconds": int(WORK.total_seconds()),
        "interruptible": {"minRunSeconds": int(MIN_RUN.total_seconds())},
    }


def workload_template(plane: Any, data: Path) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": plane.images.busybox.name,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", WORKLOAD],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}},
    }
    pod = {
        **plane.real_node_placement(),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5,
        "containers": [container],
        "volumes": [{"name": "data", "hostPath": {"path": str(data), "type": "DirectoryOrCreate"}}],
    }
    return {"spec": {"backoffLimit": 0, "template": {"spec": pod}}}


def status_if(
    plane: Any, namespace: str, name: str, test: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The CarbonAwareJob's status if it passes ``test``."""
    status = status_of(plane, "caj", namespace, name)
    return status if test(status) else None


def log_lines(data: Path) -> list[list[str]]:
    path = data / "log"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def assert_ran_in_segments(
    final: dict[str, Any], deadline: datetime, operator: OperatorProcess
) -> list[dict[str, Any]]:
    """The run Succeeded by its deadline in at least three closed segments, each of them with
    work, whose sum is the work done; returns the segments."""
    assert final["state"] == "Succeeded", (final, operator.log()[-3000:])
    assert when(final["completionTime"]) <= deadline
    segments: list[dict[str, Any]] = final["segments"]
    assert len(segments) >= 3, segments
    assert final["interruptions"] == len(segments) - 1
    assert all(s.get("end") for s in segments), segments
    assert all(s["workSeconds"] > 0 for s in segments), segments
    assert final["workDoneSeconds"] == pytest.approx(sum(s["workSeconds"] for s in segments), abs=1)
    return segments


def test_a_job_is_paused_and_resumed_in_clean_hours_and_survives_an_operator_sigkill(
    real_node_crds: Any, real_node_namespace: str, tmp_path: Path
) -> None:
    plane, namespace = real_node_crds, real_node_namespace
    clock, first, deadline = replay_clock()
    data = tmp_path / "data"
    data.mkdir()
    env, port = replay_env(plane.kubeconfig, namespace, clock, first, tmp_path)
    operator = started(env, port, tmp_path / "operator.log")
    schedule = interruptible_schedule(deadline)
    try:
        plane.apply(
            caj("long", schedule, jobTemplate=workload_template(plane, data)), namespace=namespace
        )
        held = wait_for(
            lambda: status_if(plane, namespace, "long", lambda s: "plannedStartTime" in s),
            timeout=60,
            what="the job's plan",
        )
        assert held["state"] == "Held"
        assert when(held["plannedStartTime"]) == first

        paused_once = wait_for(
            lambda: status_if(plane, namespace, "long", lambda s: s.get("state") == "Paused"),
            timeout=clock.wall_seconds(first + 2 * SLOT - clock.now()) + 60,
            what="the first pause",
        )
        first_segment = paused_once["segments"][0]
        # Started in the clean slot, or at the last tick before it (a tick is 2 minutes).
        assert when(first_segment["start"]) >= first - TICKS
        assert when(first_segment["end"]) < clean_slots(first)[1]  # paused in the dirty hours
        assert first_segment["workSeconds"] > 0
        # SIGKILL while paused, and start again: the job must resume on plan.
        operator.kill()
        killed_at = clock.now()
        operator = started(env, port, tmp_path / "operator-2.log")
        resumed = wait_for(
            lambda: status_if(plane, namespace, "long", lambda s: len(s.get("segments") or []) > 1),
            timeout=clock.wall_seconds(clean_slots(first)[1] + SLOT - clock.now()) + 60,
            what="the resume after the restart",
        )
        # Resumed for the second clean slot (or the dirty minutes just before it that the work
        # still needs), not at once and not from scratch.
        resumed_at = when(resumed["segments"][1]["start"])
        assert resumed_at >= killed_at
        assert resumed_at >= clean_slots(first)[1] - SLOT - TICKS
        final = wait_for(
            lambda: status_if(plane, namespace, "long", lambda s: s.get("state") in FINISHED),
            timeout=clock.wall_seconds(deadline - clock.now()) + 120,
            what="the end of the run",
        )
    finally:
        operator.stop()
    log = log_lines(data)
    print("workload log:", *(" ".join(line) for line in log), sep="\n  ")
    print("segments:", *final.get("segments") or [], sep="\n  ")
    segments = assert_ran_in_segments(final, deadline, operator)
    # Every pause reached the workload as SIGTERM, and every start after the first resumed
    # from the checkpoint, not from scratch; the work was done once.
    starts = [line for line in log if line[0] == "start"]
    terms = [line for line in log if line[0] == "sigterm"]
    assert len(terms) == final["interruptions"], log
    assert len(starts) == len(segments), log
    assert int(starts[0][2]) == 0, log
    assert all(int(s[2]) > 0 for s in starts[1:]), log
    assert [line[0] for line in log].count("done") == 1
    assert int((data / "progress").read_text()) == WORK_WALL_SECONDS
    # Segments run in clean slots, except what the deadline forces.
    clean = [(s, s + SLOT) for s in clean_slots(first)]
    in_clean = [
        any(when(seg["start"]) < end and when(seg["end"]) > start for start, end in clean)
        for seg in segments
    ]
    assert sum(in_clean) >= 3, segments
    assert final["sci"]["totalGrams"] > 0
    events = plane.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=long"
    )["items"]
    reasons = [e["reason"] for e in events]
    assert "Paused" in reasons, reasons
    assert "Resumed" in reasons, reasons


# Counts wall seconds of work, each line "<count> <epoch>": SIGSTOP freezes it between two
# lines, so its own log shows every pause as a gap.
COUNTER = f"""n=0
while [ "$n" -lt {SSH_WORK_WALL_SECONDS} ]; do
  sleep 1
  n=$((n + 1))
  echo "$n $(date +%s)" >> "$COUNTER_LOG"
done
echo done >> "$COUNTER_LOG"
"""


def test_an_ssh_script_is_stopped_and_continued_in_clean_hours_and_runs_its_work_once(
    crds: Any, namespace: str, sshd_server: SshdServer, tmp_path: Path
) -> None:
    clock, first, deadline = replay_clock(SSH_SCALE)
    log = tmp_path / "counter.log"
    crds.apply(key_secret(KEY_SECRET, sshd_server.client_private_key), namespace=namespace)
    crds.apply(server_target("server", sshd_server), namespace=namespace)
    env, port = replay_env(crds.kubeconfig, namespace, clock, first, tmp_path, ssh_mode="InProcess")
    operator = started(env, port, tmp_path / "operator.log")
    schedule = interruptible_schedule(deadline)
    try:
        job = ssh_job(
            "counter",
            "server",
            schedule=schedule,
            script=COUNTER,
            env=[{"name": "COUNTER_LOG", "value": str(log)}],
            timeoutSeconds=3600,
        )
        crds.apply(job, namespace=namespace)
        final = wait_for(
            lambda: status_if(crds, namespace, "counter", lambda s: s.get("state") in FINISHED),
            timeout=clock.wall_seconds(deadline - clock.now()) + 120,
            what="the end of the run",
        )
    finally:
        operator.stop()
    lines = log.read_text().splitlines() if log.exists() else []
    print("segments:", *final.get("segments") or [], sep="\n  ")
    assert_ran_in_segments(final, deadline, operator)
    assert final["sci"]["cpuCoreSeconds"] >= 0
    # The work ran once, all of it: one line per second of work, then one "done".
    assert lines[-1] == "done", lines
    assert lines.count("done") == 1, lines
    counts = [int(line.split()[0]) for line in lines[:-1]]
    assert counts == list(range(1, SSH_WORK_WALL_SECONDS + 1))
    # Each pause is a gap in the script's own log, and without the gaps it ran for the work.
    epochs = [int(line.split()[1]) for line in lines[:-1]]
    gaps = [b - a for a, b in itertools.pairwise(epochs)]
    pauses = [gap for gap in gaps if gap > 5]
    assert len(pauses) == final["interruptions"], gaps
    ran = epochs[-1] - epochs[0] - sum(pauses) + 1
    assert ran == pytest.approx(SSH_WORK_WALL_SECONDS, abs=3), gaps
