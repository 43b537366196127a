"""Running the operator against the local control plane, as a real process or in-thread.

``OperatorProcess`` starts ``python -m carbonaware run`` with its own environment and log
file, and can be stopped gracefully or killed with SIGKILL (restart-safety tests).

Also the small helpers the test modules share: ``wait_for``, ``free_port``, ``pid_alive``,
``apt_get_install``, reading objects back (``get``, ``status_of``) and their conditions
(``condition`` on an object, ``status_condition`` on a status) and timestamps (``when``),
scraping the operator's /metrics (``scrape_metrics``), and CarbonAwareJob manifests
(``caj`` with ``BATCH_JOB_TEMPLATE``, or ``QUICK_JOB_TEMPLATE``) and suspended plain
Jobs (``suspended_job``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = REPO_ROOT / "crds"

if str(REPO_ROOT / "hack") not in sys.path:  # the test bed's package, as hack/localplane.py
    sys.path.insert(0, str(REPO_ROOT / "hack"))
from testbed.common import CRD_NAMES  # noqa: E402, F401 - re-exported
from testbed.process import free_ports  # noqa: E402

# A Job whose pod exits at once: for tests that only care that it was released and ran.
QUICK_JOB_TEMPLATE: dict[str, Any] = {
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            }
        },
    }
}
# A Job with resource requests, so the operator's SCI estimate of its run is not zero.
BATCH_JOB_TEMPLATE: dict[str, Any] = {
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c", "echo batch"],
                        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                    }
                ],
            }
        },
    }
}


def long_job_template(delay: str = "10m") -> dict[str, Any]:
    """A Job whose pod (on a kwok node) runs for ``delay`` before it completes."""
    template = copy.deepcopy(QUICK_JOB_TEMPLATE)
    template["spec"]["template"]["metadata"] = {
        "annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": delay}
    }
    return template


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range (see
    ``testbed.process.free_ports``: an ephemeral one may be taken by any connection)."""
    return free_ports(1)[0]


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (or dead) waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def apt_get_install(*packages: str) -> None:
    """Install Debian packages with apt-get; fail the test when apt-get is unusable."""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.fail(f"{', '.join(packages)}: missing, and apt-get is unusable (not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    subprocess.run(["apt-get", *lock, "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", *lock, "install", "-y", "--no-install-recommends", *packages],
        check=True,
        env=env,
        capture_output=True,
    )


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def get(plane: Any, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """One object, as ``kubectl get -o json`` returns it."""
    result: dict[str, Any] = plane.kubectl_json("get", kind, name, "-n", namespace)
    return result


def status_of(plane: Any, kind: str, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(plane, kind, namespace, name).get("status") or {})


def status_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of type ``type_`` in a status, if it has one."""
    for item in status.get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of type ``type_`` in a whole object's status, if it has one."""
    return status_condition(obj.get("status") or {}, type_)


def caj(name: str, schedule: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A CarbonAwareJob in region GB; it runs ``BATCH_JOB_TEMPLATE`` unless ``spec`` gives a
    ``jobTemplate`` or ``ssh``. ``spec`` may also override the region."""
    body: dict[str, Any] = {"region": "GB", "schedule": schedule, **spec}
    if "ssh" not in spec and "jobTemplate" not in spec:
        # A copy: a test that edits its body must not change every later test's template.
        body["jobTemplate"] = copy.deepcopy(BATCH_JOB_TEMPLATE)
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": body,
    }


def cron_job(name: str, schedule: str, run: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A CarbonAwareCronJob whose runs are ``run`` (a CarbonAwareJob from :func:`caj`)."""
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareCronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": run["spec"]}, **spec},
    }


def suspended_job(name: str, **meta: Any) -> dict[str, Any]:
    """A suspended plain Job running ``BATCH_JOB_TEMPLATE``; ``meta`` goes into its metadata."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **meta},
        "spec": {"suspend": True, **copy.deepcopy(BATCH_JOB_TEMPLATE["spec"])},
    }


def scrape_metrics(port: int, timeout: float) -> Samples:
    """Every sample of the operator's /metrics on ``port`` as {(name, sorted labels): value},
    in the order served. Raises OSError when the endpoint does not answer."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def ticked(port: int) -> bool:
    """Whether the operator serving /metrics on ``port`` has completed a refresh tick."""
    try:
        samples = scrape_metrics(port, timeout=5)
    except OSError:
        return False
    return samples.get(("carbonaware_loop_last_success_timestamp_seconds", ()), 0.0) > 0


def wait_for(
    check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def operator_env(kubeconfig: Path, **settings: Any) -> dict[str, str]:
    """The environment of an operator process: KUBECONFIG plus CARBONAWARE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONAWARE_")}
    env["KUBECONFIG"] = str(kubeconfig)
    env["PYTHONUNBUFFERED"] = "1"
    defaults = {"metrics_port": 0, "health_port": 0, "tick_seconds": 1}
    for key, value in {**defaults, **settings}.items():
        env[f"CARBONAWARE_{key.upper()}"] = str(value)
    return env


class OperatorProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path, *args: str) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "carbonaware", "run", *self.args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
        )  # fmt: skip
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up, as when a node dies or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class ScaledClock:
    """The clock of an operator run with ``CARBONAWARE_TIME_SCALE``/``_TIME_ORIGIN``,
    computed independently: origin + scale x (wall - origin)."""

    origin: datetime
    scale: float

    def now(self) -> datetime:
        return self.at(datetime.now(UTC))

    def at(self, wall: datetime) -> datetime:
        """Operator time at the wall-clock instant ``wall``."""
        return self.origin + (wall - self.origin) * self.scale

    def wall_seconds(self, operator_span: timedelta) -> float:
        """Wall-clock seconds that ``operator_span`` of operator time takes."""
        return operator_span.total_seconds() / self.scale


def real_node_runner_settings(plane: Any) -> dict[str, Any]:
    """Operator settings that run SSH runner pods on the real node from the operator image."""
    placement = plane.real_node_placement()
    return {
        "ssh_mode": "Pod",
        "runner_image": plane.images.operator.name,
        "runner_image_pull_policy": "Never",
        "runner_node_selector": json.dumps(placement["nodeSelector"]),
        "runner_tolerations": json.dumps(placement["tolerations"]),
    }


def real_node_job_template(
    plane: Any, script: str, cpu: str, memory: str, cpu_limit: str | None = None
) -> dict[str, Any]:
    """A jobTemplate whose pod runs ``script`` under busybox on the real node."""
    resources: dict[str, Any] = {"requests": {"cpu": cpu, "memory": memory}}
    if cpu_limit is not None:
        resources["limits"] = {"cpu": cpu_limit}
    container = {
        "name": "main",
        "image": plane.images.busybox.name,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "resources": resources,
    }
    pod = {**plane.real_node_placement(), "restartPolicy": "Never", "containers": [container]}
    return {"spec": {"backoffLimit": 0, "template": {"spec": pod}}}
