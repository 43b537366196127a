"""The real worker node: pods really run, reach the API server, and nothing is left behind.

A pod from the Python image (built from Debian packages) runs on the real node, resolves
``kubernetes.default.svc`` through CoreDNS, reaches the API server through the ``kubernetes``
Service (kube-proxy's iptables rules) with its ServiceAccount token, and its output is read
back with ``kubectl logs`` (the API server's kubelet client). metrics.k8s.io answers for the
node. Stopping the plane removes every trace on the host, compared with what was recorded
before the node started; the plane then starts again for the tests that follow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import localplane
from .operatorproc import wait_for

pytestmark = pytest.mark.integration

# Reads the API server's /version through the in-cluster Service name, as a client in a
# pod does, and prints its gitVersion.
IN_CLUSTER_PROBE = """
import json, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
token = open(f"{sa}/token").read()
request = urllib.request.Request(
    "https://kubernetes.default.svc/version", headers={"Authorization": f"Bearer {token}"}
)
with urllib.request.urlopen(request, context=context, timeout=10) as answer:
    print("gitVersion", json.load(answer)["gitVersion"])
"""


def probe_pod(plane: Any, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **plane.real_node_placement(),
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": plane.images.python.name,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", IN_CLUSTER_PROBE],
                }
            ],
        },
    }


def pod_phase(plane: Any, namespace: str, name: str) -> str | None:
    pod = plane.kubectl_json("get", "pod", name, "-n", namespace)
    phase = pod.get("status", {}).get("phase")
    return phase if phase in ("Succeeded", "Failed") else None


def test_a_pod_on_the_real_node_reaches_the_api_server_by_its_service_name(
    real_node_plane: Any, real_node_namespace: str
) -> None:
    plane, namespace = real_node_plane, real_node_namespace
    plane.apply(probe_pod(plane, "probe"), namespace=namespace)
    phase = wait_for(lambda: pod_phase(plane, namespace, "probe"), timeout=120, what="the probe")
    logs = plane.kubectl("logs", "probe", "-n", namespace).stdout
    pod = plane.kubectl_json("get", "pod", "probe", "-n", namespace)
    assert phase == "Succeeded", (logs, pod["status"])
    assert pod["spec"]["nodeName"] == plane.real_node_name
    assert f"gitVersion {localplane.kubernetes_version()}" in logs
    # The pod's address comes from the node's CNI bridge, not kwok's fake range.
    assert pod["status"]["podIP"].startswith("10.244.250.")


def test_metrics_api_serves_the_real_node(real_node_plane: Any) -> None:
    path = f"/apis/metrics.k8s.io/v1beta1/nodes/{real_node_plane.real_node_name}"
    body = wait_for(
        lambda: (answer := real_node_plane.api("GET", path))[0] == 200 and answer[1],
        timeout=60,
        what="NodeMetrics of the real node",
    )
    assert body["usage"]["cpu"]
    assert body["usage"]["memory"]


def test_unpinned_pods_stay_on_kwok_nodes(real_node_plane: Any, real_node_namespace: str) -> None:
    plane, namespace = real_node_plane, real_node_namespace
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "unpinned"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
        namespace=namespace,
    )
    node = wait_for(
        lambda: plane.kubectl_json("get", "pod", "unpinned", "-n", namespace)["spec"].get(
            "nodeName"
        ),
        timeout=60,
        what="the unpinned pod to be scheduled",
    )
    assert node in plane.node_names
    assert node != plane.real_node_name


def test_stopping_the_real_node_plane_leaves_nothing_on_the_host(
    real_node_plane: Any, real_node_namespace: str
) -> None:
    """Runs last in this module: it stops the session's plane and starts it again."""
    plane, namespace = real_node_plane, real_node_namespace
    # A pod still running when the plane stops: its sandbox, veth, mounts and cgroups too.
    sleeper = probe_pod(plane, "sleeper")
    sleeper["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    plane.apply(sleeper, namespace=namespace)
    wait_for(
        lambda: plane.kubectl_json("get", "pod", "sleeper", "-n", namespace)["status"].get("phase")
        == "Running",
        timeout=120,
        what="the sleeper to run",
    )
    root: Path = plane.node_layout.root
    before = localplane.HostState.load(root / "host-state.json")
    plane.stop()
    try:
        assert plane.pids() == {}
        left = localplane.host_differences(before, root, localplane.REAL_NODE_BRIDGE)
        assert left == [], left
    finally:
        plane.start(timeout=300)
