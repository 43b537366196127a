#!/usr/bin/env python3
"""The operator's memory in a cluster full of pods and Jobs that are not its own.

The operator watches only what is ours, filtered by the API server: Jobs labelled
``carbonaware.io/managed`` (managed plain Jobs and its own child Jobs) and SSH-runner pods.
This benchmark starts a local control plane (hack/localplane.py), creates ``--pods``
unrelated pods and ``--jobs`` unrelated suspended Jobs in a namespace of their own, then runs
the operator twice, one after the other: as shipped ("selected"), and with the server-side
label selectors removed ("everything", what it did before), and prints each run's resident
memory once its watches have listed everything, and the objects kopf was sent.

    .venv/bin/python bench/unrelated.py                 # 5,000 pods, 500 Jobs
    .venv/bin/python bench/unrelated.py --pods 1000 --jobs 0
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from planeloader import REPO_ROOT, load_localplane

NAMESPACE = "unrelated"
SETTLE_SECONDS = 20.0

# The operator as shipped, or with its watches' label selectors removed.
LAUNCHER = """
import sys
import carbonaware.handlers.startup as startup
original = startup.configure_kopf
def everything(settings):
    original(settings)
    settings.watching.label_selectors.clear()
if sys.argv[1] == "everything":
    startup.configure_kopf = everything
from carbonaware.cli import main
sys.argv = ["carbonaware", "run"]
sys.exit(main())
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pod(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"web-{index}", "labels": {"app": "web", "shard": str(index % 50)}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "env": [{"name": "SHARD", "value": str(index % 50)}],
                }
            ]
        },
    }


def job(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"etl-{index}", "labels": {"app": "etl"}},
        "spec": {
            "suspend": True,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "etl", "image": "busybox", "command": ["true"]}],
                }
            },
        },
    }


def create_all(plane: Any, path: str, bodies: list[dict[str, Any]]) -> float:
    started = time.monotonic()

    def one(body: dict[str, Any]) -> None:
        status, answer = plane.api("POST", path, body, timeout=60)
        if status not in (201, 409):
            raise RuntimeError(f"creating {body['metadata']['name']}: {status} {answer}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, bodies))
    return time.monotonic() - started


def run_operator(plane: Any, mode: str, log: Path) -> tuple[float, float]:
    """(RSS in MiB once settled, peak RSS seen) of one operator run in ``mode``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONAWARE_")}
    env.update(plane.env())
    env.update(
        KUBECONFIG=str(plane.kubeconfig),
        CARBONAWARE_METRICS_PORT="0",
        CARBONAWARE_HEALTH_PORT="0",
        CARBONAWARE_TICK_SECONDS="5",
        CARBONAWARE_PROVIDERS="static",
        CARBONAWARE_STATIC_INTENSITY="200",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, mode], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        peak = 0.0
        try:
            deadline = time.monotonic() + SETTLE_SECONDS
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(f"the operator exited: {log.read_text()[-2000:]}")
                peak = max(peak, rss_mib(process.pid))
                time.sleep(0.5)
            settled = rss_mib(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return settled, max(peak, settled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    localplane = load_localplane()
    localplane.ensure_built()
    with tempfile.TemporaryDirectory(prefix="unrelated-bench-") as tmp:
        plane = localplane.LocalPlane(Path(tmp) / "plane")
        plane.start()
        try:
            plane.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
            plane.kubectl("create", "namespace", NAMESPACE)
            base = f"/api/v1/namespaces/{NAMESPACE}/pods"
            seconds = create_all(plane, base, [pod(i) for i in range(args.pods)])
            print(f"created {args.pods} unrelated pods in {seconds:.1f} s")
            jobs_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
            seconds = create_all(plane, jobs_path, [job(i) for i in range(args.jobs)])
            print(f"created {args.jobs} unrelated suspended Jobs in {seconds:.1f} s")
            results = {}
            for mode in ("everything", "selected"):
                results[mode] = run_operator(plane, mode, Path(tmp) / f"{mode}.log")
                print(
                    f"operator watching {mode:10}: RSS {results[mode][0]:6.1f} MiB after "
                    f"{SETTLE_SECONDS:.0f} s (peak {results[mode][1]:6.1f} MiB)"
                )
            saved = results["everything"][0] - results["selected"][0]
            print(
                f"label selectors save {saved:.1f} MiB with {args.pods} pods and {args.jobs} Jobs "
                "that are not the operator's"
            )
        finally:
            plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
