"""`make demo` end to end: everything starts, the jobs settle, a re-run reuses the plane,
and `make demo-down` leaves no process behind.

The demo's plane has the host's real worker node: its Job ``immediate-report`` and the SSH
runner pods run in real containers there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .operatorproc import REPO_ROOT, free_port, pid_alive
from .sshd import ensure_openssh_server

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "hack" / "demo.py"
CAJ_NAMES = (
    "forecast-24h-training",
    "forecast-60s-etl",
    "immediate-report",
    "ssh-cleanup-archives",
    "ssh-compress-logs",
    "threshold-low-backfill",
    "threshold-met-reindex",
)


def _run(command: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(DEMO), command],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _pids(work: Path) -> list[int]:
    state: dict[str, Any] = json.loads((work / "demo.json").read_text())
    plane: dict[str, Any] = json.loads((work / "plane" / "state.json").read_text())
    pids = [state["operator"]["pid"], state["sshd"]["pid"]]
    return pids + [c["pid"] for c in plane["components"].values()]


def _get_caj_table(output: str) -> dict[str, str]:
    """NAME -> STATE from the printed `kubectl get caj` table."""
    section = output.split("--- kubectl get caj -n carbon-demo", 1)[1].split("\n---", 1)[0]
    # The rest of the heading line, then kubectl's header, then one row per object.
    rows = [line.split() for line in section.strip().splitlines()[2:]]
    return {row[0]: row[1] for row in rows if len(row) > 1}


@pytest.fixture
def short_tmp_path() -> Iterator[Path]:
    """A temporary directory short enough for the real node's unix sockets under it (pytest's
    own, under xdist, is too deep)."""
    path = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_up_again_and_down(real_node_host_to_myself: None, short_tmp_path: Path) -> None:
    ensure_openssh_server()
    port = free_port()
    work = short_tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONAWARE_DEMO")}
    env.update(CARBONAWARE_DEMO_DIR=str(work), CARBONAWARE_DEMO_METRICS_PORT=str(port))
    try:
        first = _run("up", env)
        states = _get_caj_table(first)
        assert sorted(states) == sorted(CAJ_NAMES), first
        assert states["threshold-met-reindex"] == "Succeeded"
        assert states["threshold-low-backfill"] == "Held"
        assert states["immediate-report"] == "Succeeded"
        # A real container on the real node: its SCI comes from measured CPU.
        assert "immediate-report: runs on the real node" in first
        assert states["forecast-60s-etl"] == "Succeeded"
        assert states["ssh-compress-logs"] == "Succeeded"
        assert states["ssh-cleanup-archives"] == "Succeeded"
        # The second SSH job met the busy server (maxConcurrent 1) before it ran.
        assert "ssh-cleanup-archives         Held (TargetBusy" in first
        # The plain managed Job: held for the replayed trace's best window in its 12 h, or
        # released at once when that window is now (it depends on the time of day).
        plain = re.search(r"^carbonaware\.io/state: (\S+)$", first, re.MULTILINE)
        assert plain is not None, first
        if plain.group(1) == "Held":
            assert "carbonaware.io/planned-start-time: " in first
        else:
            assert plain.group(1) in ("Released", "Running", "Succeeded"), first
            assert "carbonaware.io/reason: LowCarbonWindow" in first
            assert "carbonaware.io/release-time: " in first
        assert 'carbonaware_servertarget_reachable{namespace="carbon-demo"' in first
        assert f"http://127.0.0.1:{port}/metrics" in first
        assert "Carbon Intensity API, NESO (CC BY 4.0)" in first
        first_pids = _pids(work)

        second = _run("up", env)
        assert "reusing the running control plane" in second
        assert sorted(_get_caj_table(second)) == sorted(CAJ_NAMES)
        operator_and_sshd = first_pids[:2]
        assert not any(pid_alive(pid) for pid in operator_and_sshd)
        assert all(pid_alive(pid) for pid in first_pids[2:]), "the plane was not reused"
        second_pids = _pids(work)
    finally:
        down = _run("down", env)
    assert "nothing left running" in down
    assert not [pid for pid in second_pids if pid_alive(pid)]
