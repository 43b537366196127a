"""Helm install, for real: the chart deploys the operator as a pod on the real node.

The operator image is the project's Dockerfile built unchanged (``real_node_plane.images``);
the chart runs it with its own ServiceAccount and RBAC only, the restricted security context
and a read-only root file system, and the operator finds the API server through in-cluster
configuration (the ``kubernetes`` Service, resolved by CoreDNS). Its probes pass (the pod
turns Ready), a CarbonAwareJob goes from Held to Succeeded under it with its Job's pod on
the real node, a plain Job is held and released by a CarbonAwarePolicy through the chart's
admission webhook (the API server calls the operator pod through its Service, trusting the
CA the chart generated), ``helm test`` passes, and a real Prometheus on the host scrapes the
metrics Service.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels

from .operatorproc import (
    REPO_ROOT,
    caj,
    free_port,
    get,
    real_node_job_template,
    status_condition,
    status_of,
    wait_for,
)
from .test_metrics_prometheus import ensure_prometheus

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "helm" / "carbon-aware-operator"
RELEASE = "caw"
INTENSITY = 300


def helm(plane: Any, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(plane.binaries.helm), f"--kubeconfig={plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        # HOME too: without it client-go puts its discovery cache in ./.kube of the checkout.
        env={**plane.env(), "HOME": str(plane.workdir / "helm-home"),
             "HELM_CACHE_HOME": str(plane.workdir / "helm-cache"),
             "HELM_CONFIG_HOME": str(plane.workdir / "helm-config"),
             "HELM_DATA_HOME": str(plane.workdir / "helm-data")},
    )  # fmt: skip
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def release(real_node_plane: Any, real_node_namespace: str, tmp_path: Path) -> Iterator[str]:
    """The chart installed into the namespace, uninstalled afterwards."""
    plane, namespace = real_node_plane, real_node_namespace
    image = plane.images.operator.name
    repository, tag = image.rsplit(":", 1)
    placement = plane.real_node_placement()
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "nodeSelector": placement["nodeSelector"],
        "tolerations": placement["tolerations"],
        "watchScope": "ReleaseNamespace",
        "operator": {"tickSeconds": 2},
        "providers": {"chain": ["static"], "static": {"intensity": INTENSITY}},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(json.dumps(values))
    helm(plane, "install", RELEASE, str(CHART), "--namespace", namespace,
         "--values", str(values_file), "--wait", "--timeout", "240s")  # fmt: skip
    try:
        yield RELEASE
    finally:
        helm(plane, "uninstall", RELEASE, "--namespace", namespace, "--wait")


def operator_pod(plane: Any, namespace: str) -> dict[str, Any]:
    pods = plane.kubectl_json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return dict(pods[0])


def prometheus_scrape(
    workdir: Path, target: str, expression: str, timeout: float = 90
) -> list[dict[str, Any]]:
    """Start Prometheus scraping `target`, wait until `expression` has a result, stop it."""
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: carbon-aware-operator\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [ensure_prometheus(), f"--config.file={config}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def query() -> list[dict[str, Any]] | None:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expression}
        )
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                result = json.loads(answer.read())["data"]["result"]
        except OSError:
            return None
        return list(result) or None

    try:
        return wait_for(query, timeout=timeout, what=f"Prometheus to have {expression}")
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_real_node_helm_install_runs_the_operator_image_with_the_charts_rbac(
    real_node_crds: Any, real_node_namespace: str, release: str, tmp_path: Path
) -> None:
    plane, namespace = real_node_crds, real_node_namespace
    pod = operator_pod(plane, namespace)
    spec = pod["spec"]
    # The pod runs the operator image on the real node, as the chart's ServiceAccount.
    assert spec["nodeName"] == plane.real_node_name
    assert spec["containers"][0]["image"] == plane.images.operator.name
    assert spec["serviceAccountName"] == f"{release}-carbon-aware-operator"
    security = spec["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    # Liveness and readiness pass: Ready, and never restarted.
    (container,) = pod["status"]["containerStatuses"]
    assert container["ready"] is True, pod["status"]
    assert container["restartCount"] == 0
    # In-cluster configuration: the operator reached the API server through the Service.
    log = plane.kubectl("logs", pod["metadata"]["name"], "-n", namespace).stdout
    assert "Traceback" not in log, log

    # A held job (the grid is above its threshold) is released at its deadline and runs.
    plane.apply(
        caj(
            "held",
            {"policy": "Threshold", "maxIntensity": INTENSITY // 2, "maxDelaySeconds": 15,
             "expectedDurationSeconds": 10},
            jobTemplate=real_node_job_template(plane, "echo carbon-aware; sleep 3", "100m", "16Mi"),
        ),
        namespace=namespace,
    )  # fmt: skip
    held = wait_for(
        lambda: (s := status_of(plane, "caj", namespace, "held")).get("state") == "Held" and s,
        timeout=60,
        what="the job to be Held",
    )
    assert status_condition(held, "Held") is not None
    done = wait_for(
        lambda: (s := status_of(plane, "caj", namespace, "held")).get("state")
        in ("Succeeded", "Failed")
        and s,
        timeout=180,
        what="the job to finish",
    )
    assert done["state"] == "Succeeded", done
    job_pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l",
                                  f"job-name={done['jobName']}")["items"]  # fmt: skip
    assert [p["spec"]["nodeName"] for p in job_pods] == [plane.real_node_name]
    assert done["sci"]["cpuCoreSeconds"] >= 0

    # A plain Job, nothing carbon-aware in it, is held by the namespace's CarbonAwarePolicy
    # through the chart's webhook, then released at its maximum delay and run on the node.
    hold = {"policy": "Threshold", "maxIntensity": INTENSITY // 2, "maxDelaySeconds": 15,
            "expectedDurationSeconds": 10}  # fmt: skip
    plane.apply({"apiVersion": "carbonaware.io/v1alpha1", "kind": "CarbonAwarePolicy",
                 "metadata": {"name": "hold-batch"}, "spec": {"mode": "Enforce", "schedule": hold}},
                namespace=namespace)  # fmt: skip
    template = real_node_job_template(plane, "echo governed", "100m", "16Mi")
    plane.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "plain"},
                 "spec": template["spec"]}, namespace=namespace)  # fmt: skip
    plain = get(plane, "job", namespace, "plain")
    assert plain["spec"]["suspend"] is True, plain["metadata"]
    assert plain["metadata"]["annotations"][labels.GOVERNING_POLICY] == "hold-batch"
    wait_for(lambda: get(plane, "job", namespace, "plain").get("status", {}).get("succeeded"),
             timeout=120, what="the governed Job released and run")  # fmt: skip
    released = get(plane, "job", namespace, "plain")["metadata"]["annotations"]
    assert released[labels.REASON] == "DeadlineReached"

    # helm test: a pod from the operator image fetches /metrics through the Service.
    tested = helm(plane, "test", release, "--namespace", namespace, "--timeout", "180s")
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout

    # A real Prometheus scrapes the metrics Service (its cluster IP, through kube-proxy).
    service = plane.kubectl_json("get", "service", f"{release}-carbon-aware-operator",
                                 "-n", namespace)  # fmt: skip
    target = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    result = prometheus_scrape(tmp_path, target, "carbonaware_jobs")
    assert result, "no carbonaware_jobs series scraped"
