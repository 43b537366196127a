"""SCI from a real container's CPU: Jobs that burn one core, or idle, on the real node.

The operator runs as a process against the real-node plane; a CarbonAwareJob released at
once runs a busybox container on the real node that keeps one core busy for 40 s, another
one that sleeps. While they run, the test reads each pod's cgroup counters (``cpuacct.usage``,
the kernel's account of its CPU time) until they are gone. The
``status.sci.cpuCoreSeconds`` the operator records must match that account within 10 %,
through each CPU path the operator supports:

- metrics.k8s.io (metrics-server scraping the kubelet), sampled by the operator's loop;
- Prometheus scraping the kubelet's cAdvisor endpoint (``/metrics/cadvisor``) every 2 s.

metrics-server never shows a container's first and last seconds (its first rate needs two
kubelet readings, about 10 s apart, and the container is gone before a reading after its
last), so the operator holds the first and last rate over them. A burner sharing the host
with the rest of the suite changes speed whenever its neighbours do, and nothing can know
what it did in those seconds: through metrics.k8s.io the burner is capped at
``METRICS_API_BURNER_LIMIT``, below what the node's pods get on a loaded host, so its rate
is the same in the seconds the API cannot see as in those it can. Prometheus scrapes every
2 s, so its burner runs uncapped.

Energy and the SCI follow from the CPU figure, and the Job's pod carries the SCI annotations.
"""

from __future__ import annotations

import contextlib
import copy
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels
from carbonaware.metricsource import parse_cpu_quantity

from .operatorproc import (
    OperatorProcess,
    caj,
    free_port,
    operator_env,
    real_node_job_template,
    status_of,
    wait_for,
)
from .test_metrics_prometheus import ensure_prometheus

pytestmark = pytest.mark.integration

BURN_SECONDS = 40
METRICS_API_BURNER_LIMIT = "300m"
IDLE_SECONDS = 40
TOLERANCE = 0.10
# Below this many core-seconds (an idle container), 10 % is noise: compare absolutely.
IDLE_ABSOLUTE_CORE_SECONDS = 0.3
INTENSITY = 200
CGROUP_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


BURNER = f"timeout {BURN_SECONDS} sh -c 'while :; do :; done'; true"
IDLER = f"sleep {IDLE_SECONDS}"


@dataclass
class CgroupWatch:
    """The last CPU time seen for each pod of a namespace, in seconds, from its cgroups.

    Two threads: one lists the pods (a kubectl process, which on a loaded host can take
    seconds) to find each pod's cgroups, the other reads the counters every 0.1 s, so the
    last reading is never held back by a listing. Each pod counts the larger of its
    container's ``cpuacct.usage`` and its pod cgroup's: cgroup v1 charges CPU time to every
    ancestor as it is spent, so the pod cgroup keeps the container's total after the
    container's own cgroup is removed at exit (plus the pause container's few milliseconds).
    """

    plane: Any
    namespace: str
    seconds: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    paths: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    def discover(self) -> None:
        while not self.stop.is_set():
            pods = self.plane.kubectl_json("get", "pods", "-n", self.namespace)["items"]
            for pod in pods:
                name = pod["metadata"]["name"]
                for status in pod.get("status", {}).get("containerStatuses", []):
                    container_id = status.get("containerID", "").split("://")[-1]
                    if container_id and name not in self.paths:
                        found = list(
                            CGROUP_CPUACCT.glob(
                                f"kubepods/**/pod{pod['metadata']['uid']}/{container_id}"
                            )
                        )
                        if found:
                            self.paths[name] = (
                                found[0] / "cpuacct.usage",
                                found[0].parent / "cpuacct.usage",
                            )
            self.stop.wait(1.0)

    def read(self) -> None:
        while not self.stop.is_set():
            for name, paths in list(self.paths.items()):
                for path in paths:
                    # Once a cgroup is gone its last reading stands.
                    with contextlib.suppress(OSError, ValueError):
                        seconds = int(path.read_text()) / 1e9
                        self.seconds[name] = max(self.seconds.get(name, 0.0), seconds)
            self.stop.wait(0.1)


@pytest.fixture
def cgroup_watch(real_node_plane: Any, real_node_namespace: str) -> Iterator[CgroupWatch]:
    watch = CgroupWatch(real_node_plane, real_node_namespace)
    threads = [threading.Thread(target=work, daemon=True) for work in (watch.discover, watch.read)]
    for thread in threads:
        thread.start()
    yield watch
    watch.stop.set()
    for thread in threads:
        thread.join(timeout=10)


@dataclass
class KubeletPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="module")
def kubelet_prometheus(
    real_node_plane: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeletPrometheus]:
    """Prometheus scraping the real node's kubelet cAdvisor metrics every 2 s."""
    plane = real_node_plane
    workdir = tmp_path_factory.mktemp("kubelet-prometheus")
    port = free_port()
    pki = plane.pki
    target = f"{plane.real_node_ip}:{plane.node_layout.ports['kubelet']}"
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\n"
        "scrape_configs:\n"
        "  - job_name: kubelet-cadvisor\n"
        "    scheme: https\n"
        "    metrics_path: /metrics/cadvisor\n"
        "    tls_config:\n"
        f"      ca_file: {pki / 'ca.crt'}\n"
        f"      cert_file: {pki / 'admin.crt'}\n"
        f"      key_file: {pki / 'admin.key'}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                ensure_prometheus(),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = KubeletPrometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=20)


def run_jobs(
    plane: Any, namespace: str, tmp_path: Path, burner_limit: str | None = None, **settings: Any
) -> dict[str, Any]:
    """Run the burner (capped at ``burner_limit`` cores if given) and the idler under an
    operator; their statuses once measured."""
    env = operator_env(
        plane.kubeconfig,
        providers="static",
        static_intensity=INTENSITY,
        namespace=namespace,
        tick_seconds=2,
        **settings,
    )
    operator = OperatorProcess(env, tmp_path / "operator.log")
    operator.start()
    try:
        for name, script, limit in (("burner", BURNER, burner_limit), ("idler", IDLER, None)):
            template = real_node_job_template(
                plane, script, limit or "500m", "32Mi", cpu_limit=limit
            )
            plane.apply(
                caj(name, {"policy": "Immediate"}, jobTemplate=copy.deepcopy(template)),
                namespace=namespace,
            )
        statuses = {
            name: wait_for(
                lambda name=name: (s := status_of(plane, "caj", namespace, name)).get("sci") and s,
                timeout=BURN_SECONDS + 180,
                what=f"{name}'s SCI",
            )
            for name in ("burner", "idler")
        }
    finally:
        operator.stop()
        print(operator.log()[-4000:])
    return statuses


def job_pod(plane: Any, namespace: str, job: str) -> dict[str, Any]:
    pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
    assert len(pods) == 1, pods
    return dict(pods[0])


def burner_limit(pod: dict[str, Any]) -> str | None:
    limits = pod["spec"]["containers"][0].get("resources", {}).get("limits") or {}
    return limits.get("cpu")


def check_run(
    plane: Any, namespace: str, statuses: dict[str, Any], watch: CgroupWatch, source: str
) -> None:
    for name, status in statuses.items():
        sci = status["sci"]
        pod = job_pod(plane, namespace, status["jobName"])
        assert pod["spec"]["nodeName"] == plane.real_node_name
        accounted = watch.seconds[pod["metadata"]["name"]]
        measured = sci["cpuCoreSeconds"]
        print(f"{source} {name}: operator {measured:.3f} core-s, cgroup {accounted:.3f} core-s")
        assert source in sci["method"], sci["method"]
        if name == "burner":
            # It shares two CPUs with the rest of the suite: in a cold CI run it got 19.5
            # core-s of its 40 s uncapped. What matters is that it burned far more than the
            # idler: a quarter of what it may use.
            cap = min(parse_cpu_quantity(limit), 1.0) if (limit := burner_limit(pod)) else 1.0
            assert accounted > BURN_SECONDS * cap * 0.25, "the burner did not burn"
            assert measured == pytest.approx(accounted, rel=TOLERANCE)
        else:
            assert measured == pytest.approx(accounted, abs=IDLE_ABSOLUTE_CORE_SECONDS)
        # Energy and the SCI follow from the CPU figure.
        assert sci["operationalGrams"] == pytest.approx(
            sci["energyKWh"] * INTENSITY, rel=0.02, abs=1e-9
        )
        annotations = pod["metadata"].get("annotations", {})
        assert float(annotations[labels.SCI_GRAMS]) == pytest.approx(sci["totalGrams"], rel=1e-3)
        assert float(annotations[labels.ENERGY_KWH]) == pytest.approx(sci["energyKWh"], rel=1e-3)
    burner, idler = statuses["burner"]["sci"], statuses["idler"]["sci"]
    assert burner["energyKWh"] > idler["energyKWh"]


def test_real_node_sci_from_metrics_api_matches_the_cgroup(
    real_node_crds: Any, real_node_namespace: str, cgroup_watch: CgroupWatch, tmp_path: Path
) -> None:
    plane, namespace = real_node_crds, real_node_namespace
    statuses = run_jobs(plane, namespace, tmp_path, burner_limit=METRICS_API_BURNER_LIMIT)
    check_run(plane, namespace, statuses, cgroup_watch, "cpu=metrics.k8s.io")


def test_real_node_sci_from_kubelet_cadvisor_in_prometheus_matches_the_cgroup(
    real_node_crds: Any,
    real_node_namespace: str,
    cgroup_watch: CgroupWatch,
    kubelet_prometheus: KubeletPrometheus,
    tmp_path: Path,
) -> None:
    plane, namespace = real_node_crds, real_node_namespace
    statuses = run_jobs(plane, namespace, tmp_path, prometheus_url=kubelet_prometheus.url)
    check_run(plane, namespace, statuses, cgroup_watch, "cpu=prometheus:container")
