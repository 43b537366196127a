"""A run's energy follows what it used: CPU beyond its request, Kepler joules, DCGM power.

On the local control plane (kwok nodes labelled m5.xlarge and n2-standard-4) the pods do not
really run, so the CPU and energy figures come from a Prometheus we control: Debian's
Prometheus scrapes, every second, a small exporter started here that serves, for the pods
of this test, the series real clusters expose in the exporters' documented formats:

- cAdvisor ``container_cpu_usage_seconds_total{namespace, pod, container}``: 1.5 cores busy;
- Kepler (0.10+) ``kepler_pod_cpu_joules_total{pod_namespace, pod_name, zone, state}``:
  20 W in the package zone, 2 W in dram; and for a third pod the same in Kepler 0.7's
  ``kepler_container_{package,dram}_joules_total{container_namespace, pod_name, mode}``;
- DCGM exporter ``DCGM_FI_DEV_POWER_USAGE{namespace, pod, gpu, UUID, modelName}``: 70 W.

The real exporters need hardware this machine lacks (RAPL, NVIDIA GPUs); the operator reads
them through the same queries either way. Counters grow from the pod's creation time, but
the exporter can only serve a pod's series once the test has seen the pod, a second or two
after it started: the expected figures count from that moment (Prometheus has no sample of
the series before it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from carbonaware.metricsource.prometheus import selector
from carbonaware.sci import machine_for_instance_type, pue_for_provider

from .operatorproc import (
    BATCH_JOB_TEMPLATE,
    OperatorProcess,
    caj,
    free_port,
    operator_env,
    status_of,
    wait_for,
)
from .test_metrics_prometheus import Prometheus, ensure_prometheus

pytestmark = pytest.mark.integration

BUSY_CORES = 1.5
KEPLER_PACKAGE_WATTS = 20.0
KEPLER_DRAM_WATTS = 2.0
GPU_WATTS = 70.0
RUN_SECONDS = "20s"
POD_COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"


@dataclass
class Meters:
    """What the exporter serves: pods by (namespace, name) with their start and meters."""

    cpu_pods: dict[tuple[str, str], float] = field(default_factory=dict)
    energy_pods: dict[tuple[str, str], float] = field(default_factory=dict)
    legacy_pods: dict[tuple[str, str], float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def exposition(self) -> str:
        now = time.time()
        lines = [
            "# TYPE container_cpu_usage_seconds_total counter",
            "# TYPE kepler_pod_cpu_joules_total counter",
            "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
            "# TYPE kepler_container_package_joules_total counter",
            "# TYPE kepler_container_dram_joules_total counter",
        ]
        with self.lock:
            for (ns, pod), start in self.cpu_pods.items():
                seconds = BUSY_CORES * max(0.0, now - start)
                lines.append(
                    f'container_cpu_usage_seconds_total{{namespace="{ns}",pod="{pod}",'
                    f'container="main",cpu="total"}} {seconds:.6f}'
                )
            for (ns, pod), start in self.energy_pods.items():
                elapsed = max(0.0, now - start)
                for zone, watts in (("package", KEPLER_PACKAGE_WATTS), ("dram", KEPLER_DRAM_WATTS)):
                    lines.append(
                        f'kepler_pod_cpu_joules_total{{pod_id="uid-{pod}",pod_name="{pod}",'
                        f'pod_namespace="{ns}",state="running",zone="{zone}",'
                        f'node_name="kwok"}} {watts * elapsed:.6f}'
                    )
                lines.append(
                    f'DCGM_FI_DEV_POWER_USAGE{{gpu="0",UUID="GPU-test",device="nvidia0",'
                    f'modelName="NVIDIA A10G",Hostname="kwok",namespace="{ns}",pod="{pod}",'
                    f'container="main"}} {GPU_WATTS}'
                )
            for (ns, pod), start in self.legacy_pods.items():
                elapsed = max(0.0, now - start)
                # Kepler 0.7: per container, split into the dynamic part and the idle share.
                for metric, watts in (
                    ("package", KEPLER_PACKAGE_WATTS),
                    ("dram", KEPLER_DRAM_WATTS),
                ):
                    for mode, share in (("dynamic", 0.75), ("idle", 0.25)):
                        lines.append(
                            f'kepler_container_{metric}_joules_total{{container_namespace="{ns}",'
                            f'pod_name="{pod}",container_name="main",container_id="c-{pod}",'
                            f'mode="{mode}"}} {watts * share * elapsed:.6f}'
                        )
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def meters() -> Iterator[tuple[Meters, int]]:
    state = Meters()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def prometheus(
    meters: tuple[Meters, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    server = Prometheus(ensure_prometheus(), tmp_path_factory.mktemp("prom"), meters[1])
    try:
        wait_for(server.ready, timeout=60, what="Prometheus to be ready")
        yield server
    finally:
        server.stop()


def _template(cpu: str) -> dict[str, Any]:
    template = json.loads(json.dumps(BATCH_JOB_TEMPLATE))
    pod = template["spec"]["template"]
    pod["metadata"] = {"annotations": {POD_COMPLETE_DELAY: RUN_SECONDS}}
    pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu, "memory": "64Mi"}}
    return template


def _pod(plane: Any, namespace: str, job: str) -> dict[str, Any] | None:
    pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")["items"]
    return pods[0] if pods else None


def _run(plane: Any, namespace: str, name: str, register: dict[tuple[str, str], float],
         meters: Meters) -> tuple[dict[str, Any], dict[str, Any], float]:  # fmt: skip
    plane.apply(caj(name, {"policy": "Immediate"}, jobTemplate=_template("100m")),
                namespace=namespace)  # fmt: skip
    job = wait_for(lambda: status_of(plane, "caj", namespace, name).get("jobName"), timeout=60,
                   what=f"{name}'s Job")  # fmt: skip
    pod = wait_for(lambda: _pod(plane, namespace, job), timeout=60, what=f"{name}'s pod")
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    with meters.lock:
        register[(namespace, pod["metadata"]["name"])] = created.timestamp()
        served_from = time.time()
    status = wait_for(lambda: (s := status_of(plane, "caj", namespace, name)).get("sci") and s,
                      timeout=120, what=f"{name}'s SCI")  # fmt: skip
    finished = _pod(plane, namespace, job)
    assert finished is not None
    return status, finished, served_from


def _window(pod: dict[str, Any]) -> tuple[float, float]:
    """(start, end) of the pod's container as the kubelet (here kwok) recorded them."""
    (container,) = pod["status"]["containerStatuses"]
    terminated = container["state"]["terminated"]
    start = datetime.fromisoformat(terminated["startedAt"].replace("Z", "+00:00")).timestamp()
    end = datetime.fromisoformat(terminated["finishedAt"].replace("Z", "+00:00")).timestamp()
    return start, end


def _over_window(
    prom: Prometheus, function: str, series: str, window: tuple[float, float]
) -> float:
    """Prometheus's own ``sum(function(series[window]))``, evaluated at the window's end."""
    start, end = window
    milliseconds = max(1, round((end - start) * 1000))
    (sample,) = prom.instant(f"sum({function}({series}[{milliseconds}ms]))", at=end)
    return float(sample["value"][1])


def _increase(prom: Prometheus, series: str, window: tuple[float, float]) -> float:
    """Prometheus's own ``increase`` of ``series`` over the run's window, evaluated at its end."""
    return _over_window(prom, "increase", series, window)


def _first_sample(
    prom: Prometheus, series: str, window: tuple[float, float], *, several: bool = False
) -> float:
    """When Prometheus first scraped ``series`` in the window (the exporter can only serve a
    pod's series once the test has seen the pod, and on a busy host the first scrape of a new
    series may come a few seconds later)."""
    start, end = window
    seconds = max(1, round(end - start))
    result = prom.api("query", query=f"{series}[{seconds}s]", time=f"{end:.3f}")["result"]
    if not several:
        assert len(result) == 1, result
    return max(float(found["values"][0][0]) for found in result)


def test_a_pod_requesting_100m_that_burns_1_5_cores_is_charged_for_what_it_used(
    crds: Any, meters: tuple[Meters, int], prometheus: Prometheus, tmp_path: Path
) -> None:
    state, _ = meters
    plane = crds
    namespace = plane.create_namespace("usage")
    env = operator_env(plane.kubeconfig, providers="static", static_intensity=200,
                       prometheus_url=prometheus.url, namespace=namespace)  # fmt: skip
    operator = OperatorProcess(env, tmp_path / "operator.log")
    operator.start()
    try:
        status, pod, _ = _run(plane, namespace, "burner", state.cpu_pods, state)
        metered, metered_pod, _ = _run(plane, namespace, "metered", state.energy_pods, state)
        legacy, legacy_pod, _ = _run(plane, namespace, "legacy", state.legacy_pods, state)
    finally:
        operator.stop()
        print(operator.log()[-6000:])
        plane.delete_namespace(namespace)

    sci = status["sci"]
    window = _window(pod)
    seconds = window[1] - window[0]
    series = selector(
        "container_cpu_usage_seconds_total",
        {"namespace": namespace, "pod": pod["metadata"]["name"]},
    )
    sampled = window[1] - _first_sample(prometheus, series, window)
    created = state.cpu_pods[(namespace, pod["metadata"]["name"])]
    print(f"burner: {seconds:.0f} s, sampled for {sampled:.1f} s, sci {sci}")
    # The operator's CPU time is the container counter's last value in the run's window,
    # plus the time from that sample to the container's end at its latest rate
    # (scrapes every second) ...
    last = _over_window(prometheus, "max_over_time", series, window)
    assert last <= sci["cpuCoreSeconds"] <= last + BUSY_CORES * 3
    # ... which is the 1.5 cores the pod kept busy since it was created, also before the
    # first scrape (timestamps have 1 s resolution) ...
    assert sci["cpuCoreSeconds"] == pytest.approx(
        BUSY_CORES * (window[1] - created), abs=BUSY_CORES * 2
    )
    # ... far above the 0.1 core requested, which used to cap it.
    assert sampled > seconds / 2
    assert sci["cpuCoreSeconds"] > 5 * 0.1 * seconds
    assert sci["energySource"] == "modelled"
    assert sci["intensitySource"] == "static"
    assert "intensity=static(static)" in sci["method"]
    node = plane.kubectl_json("get", "node", pod["spec"]["nodeName"])
    machine = machine_for_instance_type(
        node["metadata"]["labels"]["node.kubernetes.io/instance-type"]
    )
    watts = machine.power.watts(BUSY_CORES, 1.0)  # 1.5 vCPUs fully busy
    capped = machine.power.watts(0.1, 1.0)  # what charging the request alone gave
    hours = seconds / 3600
    used = sci["cpuCoreSeconds"] / seconds  # cores, on average over the run
    assert sci["cpuKWh"] == pytest.approx(machine.power.watts(used, 1.0) * hours / 1000, rel=1e-6)
    assert sci["cpuKWh"] > 5 * capped * hours / 1000
    assert watts > capped
    pue = pue_for_provider(machine.provider)
    assert sci["energyKWh"] == pytest.approx((sci["cpuKWh"] + sci["memoryKWh"]) * pue, rel=1e-6)

    energy = metered["sci"]
    window = _window(metered_pod)
    seconds = window[1] - window[0]
    name = metered_pod["metadata"]["name"]
    package = selector(
        "kepler_pod_cpu_joules_total",
        {"pod_namespace": namespace, "pod_name": name, "zone": "package"},
    )
    sampled = window[1] - _first_sample(prometheus, package, window)
    print(f"metered: {seconds:.0f} s, sampled for {sampled:.1f} s, sci {energy}")
    assert energy["energySource"] == "measured"
    # Kepler's joules over the window (20 W package, 2 W dram while sampled), as kWh.
    margin = 2 / 3.6e6
    assert energy["cpuKWh"] == pytest.approx(_increase(prometheus, package, window) / 3.6e6)
    assert energy["cpuKWh"] == pytest.approx(
        KEPLER_PACKAGE_WATTS * sampled / 3.6e6, abs=KEPLER_PACKAGE_WATTS * margin
    )
    assert energy["memoryKWh"] == pytest.approx(
        KEPLER_DRAM_WATTS * sampled / 3.6e6, abs=KEPLER_DRAM_WATTS * margin
    )
    # DCGM's 70 W gauge, its mean over the run times the run's length.
    assert energy["gpuKWh"] == pytest.approx(GPU_WATTS * seconds / 3.6e6, rel=1e-6)
    assert "cpu-energy=kepler" in energy["method"]
    assert "gpu-energy=dcgm" in energy["method"]
    total = energy["cpuKWh"] + energy["memoryKWh"] + energy["gpuKWh"]
    assert energy["energyKWh"] == pytest.approx(total * pue_for_provider(
        machine_for_instance_type(plane.kubectl_json("get", "node", metered_pod["spec"][
            "nodeName"])["metadata"]["labels"]["node.kubernetes.io/instance-type"]).provider
    ), rel=1e-6)  # fmt: skip

    # Kepler before 0.10: container counters, dynamic and idle modes summed; no GPU here.
    old = legacy["sci"]
    window = _window(legacy_pod)
    name = legacy_pod["metadata"]["name"]
    package = selector(
        "kepler_container_package_joules_total",
        {"container_namespace": namespace, "pod_name": name},
    )
    sampled = window[1] - _first_sample(prometheus, package, window, several=True)
    print(f"legacy: {window[1] - window[0]:.0f} s, sampled for {sampled:.1f} s, sci {old}")
    assert old["energySource"] == "measured"
    assert old["cpuKWh"] == pytest.approx(_increase(prometheus, package, window) / 3.6e6)
    assert old["cpuKWh"] == pytest.approx(
        KEPLER_PACKAGE_WATTS * sampled / 3.6e6, abs=KEPLER_PACKAGE_WATTS * margin
    )
    assert old["memoryKWh"] == pytest.approx(
        KEPLER_DRAM_WATTS * sampled / 3.6e6, abs=KEPLER_DRAM_WATTS * margin
    )
    assert "gpuKWh" not in old
    assert "cpu-energy=kepler-0.7" in old["method"]
