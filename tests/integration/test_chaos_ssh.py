"""SSH jobs while the operator is SIGKILLed again and again: each runs exactly once.

A real OpenSSH server runs the jobs; each job's script appends ``start`` and ``end`` lines
with the time to a log on the server, so the count comes from the server itself, not from
the operator. The operator is killed with SIGKILL at seeded random moments while runs are
going and restarted at once. Afterwards every job has Succeeded, every job started exactly
once and ended exactly once on the server, and never more than ``maxConcurrent`` ran at a
time. Two modes:

- in-process (kwok plane, sshd on loopback): the operator's own tasks follow the runs, so
  every kill cuts every connection;
- runner pods on the real worker node (containers from the operator's image, sshd on the
  host address the pods reach): besides the operator, a running runner pod is deleted at
  each kill, so the run's connection dies with it and a new pod must attach to the run.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .grid import Intensity, grid, operator_for
from .manifests import KEY_SECRET, key_secret, server_target, ssh_job
from .operatorproc import (
    OperatorProcess,
    operator_env,
    real_node_runner_settings,
    status_of,
    wait_for,
)
from .sshd import SshdServer, sshd_server

pytestmark = pytest.mark.integration
__all__ = ["grid", "sshd_server"]

JOBS = 14
MAX_CONCURRENT = 3
KILLS = 6
SCRIPT = """set -e
echo "start $JOB $(date +%s.%N)" >> "$LOG"
sleep 5
echo "end $JOB $(date +%s.%N)" >> "$LOG"
"""


def server_log(path: Path) -> list[tuple[str, str, float]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        kind, job, stamp = line.split()
        lines.append((kind, job, float(stamp)))
    return lines


def most_at_once(events: list[tuple[str, str, float]]) -> int:
    running = best = 0
    for kind, _, _ in sorted(events, key=lambda event: (event[2], event[0] == "start")):
        running += 1 if kind == "start" else -1
        best = max(best, running)
    return best


def run_chaos(
    plane: Any,
    namespace: str,
    server: SshdServer,
    process: OperatorProcess,
    log: Path,
    disrupt: Callable[[random.Random], None] = lambda rng: None,
) -> None:
    """Create the jobs, SIGKILL and restart the operator (and ``disrupt``) whenever a run is
    going on the server, then check the server's own record of the runs."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}")
    plane.apply(key_secret(KEY_SECRET, server.client_private_key), namespace=namespace)
    plane.apply(server_target("box", server, maxConcurrent=MAX_CONCURRENT), namespace=namespace)
    process.start()
    names = [f"run-{index}" for index in range(JOBS)]
    try:
        for name in names:
            env = [{"name": "JOB", "value": name}, {"name": "LOG", "value": str(log)}]
            plane.apply(ssh_job(name, "box", script=SCRIPT, env=env), namespace=namespace)
        kills = 0
        deadline = time.monotonic() + 300
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(2.0, 6.0))
            if any(kind == "start" for kind, _, _ in server_log(log)):
                process.kill()
                disrupt(rng)
                kills += 1
                process.start()
        assert kills == KILLS, "the runs ended before every kill could land mid-run"

        def all_succeeded() -> bool:
            return all(
                status_of(plane, "caj", namespace, n).get("state") == "Succeeded" for n in names
            )

        wait_for(all_succeeded, timeout=300, interval=1, what="every SSH job to succeed")
    finally:
        process.stop()
        print(process.log()[-20000:])
    events = server_log(log)
    starts = Counter(job for kind, job, _ in events if kind == "start")
    ends = Counter(job for kind, job, _ in events if kind == "end")
    print(
        f"{kills} SIGKILLs; {sum(starts.values())} starts and {sum(ends.values())} ends on the "
        f"server for {JOBS} jobs; at most {most_at_once(events)} at once"
    )
    assert starts == Counter(names), f"runs per job on the server: {starts}"
    assert ends == Counter(names), f"completed runs per job on the server: {ends}"
    assert most_at_once(events) <= MAX_CONCURRENT
    for name in names:
        sci = status_of(plane, "caj", namespace, name).get("sci") or {}
        assert sci.get("cpuCoreSeconds") is not None, f"{name}: the outcome's SCI was recorded"


def test_sigkilled_operator_runs_every_ssh_job_exactly_once(
    crds: Any,
    namespace: str,
    grid: tuple[Intensity, Any],
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    process = operator_for(
        crds,
        grid[1],
        tmp_path / "operator.log",
        ssh_mode="InProcess",
        namespace=namespace,
        reconcile_seconds=2,
        ssh_probe_seconds=5,
    )
    run_chaos(crds, namespace, sshd_server, process, tmp_path / "runs.log")


def test_real_node_runner_pods_deleted_and_operator_sigkilled_run_every_job_once(
    real_node_crds: Any,
    real_node_namespace: str,
    real_node_sshd: SshdServer,
    tmp_path: Path,
) -> None:
    plane, namespace = real_node_crds, real_node_namespace
    env = operator_env(
        plane.kubeconfig,
        providers="static",
        static_intensity=200,
        namespace=namespace,
        reconcile_seconds=2,
        ssh_probe_seconds=5,
        **real_node_runner_settings(plane),
    )
    deleted: list[str] = []

    def delete_a_running_runner_pod(rng: random.Random) -> None:
        pods = plane.kubectl_json("get", "pods", "-n", namespace)["items"]
        running = sorted(
            p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running"
        )
        if running:
            victim = rng.choice(running)
            plane.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")
            deleted.append(victim)

    process = OperatorProcess(env, tmp_path / "operator.log")
    run_chaos(plane, namespace, real_node_sshd, process, tmp_path / "runs.log",
              disrupt=delete_a_running_runner_pod)  # fmt: skip
    print(f"runner pods deleted mid-run: {deleted}")
    assert deleted, "a runner pod was running at some kill"
