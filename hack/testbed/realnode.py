"""A real worker node beside the kwok nodes: containerd, runc, CNI, kubelet, kube-proxy.

Everything lives under ``<plane workdir>/node``: containerd's root, state and socket, the
kubelet's root directory and pod logs, the CNI configuration and IP allocations. The node
registers as ``system:node:<name>`` with a certificate from the plane's CA, carries the label
``carbonaware.io/real-node: "true"`` and a NoSchedule taint of the same key, so only pods
that tolerate it (and select it) land there and kwok keeps everything else.

Facts this machine taught (cgroup v1, no CAP_SYS_RESOURCE): runc may not lower
``oom_score_adj`` (containerd ``restrict_oom_score_adj``, kubelet ``oomScoreAdj: 0``); the
kubelet needs ``failCgroupV1: false`` and the cgroupfs driver; the API server reaches the
kubelet by its non-loopback InternalIP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from .common import POD_CIDR, LocalPlaneError

REAL_NODE_LABEL = "carbonaware.io/real-node"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}
DEFAULT_NODE_NAME = "real-node"
# A /24 of the cluster's pod CIDR that kwok's fake pod IPs never reach in practice.
NODE_POD_SUBNET = "10.244.250.0/24"
BRIDGE = "carbonaware0"
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = Path("/usr/lib/cni")
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "metrics-server", "coredns")
# The kubelet's built-in cAdvisor finds containerd only at its default socket (it has no flag
# for it); without it /metrics/cadvisor has no pod, namespace or container labels.
CADVISOR_CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
# Unix socket paths are limited to 108 bytes on Linux (containerd checks 104).
SOCKET_PATH_LIMIT = 100


def host_ip() -> str:
    """The host's primary non-loopback IPv4 address (the source of its default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            # No packet is sent: connecting a UDP socket only picks the route and source.
            probe.connect(("198.51.100.1", 9))
            address = str(probe.getsockname()[0])
        except OSError as error:
            raise LocalPlaneError(
                f"no non-loopback IPv4 address for the real node: {error}"
            ) from error
    if address.startswith("127."):
        raise LocalPlaneError("the host's only IPv4 address is a loopback one")
    return address


def pod_placement() -> dict[str, Any]:
    """The nodeSelector and toleration that put a pod on the real node (a pod spec's part)."""
    return {
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{**REAL_NODE_TAINT, "operator": "Equal"}],
    }


@dataclasses.dataclass(frozen=True)
class RealNodeLayout:
    """Paths, ports and names of one real node."""

    root: Path
    name: str
    ip: str
    ports: dict[str, int]

    @property
    def containerd_link(self) -> Path | None:
        """A short symlink to the containerd directory when its socket path would be too long
        for a unix socket (deep test directories); None when the real path fits."""
        if len(str(self.root / "containerd" / "containerd.sock.ttrpc")) <= SOCKET_PATH_LIMIT:
            return None
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path("/run") / f"carbonaware-{digest}"

    @property
    def containerd_socket(self) -> Path:
        return (self.containerd_link or self.root / "containerd") / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)


def containerd_config(layout: RealNodeLayout, sandbox_image: str) -> str:
    state = layout.path("containerd", "state")
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{layout.path("containerd", "root")}"',
            f'state = "{state}"',
            'disabled_plugins = ["io.containerd.snapshotter.v1.aufs",'
            ' "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
            ' "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",'
            ' "io.containerd.internal.v1.tracing"]',
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "[ttrpc]",
            f'  address = "{layout.containerd_socket}.ttrpc"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{layout.path("containerd", "opt")}"',
            f"{cri}]",
            f'  sandbox_image = "{sandbox_image}"',
            # runc may not set a negative oom_score_adj here (no CAP_SYS_RESOURCE).
            "  restrict_oom_score_adj = true",
            # Pod network namespaces under the state directory, not /var/run/netns.
            "  netns_mounts_under_state_dir = true",
            "  enable_selinux = false",
            f"{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f'  Root = "{state / "runc"}"',
            f"{cri}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{layout.cni_conf_dir}"',
            "",
        ]
    )


def cni_config(layout: RealNodeLayout) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "carbonaware",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.path("cni", "ipam")),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: RealNodeLayout, pki: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.ip,
        "port": layout.ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.ports["kubelet-healthz"],
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        # kubelet 1.36 refuses cgroup v1 unless told otherwise; this machine has only v1.
        "failCgroupV1": False,
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "podLogsDir": str(layout.path("pod-logs")),
        "registerWithTaints": [REAL_NODE_TAINT],
        "maxPods": 30,
        "serializeImagePulls": False,
        # Images come from `ctr import`, never from a registry: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }


def kube_proxy_config(layout: RealNodeLayout) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.path("kube-proxy.kubeconfig"))},
        "hostnameOverride": layout.name,
        "mode": "iptables",
        "clusterCIDR": POD_CIDR,
        "healthzBindAddress": f"127.0.0.1:{layout.ports['kube-proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{layout.ports['kube-proxy-metrics']}",
        # Leave the host's conntrack sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        # Pods reach Services backed by pods on the same bridge: masquerading makes the
        # replies come back through the host, where the DNAT is undone.
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
        "nodePortAddresses": [f"{layout.ip}/32"],
    }


def write_node_configuration(layout: RealNodeLayout, pki: Path, sandbox_image: str) -> None:
    for directory in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
        layout.path(directory).mkdir(parents=True, exist_ok=True)
    link = layout.containerd_link
    if link is not None:
        remove_containerd_link(layout)
        link.symlink_to(layout.path("containerd"))
    layout.path("containerd", "config.toml").write_text(containerd_config(layout, sandbox_image))
    (layout.cni_conf_dir / "10-carbonaware.conflist").write_text(
        json.dumps(cni_config(layout), indent=2)
    )
    # JSON is YAML: the kubelet and kube-proxy read these as their configuration files.
    layout.path("kubelet-config.yaml").write_text(json.dumps(kubelet_config(layout, pki)))
    layout.path("kube-proxy-config.yaml").write_text(json.dumps(kube_proxy_config(layout)))


def node_argv(layout: RealNodeLayout, bin_dir: Path) -> dict[str, list[str]]:
    """argv of containerd, the kubelet and kube-proxy."""
    return {
        "containerd": ["containerd", f"--config={layout.path('containerd', 'config.toml')}"],
        "kubelet": [
            str(bin_dir / "kubelet"),
            f"--config={layout.path('kubelet-config.yaml')}",
            f"--kubeconfig={layout.path('kubelet.kubeconfig')}",
            f"--root-dir={layout.path('kubelet')}",
            f"--cert-dir={layout.path('kubelet', 'pki')}",
            f"--hostname-override={layout.name}",
            f"--node-ip={layout.ip}",
            f"--node-labels={REAL_NODE_LABEL}=true",
            "--v=1",
        ],
        "kube-proxy": [
            str(bin_dir / "kube-proxy"),
            f"--config={layout.path('kube-proxy-config.yaml')}",
            "--v=1",
        ],
    }


def ctr(layout: RealNodeLayout, *args: str, timeout: float = 300) -> str:
    """Run `ctr` against the node's containerd in the CRI namespace."""
    result = subprocess.run(
        ["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise LocalPlaneError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def imported_images(layout: RealNodeLayout) -> set[str]:
    return {line.split()[0] for line in ctr(layout, "images", "list").splitlines()[1:] if line}


def import_image(layout: RealNodeLayout, archive: Path) -> None:
    ctr(layout, "images", "import", str(archive))


def remove_leftover_containers(layout: RealNodeLayout) -> None:
    """Kill and delete whatever task or container is still in containerd (best effort)."""

    def quietly(*args: str) -> None:
        base = ["ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io"]
        subprocess.run([*base, *args], capture_output=True, timeout=20, check=False)

    try:
        tasks = ctr(layout, "tasks", "list", "--quiet", timeout=20).split()
        for task in tasks:
            quietly("tasks", "kill", "--signal=SIGKILL", task)
        for item in tasks + ctr(layout, "containers", "list", "--quiet", timeout=20).split():
            quietly("tasks", "delete", "--force", item)
            quietly("containers", "delete", item)
    except (LocalPlaneError, subprocess.TimeoutExpired):
        pass


def shim_pids(layout: RealNodeLayout) -> list[int]:
    """containerd-shim processes serving this node's containerd (found by its socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"containerd-shim-runc-v2")
            and any(str(layout.containerd_socket).encode() in arg for arg in cmdline)
        ):
            pids.append(int(proc.name))
    return pids


def link_cadvisor_socket(layout: RealNodeLayout) -> bool:
    """Point containerd's default socket path at the node's own; False if the path is taken."""
    if os.path.lexists(CADVISOR_CONTAINERD_SOCKET):
        return False
    CADVISOR_CONTAINERD_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    CADVISOR_CONTAINERD_SOCKET.symlink_to(layout.containerd_socket)
    return True


def unlink_cadvisor_socket(layout: RealNodeLayout) -> None:
    if CADVISOR_CONTAINERD_SOCKET.is_symlink() and os.readlink(CADVISOR_CONTAINERD_SOCKET) == str(
        layout.containerd_socket
    ):
        CADVISOR_CONTAINERD_SOCKET.unlink()


def remove_containerd_link(layout: RealNodeLayout) -> None:
    link = layout.containerd_link
    if link is not None and link.is_symlink():
        link.unlink()
