"""The demo's pure parts (hack/demo.py, hack/demokit/): thresholds from the grid outlook,
settling, process stops."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HACK = Path(__file__).resolve().parents[3] / "hack"


def _load(name: str) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, HACK / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


demo = _load("demo")  # it puts hack/ on sys.path, where demokit is
common = importlib.import_module("demokit.common")
environment = importlib.import_module("demokit.environment")
jobs = importlib.import_module("demokit.jobs")
show = importlib.import_module("demokit.show")

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def outlook(current: float, values: list[float]) -> Any:
    points = [(NOW + timedelta(minutes=30 * i), v) for i, v in enumerate(values)]
    return jobs.GridOutlook(current, points, True)


def test_thresholds_straddle_the_intensity_now() -> None:
    grid = outlook(178, [180, 170, 150, 120, 90, 80, 95, 140, 200])
    met, waiting, met_why, waiting_why = jobs.thresholds(grid)
    assert met >= 178
    assert 80 <= waiting < 178
    # The held one names when the forecast first reaches its threshold.
    first = grid.first_at_or_below(waiting)
    assert first is not None
    assert common.hhmm(first) in waiting_why
    assert "released at once" in met_why


def test_threshold_below_the_whole_forecast_when_now_is_the_cleanest() -> None:
    met, waiting, _, waiting_why = jobs.thresholds(outlook(49, [50, 52, 60, 70]))
    assert met >= 49
    assert waiting < 50
    assert "latest start" in waiting_why


def caj(state: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x"}, "status": {"state": state, **status}}


def test_a_job_is_settled_when_held_far_ahead_or_finished_with_sci() -> None:
    far = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    soon = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
    assert show.describe_caj(caj("Held", plannedStartTime=far))[1] is True
    assert show.describe_caj(caj("Held", plannedStartTime=soon))[1] is False
    assert show.describe_caj(caj("Running"))[1] is False
    assert show.describe_caj(caj("Succeeded", sci={"totalGrams": 0.5}))[1] is True
    just_now = datetime.now(UTC).isoformat()
    assert show.describe_caj(caj("Succeeded", completionTime=just_now))[1] is False


def test_a_target_is_settled_only_when_reachable_and_idle() -> None:
    def target(reachable: str, running: int, queued: int) -> dict[str, Any]:
        return {
            "status": {
                "conditions": [{"type": "Reachable", "status": reachable}],
                "running": running,
                "queued": queued,
            }
        }

    assert show.describe_target(target("True", 0, 0))[1] is True
    assert show.describe_target(target("True", 0, 1))[1] is False
    assert show.describe_target(target("False", 0, 0))[1] is False


def test_interesting_metrics_keeps_our_nonzero_samples_only() -> None:
    text = "\n".join(
        [
            "# HELP carbonaware_jobs Jobs",
            'carbonaware_jobs{kind="Job",namespace="n",state="Held"} 1.0',
            'carbonaware_jobs{kind="Job",namespace="n",state="Failed"} 0.0',
            'carbonaware_grid_intensity_grams_per_kwh{region="GB",source="trace"} 52.0',
            "process_cpu_seconds_total 3.0",
        ]
    )
    assert show.interesting_metrics(text) == [
        'carbonaware_jobs{kind="Job",namespace="n",state="Held"} 1.0',
        'carbonaware_grid_intensity_grams_per_kwh{region="GB",source="trace"} 52.0',
    ]


def test_stop_process_stops_our_process_and_leaves_a_reused_pid_alone() -> None:
    child = subprocess.Popen(["sleep", "300"])
    ticks = demo.sshd.process_start_ticks(child.pid)
    assert ticks is not None
    assert environment.stop_process(child.pid, ticks + 1) is False  # not the process we started
    assert child.poll() is None
    assert environment.stop_process(child.pid, ticks, grace=5) is True
    # stop_process reaps its own children, so ask /proc rather than Popen.
    assert demo.sshd.process_start_ticks(child.pid) is None
    child.wait(timeout=5)


@pytest.mark.parametrize("port", [22, 2222])
def test_known_hosts_line_matches_ssh_keyscan(port: int) -> None:
    line = demo.sshd.known_hosts_line("127.0.0.1", port, "ssh-ed25519 AAAAblob comment\n")
    expected_host = "127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}"
    assert line == f"{expected_host} ssh-ed25519 AAAAblob\n"
