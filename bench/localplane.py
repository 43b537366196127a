#!/usr/bin/env python3
"""Measure the local control plane (hack/localplane.py): start time, memory, Job latency.

Each run starts a fresh plane in a temporary directory and prints:

- how long the PKI, etcd, the API server (/readyz, counted from its own process start) and
  the whole plane (nodes Ready, default ServiceAccount present) took;
- the resident memory (VmRSS) of every component once the plane is ready, and the sum;
- the time from creating a one-pod Job to its Complete condition (the pod's simulated run
  time is the plane's default of 2 s);
- how long restart_apiserver() and stop() took.

Usage: python bench/localplane.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from planeloader import load_localplane

localplane = load_localplane()

JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: bench
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
        command: ["true"]
"""


def job_complete(plane: Any) -> bool | None:
    job = plane.kubectl_json("get", "job", "bench")
    conditions = job.get("status", {}).get("conditions", [])
    done = any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)
    return True if done else None


def one_run(workdir: Path) -> dict[str, float]:
    plane = localplane.LocalPlane(workdir)
    figures: dict[str, float] = {}
    started = time.monotonic()
    try:
        plane.start()
        figures["start_total_s"] = time.monotonic() - started
        figures.update(plane.timings)
        rss = plane.rss_bytes()
        for name, value in rss.items():
            figures[f"rss_{name}_mib"] = value / 2**20
        figures["rss_total_mib"] = sum(rss.values()) / 2**20

        created = time.monotonic()
        plane.apply(JOB)
        localplane.poll(
            lambda: job_complete(plane), timeout=60, what="the Job to complete", interval=0.1
        )
        figures["job_create_to_complete_s"] = time.monotonic() - created

        restarted = time.monotonic()
        plane.restart_apiserver()
        figures["restart_apiserver_s"] = time.monotonic() - restarted
    finally:
        stopping = time.monotonic()
        plane.stop()
        figures["stop_s"] = time.monotonic() - stopping
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    _, build_seconds = localplane.ensure_built()
    for name, seconds in build_seconds.items():
        print(f"build {name}: {seconds:.1f} s")

    runs: list[dict[str, float]] = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="localplane-bench-") as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {index + 1}/{args.runs} done", file=sys.stderr)

    keys = list(runs[0])
    width = max(len(key) for key in keys)
    header = f"{'metric':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}"
    print(
        f"local plane, {args.runs} run(s), Kubernetes {localplane.kubernetes_version()}, "
        f"kwok {localplane.KWOK_VERSION}"
    )
    print(header)
    for key in keys:
        values = [run[key] for run in runs if key in run]
        print(
            f"{key:<{width}}  {statistics.median(values):9.2f}  {min(values):9.2f}  "
            f"{max(values):9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
