"""Starting and stopping what the demo runs: its processes, the Python environment, the local
control plane, the namespace and the objects applied to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import localplane
import sshd
from demokit.common import (
    CRDS,
    NAMESPACE,
    REPO_ROOT,
    VENV,
    VENV_PYTHON,
    DemoError,
    note,
    poll,
    step,
)
from testbed.common import CRD_NAMES

# --------------------------------------------------------------------------- processes


def stop_process(pid: int, start_ticks: int, *, grace: float = 30) -> bool:
    """SIGTERM the process if it is still the one we started, SIGKILL after ``grace``.

    Returns whether it was running. A PID now used by another process is left alone.
    """
    if not pid or sshd.process_start_ticks(pid) != start_ticks:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for sig_after in (grace, 10.0):
        deadline = time.monotonic() + sig_after
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if sshd.process_start_ticks(pid) != start_ticks:
                return True
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise DemoError(f"process {pid} did not exit after SIGKILL")


def stop_operator(state: dict[str, Any]) -> None:
    operator = state.get("operator") or {}
    if stop_process(int(operator.get("pid") or 0), int(operator.get("start_ticks") or 0)):
        note(f"stopped the operator (pid {operator['pid']})")


def stop_server(state: dict[str, Any]) -> None:
    recorded = state.get("sshd")
    if not recorded:
        return
    server = sshd.SshdServer.from_json(recorded)
    if server.alive():
        sshd.stop_sshd(server)
        note(f"stopped sshd (pid {server.pid})")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- bootstrap


def venv_ready() -> bool:
    """The venv imports this checkout's package and its dependencies."""
    check = (
        "import pathlib, sys, carbonaware, kopf, asyncssh, yaml, prometheus_client;"
        f"sys.exit(0 if pathlib.Path(carbonaware.__file__).resolve().is_relative_to("
        f"pathlib.Path({str(REPO_ROOT / 'operator')!r}).resolve()) else 1)"
    )
    result = subprocess.run([str(VENV_PYTHON), "-c", check], capture_output=True, check=False)
    return result.returncode == 0


def ensure_venv() -> None:
    """Create .venv as ``make venv`` does (``hack/venv.py``: the dependencies from a cache,
    the package editable) when it is missing or cannot import this checkout's package."""
    if VENV_PYTHON.exists() and venv_ready():
        return
    step(f"creating the Python environment {VENV.relative_to(REPO_ROOT)} (hack/venv.py)")
    subprocess.run([sys.executable, str(REPO_ROOT / "hack" / "venv.py"), str(VENV)], check=True)
    if not venv_ready():
        raise DemoError(f"{VENV_PYTHON} still cannot import carbonaware after hack/venv.py")


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- the plane


def ensure_plane(work: Path) -> tuple[Any, bool]:
    """The demo's plane, reused when it is healthy, else started; returns (plane, reused)."""
    plane = localplane.LocalPlane(work / "plane", real_node=True)
    expected = len(localplane.STOP_ORDER) + len(localplane.NODE_COMPONENTS)
    if plane.node_layout is not None and len(plane.pids()) == expected and plane._api_ready():
        step(f"reusing the running control plane ({plane.server}) and its real node")
        plane.ensure_built()
        plane.import_images()
        return plane, True
    if plane.is_running():
        note("stopping what is left of an earlier control plane")
        plane.stop()
    found = localplane.binaries(require=False)
    missing = [
        path.name
        for path in (found.kube_apiserver, found.kubectl, found.kwok, found.helm)
        if not path.is_file()
    ]
    if missing:
        step(
            f"building the local control plane: Kubernetes {localplane.kubernetes_version()} "
            f"(kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), kwok "
            f"{localplane.KWOK_VERSION} and Helm {localplane.HELM_VERSION}, from source with Go"
        )
        note("The demo needs a real Kubernetes API server (no Docker): kwok plays most nodes,")
        note("one real worker node (containerd, kubelet) runs the pods whose CPU is measured.")
        note("The first build takes up to about 25 minutes on 2 cores (less with a warm Go")
        note("build cache); the binaries and images are cached in")
        note(f"{localplane.cache_dir()} and reused by every later run.")
    plane.ensure_built()
    step(
        "starting the local control plane (etcd, kube-apiserver, controller-manager, kwok) "
        "and a real worker node (containerd, kubelet, kube-proxy, metrics-server, CoreDNS)"
    )
    plane.start(detach=True, timeout=300)
    note(
        f"ready in {plane.timings['real_node_plane_ready_s']:.1f} s at {plane.server}; "
        f"real node {plane.real_node_name} at {plane.real_node_ip}"
    )
    return plane, False


def apply_crds(plane: Any) -> None:
    plane.kubectl("apply", "-f", str(CRDS))
    for crd in CRD_NAMES:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def fresh_namespace(plane: Any) -> None:
    found = plane.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    if found.stdout.strip():
        step(f"deleting the namespace {NAMESPACE} of the previous run")
        plane.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    plane.kubectl("create", "namespace", NAMESPACE)

    def default_account() -> bool | None:
        result = plane.kubectl(
            "get", "serviceaccount", "default", "-n", NAMESPACE, "--ignore-not-found", "-o", "name"
        )
        return True if result.stdout.strip() else None

    poll(default_account, timeout=30, what=f"the default ServiceAccount in {NAMESPACE}")


def apply_objects(plane: Any, objects: Sequence[dict[str, Any]]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(document))
