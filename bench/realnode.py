#!/usr/bin/env python3
"""Measure the real worker node (hack/localplane.py --real-node): start, memory, a pod.

Starts a fresh plane with the real node in a temporary directory and prints:

- the build seconds of whatever had to be built now (metrics-server, CoreDNS, the images);
- when the plane was ready, the images were imported into containerd, the node went Ready
  and metrics.k8s.io became Available, counted from the start call, and the node's Ready
  time counted from the kubelet's launch;
- the resident memory (VmRSS) of containerd, the kubelet, kube-proxy, metrics-server and
  CoreDNS once the node is ready, and of the containerd shims while one pod runs;
- the time from creating a pod on the node (busybox, `true`) to its Succeeded phase;
- how long stop() took (drain, clean-up of the host).

Usage: python bench/realnode.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from planeloader import load_localplane

localplane = load_localplane()

NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "metrics-server", "coredns")


def pod(plane: Any, name: str, command: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **plane.real_node_placement(),
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": plane.images.busybox.name,
                    "imagePullPolicy": "Never",
                    "command": command,
                }
            ],
        },
    }


def phase(plane: Any, name: str) -> str | None:
    found: str | None = plane.kubectl_json("get", "pod", name).get("status", {}).get("phase")
    return found


def shim_rss(plane: Any) -> int:
    from testbed import realnode
    from testbed.process import rss_bytes

    return sum(rss_bytes(pid) for pid in realnode.shim_pids(plane.node_layout))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="realnode-bench-") as tmp:
        plane = localplane.LocalPlane(Path(tmp) / "plane", real_node=True)
        build = plane.ensure_built()
        for name, seconds in build.items():
            print(f"build {name:32} {seconds:8.1f} s")
        started = time.monotonic()
        plane.start(timeout=300)
        print(f"{'start call to real node Ready':40} {time.monotonic() - started:8.1f} s")
        for key in (
            "plane_ready_s",
            "real_node_images_import_s",
            "real_node_images_imported_at_s",
            "real_node_ready_after_kubelet_s",
            "real_node_ready_at_s",
            "metrics_api_available_at_s",
            "real_node_plane_ready_s",
        ):
            print(f"{key:40} {plane.timings[key]:8.1f} s")
        rss = plane.rss_bytes()
        for name in NODE_COMPONENTS:
            print(f"rss {name:36} {rss[name] / 2**20:8.1f} MiB")
        try:
            created = time.monotonic()
            plane.apply(pod(plane, "bench", ["true"]))
            localplane.poll(
                lambda: True if phase(plane, "bench") == "Succeeded" else None,
                timeout=120,
                what="the bench pod to succeed",
            )
            print(f"{'pod created to Succeeded':40} {time.monotonic() - created:8.1f} s")
            plane.apply(pod(plane, "sleeper", ["sleep", "600"]))
            localplane.poll(
                lambda: True if phase(plane, "sleeper") == "Running" else None,
                timeout=120,
                what="the sleeper to run",
            )
            print(f"{'rss containerd shims, one pod':40} {shim_rss(plane) / 2**20:8.1f} MiB")
        finally:
            stopping = time.monotonic()
            plane.stop()
            print(f"{'stop() with one pod running':40} {time.monotonic() - stopping:8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
