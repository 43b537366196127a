"""The local control plane runs real Jobs on kwok nodes, restarts its API server and stops
without leaving processes behind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from .conftest import localplane
from .operatorproc import REPO_ROOT, pid_alive

pytestmark = pytest.mark.integration

# A functional deadline: a Job whose pod finishes ~2 s after it runs must be Complete well
# within this, polled, not a benchmark.
JOB_DEADLINE_SECONDS = 30
COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def job_manifest(name: str, *, pod_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": pod_annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "work", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
        },
    }


def true_conditions(obj: dict[str, Any]) -> set[str]:
    return {
        condition["type"]
        for condition in obj.get("status", {}).get("conditions", [])
        if condition.get("status") == "True"
    }


def wait_for_job_condition(
    plane: Any, namespace: str, name: str, condition: str, timeout: float
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job: dict[str, Any] = plane.kubectl_json("get", "job", name, "-n", namespace)
        return job if condition in true_conditions(job) else None

    result: dict[str, Any] = localplane.poll(
        check, timeout=timeout, what=f"Job {namespace}/{name} to be {condition}", interval=0.25
    )
    return result


def job_pods(plane: Any, namespace: str, job_name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = plane.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"job-name={job_name}"
    )["items"]
    return pods


def port_open(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parsed.hostname or "", parsed.port or 0)) == 0


def test_job_completes_on_a_kwok_node(local_plane: Any, namespace: str) -> None:
    local_plane.apply(job_manifest("hello"), namespace=namespace)

    job = wait_for_job_condition(
        local_plane, namespace, "hello", "Complete", timeout=JOB_DEADLINE_SECONDS
    )

    assert job["status"]["succeeded"] == 1
    [pod] = job_pods(local_plane, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    node_name = pod["spec"]["nodeName"]
    assert node_name in local_plane.node_names
    node = local_plane.kubectl_json("get", "node", node_name)
    assert node["metadata"]["annotations"][localplane.KWOK_NODE_ANNOTATION] == "fake"


def test_nodes_are_ready_with_cloud_labels_and_capacity(local_plane: Any) -> None:
    nodes = local_plane.kubectl_json("get", "nodes")["items"]

    by_name = {node["metadata"]["name"]: node for node in nodes}
    assert set(by_name) == set(local_plane.node_names)
    assert len(by_name) >= 2
    instance_types = set()
    for spec in local_plane.nodes:
        node = by_name[spec.name]
        labels = node["metadata"]["labels"]
        assert "Ready" in true_conditions(node)
        assert labels["node.kubernetes.io/instance-type"] == spec.instance_type
        assert labels["topology.kubernetes.io/region"] == spec.region
        assert labels["topology.kubernetes.io/zone"] == spec.zone
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"] == "amd64"
        for field in ("capacity", "allocatable"):
            assert node["status"][field]["cpu"] == spec.cpu
            assert node["status"][field]["memory"] == spec.memory
            assert node["status"][field]["pods"] == spec.pods
        instance_types.add(spec.instance_type)
    assert {"m5.xlarge", "n2-standard-4"} <= instance_types


def test_delay_annotation_keeps_a_pod_running(local_plane: Any, namespace: str) -> None:
    delay = {localplane.POD_COMPLETE_DELAY_ANNOTATION: "10m"}
    local_plane.apply(job_manifest("long", pod_annotations=delay), namespace=namespace)
    local_plane.apply(job_manifest("quick"), namespace=namespace)

    localplane.poll(
        lambda: True
        if [p["status"].get("phase") for p in job_pods(local_plane, namespace, "long")]
        == ["Running"]
        else None,
        timeout=JOB_DEADLINE_SECONDS,
        what="the long Job's pod to run",
    )
    # The quick Job was created after the long one and has finished by now.
    wait_for_job_condition(local_plane, namespace, "quick", "Complete", JOB_DEADLINE_SECONDS)

    long_job = local_plane.kubectl_json("get", "job", "long", "-n", namespace)
    assert not true_conditions(long_job) & {"Complete", "Failed"}
    assert long_job["status"]["active"] == 1
    [pod] = job_pods(local_plane, namespace, "long")
    assert pod["status"]["phase"] == "Running"


def test_exit_code_annotation_fails_the_job(local_plane: Any, namespace: str) -> None:
    failing = {localplane.POD_EXIT_CODE_ANNOTATION: "3"}
    local_plane.apply(job_manifest("broken", pod_annotations=failing), namespace=namespace)

    wait_for_job_condition(local_plane, namespace, "broken", "Failed", JOB_DEADLINE_SECONDS)

    [pod] = job_pods(local_plane, namespace, "broken")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_python_kubernetes_client_accepts_the_kubeconfig(local_plane: Any) -> None:
    kubernetes = pytest.importorskip("kubernetes")

    api_client = kubernetes.config.new_client_from_config(config_file=str(local_plane.kubeconfig))
    try:
        nodes = kubernetes.client.CoreV1Api(api_client).list_node()
    finally:
        api_client.close()

    assert {node.metadata.name for node in nodes.items} == set(local_plane.node_names)


def test_restart_apiserver_comes_back_on_the_same_address(local_plane: Any, namespace: str) -> None:
    server = local_plane.server
    pid_before = local_plane.pids()["kube-apiserver"]

    local_plane.restart_apiserver()

    assert local_plane.server == server
    assert local_plane.pids()["kube-apiserver"] != pid_before
    assert not pid_alive(pid_before)
    assert local_plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    # Controllers, scheduler and kwok reconnect: a Job created now still completes.
    local_plane.apply(job_manifest("after-restart"), namespace=namespace)
    wait_for_job_condition(
        local_plane, namespace, "after-restart", "Complete", JOB_DEADLINE_SECONDS
    )


def test_stop_leaves_no_process_alive(local_plane: Any, tmp_path: Path) -> None:
    plane = localplane.LocalPlane(tmp_path / "second-plane")
    try:
        plane.start()
        pids = plane.pids()
        assert set(pids) == COMPONENTS
        # A second plane runs next to the session's one on its own ports.
        assert plane.server != local_plane.server
        assert plane.kubectl("get", "--raw", "/readyz").stdout == "ok"
    finally:
        plane.stop()

    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert plane.pids() == {}
    assert not port_open(plane.server)


def test_cli_up_runs_detached_and_down_stops_it(tmp_path: Path) -> None:
    workdir = tmp_path / "cli-plane"
    script = str(REPO_ROOT / "hack" / "localplane.py")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, *args, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=180,
        )

    try:
        up = run("up")
        assert up.returncode == 0, up.stderr
        assert f"export KUBECONFIG={workdir / 'kubeconfig'}" in up.stdout.splitlines()
        state = json.loads((workdir / "state.json").read_text())
        pids = {name: component["pid"] for name, component in state["components"].items()}
        assert set(pids) == COMPONENTS
        # The plane outlived the command that started it.
        assert all(pid_alive(pid) for pid in pids.values())
        attached = localplane.LocalPlane(workdir)
        assert attached.kubectl("get", "--raw", "/readyz").stdout == "ok"
        assert run("status").returncode == 0
    finally:
        down = run("down")

    assert down.returncode == 0, down.stderr
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert run("status").returncode == 1
