"""``kubectl carbonaware`` as a user runs it: kubectl finds ``kubectl-carbonaware`` on PATH and
the plugin reads the real local control plane with a kubeconfig, while the operator holds,
releases and measures jobs. plan, explain, release, hold, cancel, report -o csv and
report --plot (a PNG whose size and colours are checked).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from carbonaware.api import labels

from .grid import Intensity, grid, operator_for
from .operatorproc import OperatorProcess, caj, condition, get, suspended_job, wait_for
from .ukapi import UkApiServer

pytestmark = pytest.mark.integration
__all__ = ["grid"]

PLUGIN_DIRECTORY = Path(sys.executable).parent  # where the package installed kubectl-carbonaware


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], tmp_path: Path
) -> Iterator[OperatorProcess]:
    intensity, server = grid
    # Clean from two hours on: a Forecast job plans its window there.
    intensity.low_from = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=2
    )
    process = operator_for(crds, server, tmp_path / "operator.log")
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


def plugin(plane: Any, server: UkApiServer, *args: str, through_kubectl: bool = False) -> str:
    """Run the plugin as a user would; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBONAWARE_", "KUBECONFIG"))}
    env.update(
        PATH=f"{PLUGIN_DIRECTORY}{os.pathsep}{env.get('PATH', '')}",
        KUBE_FEATURE_WatchListClient="false",
        # explain draws the forecast from the providers the operator is configured with.
        CARBONAWARE_PROVIDERS="ukci",
        CARBONAWARE_UKCI_BASE_URL=server.url,
    )
    env.pop("KUBERNETES_SERVICE_HOST", None)
    command = (
        [str(plane.binaries.kubectl), "carbonaware"]
        if through_kubectl
        else [str(PLUGIN_DIRECTORY / "kubectl-carbonaware")]
    )
    result = subprocess.run(
        [*command, *args, f"--kubeconfig={plane.kubeconfig}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def state(plane: Any, namespace: str, name: str) -> str | None:
    return (get(plane, "caj", namespace, name).get("status") or {}).get("state")


def test_the_plugin_against_the_real_plane(
    crds: Any,
    namespace: str,
    grid: tuple[Intensity, UkApiServer],
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    _, server = grid
    crds.apply(caj("done", {"policy": "Immediate"}), namespace=namespace)
    crds.apply(caj("train", {"policy": "Forecast", "maxDelaySeconds": 6 * 3600}),
               namespace=namespace)  # fmt: skip
    crds.apply(
        suspended_job("cron", labels={labels.MANAGED: "true"},
                      annotations={labels.POLICY: "Threshold", labels.MAX_INTENSITY: "100"}),
        namespace=namespace,
    )  # fmt: skip
    wait_for(
        lambda: (c := condition(get(crds, "caj", namespace, "train"), "Held"))
        and c["reason"] == "WaitingForLowerIntensity",
        timeout=30,
        what="the Forecast job's plan",
    )
    wait_for(
        lambda: (get(crds, "job", namespace, "cron")["metadata"].get("annotations") or {}).get(
            labels.REASON
        )
        == "WaitingForThreshold",
        timeout=30,
        what="the plain Job held",
    )

    # plan, through kubectl's plugin mechanism
    table = plugin(crds, server, "plan", "-n", namespace, through_kubectl=True)
    print(table)
    lines = {line.split()[1]: line for line in table.splitlines()[1:] if line.startswith(namespace)}
    assert {"train", "cron"} <= set(lines)
    assert set(lines) <= {"train", "cron", "done"}  # "done" is listed only while it runs
    assert "Held (WaitingForLowerIntensity)" in lines["train"]
    assert "40 gCO2e/kWh" in lines["train"]
    assert "300 gCO2e/kWh" in lines["train"]
    assert "87%" in lines["train"]  # (300 - 40) / 300
    assert "Held (WaitingForThreshold)" in lines["cron"]
    items = json.loads(plugin(crds, server, "plan", "-n", namespace, "-o", "json"))["items"]
    train = next(item for item in items if item["name"] == "train")
    assert (train["expectedWindowMean"], train["intensityNow"]) == (40, 300)
    assert train["expectedSavingPercent"] == 86.7

    # explain: the plan, the forecast drawn, why, the sources
    explained = plugin(crds, server, "explain", "train", "-n", namespace)
    print(explained)
    assert "State: Held (WaitingForLowerIntensity)" in explained
    assert "Why: WaitingForLowerIntensity: Held for the lower-carbon window" in explained
    assert "Sources: the operator's plan used ukci" in explained
    planned = [line for line in explained.splitlines() if "< planned" in line]
    assert planned
    assert all(line.split()[-3] == "40" for line in planned)

    # release, hold and cancel set the annotations; the operator acts and quotes the plugin
    assert plugin(crds, server, "release", "train", "-n", namespace).strip() == (
        "carbonawarejob.carbonaware.io/train release requested"
    )
    try:
        wait_for(lambda: state(crds, namespace, "train") == "Succeeded", timeout=60,
                 what="the released job to succeed")  # fmt: skip
    except AssertionError:
        print(crds.kubectl("get", "caj,jobs,pods", "-n", namespace, "-o", "wide").stdout)
        print(crds.kubectl("get", "events", "-n", namespace).stdout)
        print(crds.kubectl("get", "pods", "-A", "-o", "wide").stdout)
        print(json.dumps(get(crds, "caj", namespace, "train").get("status"), indent=1))
        raise
    released = condition(get(crds, "caj", namespace, "train"), "Released")
    assert released is not None
    assert released["reason"] == "ManualRelease"
    assert "kubectl-carbonaware" in released["message"]
    plugin(crds, server, "hold", "cron", "-n", namespace)
    wait_for(
        lambda: get(crds, "job", namespace, "cron")["metadata"]["annotations"][labels.REASON]
        == "HeldOnRequest",
        timeout=30,
        what="the plain Job held on request",
    )
    assert plugin(crds, server, "cancel", "cron", "-n", namespace).strip() == (
        "job.batch/cron cancel requested"
    )
    wait_for(
        lambda: get(crds, "job", namespace, "cron")["metadata"]["annotations"][labels.REASON]
        == "Cancelled",
        timeout=30,
        what="the plain Job cancelled",
    )

    # report -o csv: the two finished runs, by policy
    try:
        wait_for(lambda: state(crds, namespace, "done") == "Succeeded", timeout=120,
                 what="the Immediate job to succeed")  # fmt: skip
    except AssertionError:
        print(crds.kubectl("get", "caj,jobs,pods", "-n", namespace, "-o", "wide").stdout)
        print(json.dumps(get(crds, "caj", namespace, "done").get("status"), indent=1))
        raise
    wait_for(lambda: (get(crds, "caj", namespace, "done").get("status") or {}).get("sci"),
             timeout=60, what="the Immediate job's SCI")  # fmt: skip
    wait_for(lambda: (get(crds, "caj", namespace, "train").get("status") or {}).get("sci"),
             timeout=60, what="the released job's SCI")  # fmt: skip
    text = plugin(crds, server, "report", "--since", "1d", "-n", namespace, "-o", "csv")
    print(text)
    rows = {row["policy"]: row for row in csv.DictReader(io.StringIO(text))}
    assert set(rows) == {"Forecast", "Immediate", "(all)"}
    assert rows["(all)"]["runs"] == "2"
    for policy in ("Forecast", "Immediate"):
        sci = get(crds, "caj", namespace, "train" if policy == "Forecast" else "done")["status"][
            "sci"
        ]
        assert float(rows[policy]["emittedGrams"]) == pytest.approx(sci["totalGrams"], rel=1e-5)
        assert rows[policy]["intensitySources"] == "ukci"
    # the Forecast run started at 300 gCO2e/kWh (released early by hand): it avoided nothing
    assert float(rows["Forecast"]["avoidedGrams"] or 0.0) <= 1e-9

    # report --plot
    png = tmp_path / "report.png"
    plugin(crds, server, "report", "--since", "1d", "-n", namespace, "--plot", str(png))
    assert png.stat().st_size > 10_000
    with Image.open(png) as image:
        assert (image.format, image.size) == ("PNG", (800, 400))
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 16) or []}
    assert (0x2A, 0x9D, 0x8F) in colours  # emitted
    assert (0xBB, 0xBB, 0xBB) in colours  # counterfactual
