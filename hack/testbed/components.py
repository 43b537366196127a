"""The command lines of the control-plane components (etcd, API server, controllers, kwok)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .build import Binaries
from .common import (
    APISERVER_FEATURE_GATES,
    CLIENT_FEATURE_GATES,
    POD_CIDR,
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_CLUSTER_IP_RANGE,
)
from .kwok import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE


def control_plane_argv(
    binaries: Binaries, ports: Mapping[str, int], pki: Path, work: Path
) -> dict[str, list[str]]:
    """argv of each control-plane component, by component name."""
    etcd_client = f"http://127.0.0.1:{ports['etcd-client']}"
    etcd_peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return {
        "etcd": [
            str(binaries.etcd),
            "--name=localplane",
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=localplane={etcd_peer}",
            "--initial-cluster-state=new",
            # The API server's watch cache needs progress notifications from etcd.
            "--experimental-watch-progress-notify-interval=5s",
            # Bounds the in-memory raft log (default 100000 entries).
            "--snapshot-count=5000",
            "--logger=zap",
            "--log-outputs=stderr",
        ],
        "kube-apiserver": [
            str(binaries.kube_apiserver),
            f"--etcd-servers={etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports['kube-apiserver']}",
            # There is no kube-proxy or real endpoint for the kubernetes Service.
            "--endpoint-reconciler-type=none",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--feature-gates={APISERVER_FEATURE_GATES}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--v=1",
        ],
        "kube-controller-manager": [
            str(binaries.kube_controller_manager),
            f"--kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-controller-manager']}",
            f"--cert-dir={work / 'kube-controller-manager'}",
            "--leader-elect=false",
            # Every default controller: job, namespace, serviceaccount(-token),
            # garbagecollector, nodelifecycle, ...
            "--controllers=*",
            "--use-service-account-credentials=true",
            # Each controller has its own client identity; the default 20 QPS makes
            # setting them all up take seconds.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            f"--feature-gates={CLIENT_FEATURE_GATES}",
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--v=1",
        ],
        "kube-scheduler": [
            str(binaries.kube_scheduler),
            f"--kubeconfig={work / 'kube-scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={work / 'kube-scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={work / 'kube-scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports['kube-scheduler']}",
            f"--cert-dir={work / 'kube-scheduler'}",
            "--leader-elect=false",
            f"--feature-gates={CLIENT_FEATURE_GATES}",
            "--v=1",
        ],
        "kwok": [
            str(binaries.kwok),
            f"--kubeconfig={work / 'kwok.kubeconfig'}",
            f"--config={work / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector="
            f"{KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
            f"--cidr={POD_CIDR}",
        ],
    }


def real_node_apiserver_flags(node_ip: str, pki: Path) -> list[str]:
    """API server flags for a plane with a real node (appended: later flags win).

    The ``kubernetes`` Service gets a real endpoint (the host address; an EndpointSlice may
    not point at loopback), the API server reaches the kubelet by its InternalIP with its own
    client certificate, and the Node authorizer's partner NodeRestriction limits the kubelet.
    """
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={node_ip}",
        "--endpoint-reconciler-type=lease",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--enable-admission-plugins=NodeRestriction",
        # The aggregator calls metrics-server at its endpoint, not through the Service IP.
        "--enable-aggregator-routing=true",
    ]
