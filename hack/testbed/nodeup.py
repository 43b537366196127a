"""Starting and stopping the real worker node as part of a LocalPlane.

Start: record the host state, containerd, image import, kubelet, kube-proxy, metrics-server,
CoreDNS, their Services and the metrics APIService; ready when the Node is Ready, the
APIService is Available and CoreDNS answers its readiness probe.

Stop, in an order that leaves nothing behind: the controllers are already gone (nothing
recreates pods), so the node's pods are deleted while the kubelet still runs (CNI DEL tears
their sandboxes down); then the kubelet and the add-ons stop, leftover containers are killed,
``kube-proxy --cleanup`` removes its chains, containerd and its shims stop, mounts under the
node's directory are unmounted, and the host state recorded at start is put back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import debian

from . import hoststate
from .addons import METRICS_API_SERVICE, addon_argv, corefile
from .build import build_lock, ensure_node_addons_built, kubernetes_bin_dir
from .common import LocalPlaneError, log, poll
from .images import NodeImages, ensure_images
from .pki import create_node_pki, node_certificates, write_kubeconfig
from .process import free_ports
from .realnode import (
    BRIDGE,
    DEFAULT_NODE_NAME,
    SOCKET_PATH_LIMIT,
    RealNodeLayout,
    host_ip,
    import_image,
    imported_images,
    node_argv,
    remove_containerd_link,
    remove_leftover_containers,
    shim_pids,
    write_node_configuration,
)

PORT_NAMES = (
    "kubelet",
    "kubelet-healthz",
    "kube-proxy-healthz",
    "kube-proxy-metrics",
    "metrics-server",
    "coredns",
    "coredns-ready",
)
NODE_STOP_ORDER = ("kubelet", "kube-proxy", "metrics-server", "coredns")
HOST_STATE_FILE = "host-state.json"
# Programs (keys of hack/debian.py's PACKAGES) the real node and its image builds need.
NODE_PACKAGES = (
    "containerd",
    "runc",
    "/usr/lib/cni/bridge",
    "iptables",
    "conntrack",
    "mmdebstrap",
    "buildah",
    "gcc",
    "/usr/lib/x86_64-linux-gnu/libc.a",
    "/bin/busybox",
)
# One real node per host: kube-proxy's chains and the kubepods cgroups are host-wide.
HOST_LOCK = Path("/run/carbonaware-real-node.json")


def new_layout(workdir: Path, name: str = DEFAULT_NODE_NAME) -> RealNodeLayout:
    # The kubelet binds unix sockets under its root directory (pod-resources/<random>): a
    # deep workdir would fail it at start-up with a bare "bind: invalid argument".
    deepest = workdir.resolve() / "node" / "kubelet" / "pod-resources" / "1234567890"
    if len(str(deepest)) > SOCKET_PATH_LIMIT:
        raise RuntimeError(
            f"the workdir {workdir} is too deep for the kubelet's unix sockets "
            f"({len(str(deepest))} > {SOCKET_PATH_LIMIT} bytes); use a shorter one"
        )
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
    return RealNodeLayout(root=workdir / "node", name=name, ip=host_ip(), ports=ports)


def ensure_node_built() -> tuple[NodeImages, dict[str, float]]:
    """metrics-server, CoreDNS and the images; build seconds of what was built now."""
    # The node's runtime and the image builders come from Debian; a fresh machine gets them here.
    try:
        debian.ensure(*NODE_PACKAGES)
    except debian.InstallError as error:
        raise LocalPlaneError(str(error)) from error
    timings = ensure_node_addons_built()
    # One build at a time per cache directory (several test workers may ask at once).
    with build_lock():
        images, image_timings = ensure_images()
    return images, {**timings, **{f"image {k}": v for k, v in image_timings.items()}}


def reset_node_directory(layout: RealNodeLayout) -> None:
    """Empty the node's directory but keep containerd's content store (imported images)."""
    hoststate.unmount_under(layout.root)
    if layout.root.is_dir():
        for child in layout.root.iterdir():
            if child.name != "containerd":
                _remove(child)
        containerd = layout.root / "containerd"
        if containerd.is_dir():
            for child in containerd.iterdir():
                if child.name != "root":
                    _remove(child)
    layout.root.mkdir(parents=True, exist_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def claim_host(workdir: Path) -> None:
    """Refuse a second real node on this host while the first one's plane lives."""
    with contextlib.suppress(OSError, ValueError):
        owner = HOST_LOCK.read_text().strip()
        if owner and owner != str(workdir) and Path(owner, "node", HOST_STATE_FILE).exists():
            raise LocalPlaneError(
                f"a real node already runs on this host (plane in {owner}); "
                f"stop it first: python hack/localplane.py down --workdir {owner}"
            )
    HOST_LOCK.write_text(str(workdir))


def release_host(workdir: Path) -> None:
    with contextlib.suppress(OSError):
        if HOST_LOCK.read_text().strip() == str(workdir):
            HOST_LOCK.unlink()


def ensure_node_pki(pki: Path, layout: RealNodeLayout) -> None:
    """The node's certificates, unless an earlier start in this workdir made them."""
    certificates = node_certificates(layout.name, layout.ip)
    if not all((pki / f"{name}.crt").is_file() for name, *_ in certificates):
        create_node_pki(pki, layout.name, layout.ip)


def prepare_node(layout: RealNodeLayout, pki: Path, server: str, images: NodeImages) -> None:
    ensure_node_pki(pki, layout)
    for client, user in (
        ("kubelet", f"system:node:{layout.name}"),
        ("kube-proxy", "system:kube-proxy"),
        ("metrics-server", "metrics-server"),
        ("coredns", "coredns"),
    ):
        write_kubeconfig(
            layout.path(f"{client}.kubeconfig"), server=server, pki=pki, client=client, user=user
        )
    write_node_configuration(layout, pki, images.pause.name)
    layout.path("Corefile").write_text(corefile(layout, layout.path("coredns.kubeconfig")))


def node_component_argv(layout: RealNodeLayout, pki: Path) -> dict[str, list[str]]:
    return {**node_argv(layout, kubernetes_bin_dir()), **addon_argv(layout, pki)}


def containerd_ready(layout: RealNodeLayout) -> bool | None:
    if not layout.containerd_socket.exists():
        return None
    result = subprocess.run(
        ["ctr", f"--address={layout.containerd_socket}", "version"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return True if result.returncode == 0 else None


def import_images(layout: RealNodeLayout, images: NodeImages) -> float:
    started = time.monotonic()
    present = imported_images(layout)
    for image in images.all():
        if image.name not in present:
            log(f"importing {image.name} into the node's containerd")
            import_image(layout, image.archive)
    return time.monotonic() - started


def http_ok(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return True if response.status == 200 else None
    except OSError:
        return None


def node_ready(api: Callable[..., tuple[int, Any]], name: str) -> bool | None:
    status, body = api("GET", f"/api/v1/nodes/{name}")
    if status != 200:
        return None
    for condition in body.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return True
    return None


def api_service_available(api: Callable[..., tuple[int, Any]]) -> bool | None:
    status, body = api("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{METRICS_API_SERVICE}")
    if status != 200:
        return None
    for condition in body.get("status", {}).get("conditions", []):
        if condition.get("type") == "Available" and condition.get("status") == "True":
            return True
    return None


def node_pods(api: Callable[..., tuple[int, Any]], name: str) -> list[tuple[str, str]]:
    status, body = api("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}")
    if status != 200:
        return []
    return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in body.get("items", [])]


def drain(api: Callable[..., tuple[int, Any]], layout: RealNodeLayout, timeout: float) -> None:
    """Delete the node's pods and wait for the kubelet to confirm (best effort)."""
    for namespace, pod in node_pods(api, layout.name):
        api(
            "DELETE",
            f"/api/v1/namespaces/{namespace}/pods/{pod}",
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
        )
    deadline = time.monotonic() + timeout
    while node_pods(api, layout.name) and time.monotonic() < deadline:
        time.sleep(0.5)
    remaining = node_pods(api, layout.name)
    if remaining:
        log(f"pods still on {layout.name} after {timeout:.0f} s: {remaining}")


def kube_proxy_cleanup(layout: RealNodeLayout) -> None:
    subprocess.run(
        [str(kubernetes_bin_dir() / "kube-proxy"), "--cleanup", "--v=0"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def stop_shims(layout: RealNodeLayout, grace: float = 5) -> None:
    pids = shim_pids(layout)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and shim_pids(layout):
        time.sleep(0.1)
    for pid in shim_pids(layout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def restore_host(layout: RealNodeLayout) -> None:
    hoststate.unmount_under(layout.root)
    remove_containerd_link(layout)
    state_file = layout.path(HOST_STATE_FILE)
    if state_file.is_file():
        hoststate.restore(hoststate.HostState.load(state_file), bridge=BRIDGE)
        state_file.unlink()


def record_host(layout: RealNodeLayout) -> None:
    state_file = layout.path(HOST_STATE_FILE)
    if not state_file.exists():
        hoststate.snapshot().save(state_file)


def leftovers(layout: RealNodeLayout, before: hoststate.HostState) -> Sequence[str]:
    return hoststate.differences(before, layout.root, BRIDGE)


__all__ = [
    "NODE_STOP_ORDER",
    "api_service_available",
    "claim_host",
    "containerd_ready",
    "drain",
    "ensure_node_built",
    "http_ok",
    "import_images",
    "kube_proxy_cleanup",
    "leftovers",
    "new_layout",
    "node_component_argv",
    "node_ready",
    "poll",
    "prepare_node",
    "record_host",
    "release_host",
    "remove_leftover_containers",
    "reset_node_directory",
    "restore_host",
    "stop_shims",
]
