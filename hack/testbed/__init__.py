"""The local test bed: a Kubernetes control plane on loopback with kwok's fake nodes, and
optionally a real worker node.

One module per concern: ``build`` (pinned programs, built and cached), ``pki``
(certificates, kubeconfigs), ``kwok`` (fake nodes and their pod stages), ``components``
(command lines), ``process`` (child-process bookkeeping), ``supervisor`` (the plane's
processes), ``client`` (API, kubectl), ``plane`` (LocalPlane), ``cli`` (the command line
behind ``hack/localplane.py``). For the real worker node: ``realnode`` (containerd, CNI,
kubelet, kube-proxy configuration), ``addons`` (metrics-server, CoreDNS), ``images``
(registry-free images), ``nodeup`` and ``nodeplane`` (its start and stop), ``hoststate``
(what it changes on the host, put back).
"""

from __future__ import annotations

from .build import (
    GO_MINOR,
    GO_TOOLCHAIN,
    HELM_KUBERNETES_MINOR,
    HELM_VERSION,
    KUBERNETES_COMMANDS,
    KUBERNETES_TOOLS_MODULE,
    KWOK_VERSION,
    Binaries,
    binaries,
    build_helm,
    build_kubernetes,
    build_kwok,
    ensure_built,
    ensure_etcd,
    ensure_openssl,
    find_etcd,
    go_build_environment,
    helm_bin_dir,
    kubernetes_bin_dir,
    kubernetes_version,
    kwok_bin_dir,
)
from .cli import main
from .common import (
    APISERVER_FEATURE_GATES,
    CLIENT_ENVIRONMENT,
    CLIENT_FEATURE_GATES,
    KUBERNETES_SERVICE_IP,
    POD_CIDR,
    REPO_ROOT,
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_CLUSTER_IP_RANGE,
    STATE_FILE,
    STOP_ORDER,
    KubectlError,
    LocalPlaneError,
    cache_dir,
    poll,
)
from .hoststate import HostState
from .hoststate import differences as host_differences
from .images import Image, NodeImages, ensure_images
from .kwok import (
    DEFAULT_NODES,
    DEFAULT_POD_COMPLETE_DELAY_MS,
    KWOK_NODE_ANNOTATION,
    KWOK_NODE_ANNOTATION_VALUE,
    POD_COMPLETE_DELAY_ANNOTATION,
    POD_EXIT_CODE_ANNOTATION,
    KwokNode,
    kwok_stages_yaml,
)
from .nodeup import ensure_node_built
from .pki import create_pki, write_kubeconfig
from .plane import LocalPlane, default_workdir
from .realnode import BRIDGE as REAL_NODE_BRIDGE
from .realnode import NODE_COMPONENTS, REAL_NODE_LABEL, REAL_NODE_TAINT, host_ip, pod_placement

__all__ = [
    "APISERVER_FEATURE_GATES",
    "CLIENT_ENVIRONMENT",
    "CLIENT_FEATURE_GATES",
    "DEFAULT_NODES",
    "DEFAULT_POD_COMPLETE_DELAY_MS",
    "GO_MINOR",
    "GO_TOOLCHAIN",
    "HELM_KUBERNETES_MINOR",
    "HELM_VERSION",
    "KUBERNETES_COMMANDS",
    "KUBERNETES_SERVICE_IP",
    "KUBERNETES_TOOLS_MODULE",
    "KWOK_NODE_ANNOTATION",
    "KWOK_NODE_ANNOTATION_VALUE",
    "KWOK_VERSION",
    "NODE_COMPONENTS",
    "POD_CIDR",
    "POD_COMPLETE_DELAY_ANNOTATION",
    "POD_EXIT_CODE_ANNOTATION",
    "REAL_NODE_BRIDGE",
    "REAL_NODE_LABEL",
    "REAL_NODE_TAINT",
    "REPO_ROOT",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CLUSTER_IP_RANGE",
    "STATE_FILE",
    "STOP_ORDER",
    "Binaries",
    "HostState",
    "Image",
    "KubectlError",
    "KwokNode",
    "LocalPlane",
    "LocalPlaneError",
    "NodeImages",
    "binaries",
    "build_helm",
    "build_kubernetes",
    "build_kwok",
    "cache_dir",
    "create_pki",
    "default_workdir",
    "ensure_built",
    "ensure_etcd",
    "ensure_images",
    "ensure_node_built",
    "ensure_openssl",
    "find_etcd",
    "go_build_environment",
    "helm_bin_dir",
    "host_differences",
    "host_ip",
    "kubernetes_bin_dir",
    "kubernetes_version",
    "kwok_bin_dir",
    "kwok_stages_yaml",
    "main",
    "pod_placement",
    "poll",
    "write_kubeconfig",
]
