"""The real node's add-ons, run as host processes: metrics-server and CoreDNS.

metrics-server serves metrics.k8s.io from the kubelet's resource metrics; CoreDNS answers
cluster DNS (kopf's in-cluster login asks for ``kubernetes.default.svc``). Both listen on the
node's host address; a selector-less Service with Endpoints at that address puts them behind
their usual names (``kube-system/metrics-server``, ``kube-system/kube-dns`` at 10.96.0.10).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from .build import coredns_bin_dir, metrics_server_bin_dir
from .realnode import CLUSTER_DNS_IP, CLUSTER_DOMAIN, REAL_NODE_LABEL, RealNodeLayout

METRICS_API_SERVICE = "v1beta1.metrics.k8s.io"


def corefile(layout: RealNodeLayout, kubeconfig: Path) -> str:
    return "\n".join(
        [
            f".:{layout.ports['coredns']} {{",
            f"    bind {layout.ip}",
            "    errors",
            f"    ready 127.0.0.1:{layout.ports['coredns-ready']}",
            f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{",
            f"        kubeconfig {kubeconfig} localplane",
            "        pods insecure",
            "        fallthrough in-addr.arpa ip6.arpa",
            "    }",
            "    forward . /etc/resolv.conf",
            "    cache 30",
            "}",
            "",
        ]
    )


def addon_argv(layout: RealNodeLayout, pki: Path) -> dict[str, list[str]]:
    kubeconfig = layout.path("metrics-server.kubeconfig")
    return {
        "metrics-server": [
            str(metrics_server_bin_dir() / "metrics-server"),
            f"--bind-address={layout.ip}",
            f"--secure-port={layout.ports['metrics-server']}",
            f"--tls-cert-file={pki / 'metrics-server-serving.crt'}",
            f"--tls-private-key-file={pki / 'metrics-server-serving.key'}",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port",
            # kwok's nodes have no kubelet to scrape.
            f"--node-selector={REAL_NODE_LABEL}=true",
            # The shortest resolution metrics-server accepts.
            "--metric-resolution=10s",
            # It must stay below the resolution.
            "--kubelet-request-timeout=5s",
            f"--cert-dir={layout.path('metrics-server')}",
            "--v=1",
        ],
        "coredns": [
            str(coredns_bin_dir() / "coredns"),
            f"-conf={layout.path('Corefile')}",
        ],
    }


def _host_service(
    name: str, ip: str, ports: list[dict[str, Any]], cluster_ip: str | None
) -> list[dict[str, Any]]:
    spec: dict[str, Any] = {
        "ports": [
            {
                "name": p["name"],
                "port": p["port"],
                "targetPort": p["target"],
                "protocol": p["protocol"],
            }
            for p in ports
        ]
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": name}},
            "spec": spec,
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": "kube-system", "labels": {"k8s-app": name}},
            "subsets": [
                {
                    "addresses": [{"ip": ip}],
                    "ports": [
                        {"name": p["name"], "port": p["target"], "protocol": p["protocol"]}
                        for p in ports
                    ],
                }
            ],
        },
    ]


def addon_objects(layout: RealNodeLayout, pki: Path) -> list[dict[str, Any]]:
    """Services, Endpoints, the metrics APIService and the API server's kubelet grant."""
    dns_port = layout.ports["coredns"]
    objects = _host_service(
        "metrics-server",
        layout.ip,
        [
            {
                "name": "https",
                "port": 443,
                "target": layout.ports["metrics-server"],
                "protocol": "TCP",
            }
        ],
        None,
    )
    objects += _host_service(
        "kube-dns",
        layout.ip,
        [
            {"name": "dns", "port": 53, "target": dns_port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "target": dns_port, "protocol": "TCP"},
        ],
        CLUSTER_DNS_IP,
    )
    objects.append(
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": METRICS_API_SERVICE},
            "spec": {
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": base64.b64encode((pki / "ca.crt").read_bytes()).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }
    )
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "carbonaware-apiserver-kubelet-client"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "kube-apiserver-kubelet-client",
                }
            ],
        }
    )
    return objects
