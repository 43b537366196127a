"""SSH jobs while the operator is SIGKILLed again and again: each runs exactly once.

A real OpenSSH server runs the jobs; each job's script appends ``start`` and ``end`` lines
with the time to a log on the server, so the count comes from the server itself, not from
the operator. The operator (in-process SSH mode: its own tasks follow the runs, so every
kill cuts every connection) is killed with SIGKILL at seeded random moments while runs are
going and restarted at once. Afterwards every job has Succeeded, every job started exactly
once and ended exactly once on the server, and never more than ``maxConcurrent`` ran at a
time.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from .grid import Intensity, grid, operator_for
from .manifests import KEY_SECRET, key_secret, server_target, ssh_job
from .operatorproc import status_of, wait_for
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


def test_sigkilled_operator_runs_every_ssh_job_exactly_once(
    crds: Any,
    namespace: str,
    grid: tuple[Intensity, Any],
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed {seed}")
    log = tmp_path / "runs.log"
    crds.apply(key_secret(KEY_SECRET, sshd_server.client_private_key), namespace=namespace)
    crds.apply(server_target("box", sshd_server, maxConcurrent=MAX_CONCURRENT), namespace=namespace)
    process = operator_for(
        crds,
        grid[1],
        tmp_path / "operator.log",
        ssh_mode="InProcess",
        namespace=namespace,
        reconcile_seconds=2,
        ssh_probe_seconds=5,
    )
    process.start()
    names = [f"run-{index}" for index in range(JOBS)]
    try:
        for name in names:
            env = [{"name": "JOB", "value": name}, {"name": "LOG", "value": str(log)}]
            crds.apply(ssh_job(name, "box", script=SCRIPT, env=env), namespace=namespace)
        kills = 0
        deadline = time.monotonic() + 300
        while kills < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(2.0, 6.0))
            if any(kind == "start" for kind, _, _ in server_log(log)):
                process.kill()
                kills += 1
                process.start()
        assert kills == KILLS, "the runs ended before every kill could land mid-run"

        def all_succeeded() -> bool:
            return all(
                status_of(crds, "caj", namespace, n).get("state") == "Succeeded" for n in names
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
        sci = status_of(crds, "caj", namespace, name).get("sci") or {}
        assert sci.get("cpuCoreSeconds") is not None, f"{name}: the outcome's SCI was recorded"
