#!/usr/bin/env python3
"""``make demo``: the operator on a local Kubernetes control plane, with example jobs.

Nothing here needs Docker, a cloud account or a public carbon API:

1. the Python environment ``.venv`` (created, and ``pip install -e .``, when missing);
2. a local control plane (``hack/localplane.py``: etcd, kube-apiserver, controller-manager,
   scheduler and kwok playing most nodes) with one real worker node (containerd, kubelet,
   kube-proxy, metrics-server, CoreDNS), built from source once and then cached, started
   detached in a work directory under the cache, with the CRDs applied;
3. a local OpenSSH server on this host's address as the "company server" (``hack/sshd.py``),
   with a Secret holding the client key and a ServerTarget with its host key; SSH jobs run
   from runner pods (the operator's own image) on the real node;
4. the operator (``python -m carbonaware run``) in the background, replaying the shipped
   GB 2024 grid-intensity trace mapped onto today;
5. the example jobs of ``examples/`` in the namespace ``carbon-demo`` (``immediate-report``
   in a real container on the real node, burning one core, so its SCI comes from measured
   CPU; the other Jobs on kwok); then it waits until they settle and prints the jobs,
   their SCI, the ServerTarget, metrics and what to try.

Command line (the Makefile calls it)::

    python3 hack/demo.py up      # make demo       (again: restarts the demo, reuses the plane)
    python3 hack/demo.py down    # make demo-down  (stops the operator, sshd and the plane)

Work directory: ``$CARBONAWARE_DEMO_DIR``, default ``<cache>/demo`` where ``<cache>`` is
``$CARBONAWARE_CACHE_DIR`` or ``~/.cache/carbon-aware-operator``. Metrics are served on
``$CARBONAWARE_DEMO_METRICS_PORT`` (default 9808).

``up`` and ``down`` start with the standard library only; ``up`` continues under
``.venv/bin/python`` once the environment exists.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

HACK = Path(__file__).resolve().parent
REPO_ROOT = HACK.parent
sys.path.insert(0, str(HACK))

import localplane  # noqa: E402 - hack/ is not a package
import sshd  # noqa: E402
from testbed.common import CRD_NAMES  # noqa: E402

T = TypeVar("T")

VENV = REPO_ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
EXAMPLES = REPO_ROOT / "examples"
CRDS = REPO_ROOT / "crds"
NAMESPACE = "carbon-demo"
REGION = "GB"
TICK_SECONDS = 5
SSH_PROBE_SECONDS = 30
DEFAULT_METRICS_PORT = 9808
# How long the jobs may take to settle after they are applied (most take about a minute).
SETTLE_TIMEOUT_SECONDS = 240
# A Held job whose planned start is closer than this is still expected to move.
SOON_SECONDS = 90
STATE_FILE = "demo.json"
STARTED_ENV = "CARBONAWARE_DEMO_STARTED_AT"
ATTRIBUTION = "Carbon Intensity API, NESO (CC BY 4.0)"

# Applied together first; the SSH jobs follow once the ServerTarget is reachable.
CLUSTER_JOBS = (
    "forecast-24h-training",
    "forecast-60s-etl",
    "threshold-met-reindex",
    "threshold-low-backfill",
    "immediate-report",
)
PLAIN_JOB = "plain-nightly-backup"
# Runs in a real container on the real node (the others stay on kwok).
REAL_NODE_JOB = "immediate-report"
REAL_NODE_BURN_SECONDS = 30
SSH_FIRST = "ssh-compress-logs"
SSH_SECOND = "ssh-cleanup-archives"
SERVER_TARGET_FILE = EXAMPLES / "servertarget.yaml"


class DemoError(RuntimeError):
    """The demo could not be started or stopped; the message says what to do."""


# --------------------------------------------------------------------------- output


_T0 = float(os.environ.get(STARTED_ENV) or time.time())


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


def heading(title: str) -> None:
    print(f"\n--- {title} " + "-" * max(0, 86 - len(title)), flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, like kubectl's tables."""
    rows = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- paths, state


def workdir() -> Path:
    explicit = os.environ.get("CARBONAWARE_DEMO_DIR")
    return Path(explicit).expanduser() if explicit else localplane.cache_dir() / "demo"


def metrics_port() -> int:
    return int(os.environ.get("CARBONAWARE_DEMO_METRICS_PORT") or DEFAULT_METRICS_PORT)


def load_state(work: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((work / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state


def save_state(work: Path, state: dict[str, Any]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, work / STATE_FILE)


# --------------------------------------------------------------------------- processes


def stop_process(pid: int, start_ticks: int, *, grace: float = 30) -> bool:
    """SIGTERM the process if it is still the one we started, SIGKILL after ``grace``.

    Returns whether it was running. A PID now used by another process is left alone.
    """
    if not pid or sshd.process_start_ticks(pid) != start_ticks:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for sig_after in (grace, 10.0):
        deadline = time.monotonic() + sig_after
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if sshd.process_start_ticks(pid) != start_ticks:
                return True
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise DemoError(f"process {pid} did not exit after SIGKILL")


def stop_operator(state: dict[str, Any]) -> None:
    operator = state.get("operator") or {}
    if stop_process(int(operator.get("pid") or 0), int(operator.get("start_ticks") or 0)):
        note(f"stopped the operator (pid {operator['pid']})")


def stop_server(state: dict[str, Any]) -> None:
    recorded = state.get("sshd")
    if not recorded:
        return
    server = sshd.SshdServer.from_json(recorded)
    if server.alive():
        sshd.stop_sshd(server)
        note(f"stopped sshd (pid {server.pid})")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- bootstrap


def _venv_ready() -> bool:
    """The venv imports this checkout's package and its dependencies."""
    check = (
        "import pathlib, sys, carbonaware, kopf, asyncssh, yaml, prometheus_client;"
        f"sys.exit(0 if pathlib.Path(carbonaware.__file__).resolve().is_relative_to("
        f"pathlib.Path({str(REPO_ROOT / 'operator')!r}).resolve()) else 1)"
    )
    result = subprocess.run([str(VENV_PYTHON), "-c", check], capture_output=True, check=False)
    return result.returncode == 0


def _apt_install(*packages: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]
    subprocess.run([*apt, "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(
        [*apt, "install", "-y", "--no-install-recommends", *packages],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr}")


def ensure_venv() -> None:
    """Create .venv and install the package into it (editable) when either is missing."""
    if not VENV_PYTHON.exists():
        step(f"creating the Python environment {VENV.relative_to(REPO_ROOT)}")
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(VENV)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            # Debian ships venv's ensurepip separately.
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            note(f"installing python{version}-venv from Debian")
            _apt_install(f"python{version}-venv")
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not _venv_ready():
        step("installing carbon-aware-operator into .venv (pip install -e .)")
        subprocess.run(
            [str(VENV_PYTHON), "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)],
            check=True,
            cwd=REPO_ROOT,
        )
        if not _venv_ready():
            raise DemoError(f"{VENV_PYTHON} still cannot import carbonaware after pip install")


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --------------------------------------------------------------------------- the plane


def ensure_plane(work: Path) -> tuple[Any, bool]:
    """The demo's plane, reused when it is healthy, else started; returns (plane, reused)."""
    plane = localplane.LocalPlane(work / "plane", real_node=True)
    expected = len(localplane.STOP_ORDER) + len(localplane.NODE_COMPONENTS)
    if plane.node_layout is not None and len(plane.pids()) == expected and plane._api_ready():
        step(f"reusing the running control plane ({plane.server}) and its real node")
        plane.ensure_built()
        plane.import_images()
        return plane, True
    if plane.is_running():
        note("stopping what is left of an earlier control plane")
        plane.stop()
    found = localplane.binaries(require=False)
    missing = [
        path.name
        for path in (found.kube_apiserver, found.kubectl, found.kwok, found.helm)
        if not path.is_file()
    ]
    if missing:
        step(
            f"building the local control plane: Kubernetes {localplane.kubernetes_version()} "
            f"(kube-apiserver, kube-controller-manager, kube-scheduler, kubectl), kwok "
            f"{localplane.KWOK_VERSION} and Helm {localplane.HELM_VERSION}, from source with Go"
        )
        note("The demo needs a real Kubernetes API server (no Docker): kwok plays most nodes,")
        note("one real worker node (containerd, kubelet) runs the pods whose CPU is measured.")
        note("The first build takes up to about 25 minutes on 2 cores (less with a warm Go")
        note("build cache); the binaries and images are cached in")
        note(f"{localplane.cache_dir()} and reused by every later run.")
    plane.ensure_built()
    step(
        "starting the local control plane (etcd, kube-apiserver, controller-manager, kwok) "
        "and a real worker node (containerd, kubelet, kube-proxy, metrics-server, CoreDNS)"
    )
    plane.start(detach=True, timeout=300)
    note(
        f"ready in {plane.timings['real_node_plane_ready_s']:.1f} s at {plane.server}; "
        f"real node {plane.real_node_name} at {plane.real_node_ip}"
    )
    return plane, False


def apply_crds(plane: Any) -> None:
    plane.kubectl("apply", "-f", str(CRDS))
    for crd in CRD_NAMES:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")


def fresh_namespace(plane: Any) -> None:
    found = plane.kubectl("get", "namespace", NAMESPACE, "--ignore-not-found", "-o", "name")
    if found.stdout.strip():
        step(f"deleting the namespace {NAMESPACE} of the previous run")
        plane.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
    plane.kubectl("create", "namespace", NAMESPACE)

    def default_account() -> bool | None:
        result = plane.kubectl(
            "get", "serviceaccount", "default", "-n", NAMESPACE, "--ignore-not-found", "-o", "name"
        )
        return True if result.stdout.strip() else None

    poll(default_account, timeout=30, what=f"the default ServiceAccount in {NAMESPACE}")


def apply_objects(plane: Any, objects: Sequence[dict[str, Any]]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(document))


def get_json(plane: Any, *args: str) -> Any:
    return plane.kubectl_json(*args, "-n", NAMESPACE)


# --------------------------------------------------------------------------- manifests


def load_manifest(path: Path) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def job_manifest(name: str) -> dict[str, Any]:
    return load_manifest(EXAMPLES / "jobs" / f"{name}.yaml")


def server_objects(server: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Secret with the client key and the ServerTarget pointing at the local sshd."""
    target = load_manifest(SERVER_TARGET_FILE)
    ref = target["spec"]["privateKeySecretRef"]
    target["spec"].update(
        host=server.host, port=server.port, user=server.user, knownHosts=server.known_hosts
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ref["name"], "labels": {"app.kubernetes.io/part-of": "carbon-demo"}},
        "type": "kubernetes.io/ssh-auth",
        "stringData": {ref.get("key", "ssh-privatekey"): server.client_private_key},
    }
    return secret, target


def on_real_node(plane: Any, manifest: dict[str, Any], seconds: int) -> dict[str, Any]:
    """The job's pod on the real node: the busybox image keeping one core busy for `seconds`,
    so its SCI comes from a real container's CPU (metrics-server) rather than a kwok pod."""
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod.update(plane.real_node_placement())
    (container,) = pod["containers"]
    container.update(
        image=plane.images.busybox.name,
        imagePullPolicy="Never",
        command=["sh", "-c", f"echo building the report; timeout {seconds} sh -c "
                 "'while :; do :; done'; echo done"],
    )  # fmt: skip
    return manifest


def ssh_job(name: str, data_dir: Path) -> dict[str, Any]:
    """An SSH example with DATA_DIR pointing into the demo's work directory."""
    manifest = job_manifest(name)
    for item in manifest["spec"]["ssh"].get("env", []):
        if item["name"] == "DATA_DIR":
            item["value"] = str(data_dir)
    return manifest


# --------------------------------------------------------------------------- the grid


class GridOutlook:
    """What the replayed trace says now and over the next 24 hours (as the operator sees it)."""

    def __init__(self, current: float, points: list[tuple[datetime, float]], is_actual: bool):
        self.current = current
        self.points = points
        self.current_is_actual = is_actual

    @property
    def minimum(self) -> tuple[datetime, float]:
        return min(self.points, key=lambda point: point[1])

    def first_at_or_below(self, value: float) -> datetime | None:
        return next((start for start, v in self.points if v <= value), None)


def grid_outlook(settings: Any) -> GridOutlook:
    import asyncio

    from carbonaware.providers.base import utc_now
    from carbonaware.providers.factory import build_provider

    async def read() -> GridOutlook:
        chain = build_provider(settings)
        try:
            now = utc_now()
            current = await chain.current(REGION)
            forecast = await chain.forecast(REGION, now, now + timedelta(hours=24))
        finally:
            await chain.aclose()
        points = [(point.start, float(point.intensity)) for point in forecast]
        return GridOutlook(float(current.intensity), points, not current.is_forecast)

    return asyncio.run(read())


def thresholds(outlook: GridOutlook) -> tuple[int, int, str, str]:
    """maxIntensity for the job that is met now and for the one that waits, with why."""
    now_value = outlook.current
    met = int(math.ceil((now_value + 10) / 10) * 10)
    low_start, low_value = outlook.minimum
    if low_value < now_value - 10:
        # Between the lowest forecast and now: held until the forecast first reaches it.
        waiting = int((low_value + 0.4 * (now_value - low_value)) // 5 * 5)
        waiting = max(min(waiting, int(now_value) - 5), 0)
        first = outlook.first_at_or_below(waiting)
        when = f"forecast to reach it at {hhmm(first)}" if first else "not in the forecast"
        why = f"{waiting} g < {now_value:.0f} g now: held; {when}"
    else:
        # The grid is about as clean now as it will be today: this one waits all day.
        waiting = max(int(low_value * 0.6) // 5 * 5, 0)
        why = (
            f"{waiting} g is below the whole 24 h forecast (lowest {low_value:.0f} g at "
            f"{hhmm(low_start)}): held until its latest start"
        )
    return met, waiting, f"{met} g >= {now_value:.0f} g now: released at once", why


def hhmm(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(UTC)
    day = "" if local.date() == datetime.now(UTC).date() else " tomorrow"
    return f"{local:%H:%M} UTC{day}"


# --------------------------------------------------------------------------- the operator


def operator_environment(plane: Any, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARBONAWARE_")}
    placement = plane.real_node_placement()
    env.update(
        KUBECONFIG=str(plane.kubeconfig),
        PYTHONUNBUFFERED="1",
        CARBONAWARE_PROVIDERS="trace",
        CARBONAWARE_DEFAULT_REGION=REGION,
        CARBONAWARE_TICK_SECONDS=str(TICK_SECONDS),
        # SSH runs go through runner pods: containers from the operator's own image on the
        # real node, which reach the company server over the pod network.
        CARBONAWARE_SSH_MODE="Pod",
        CARBONAWARE_RUNNER_IMAGE=plane.images.operator.name,
        CARBONAWARE_RUNNER_IMAGE_PULL_POLICY="Never",
        CARBONAWARE_RUNNER_NODE_SELECTOR=json.dumps(placement["nodeSelector"]),
        CARBONAWARE_RUNNER_TOLERATIONS=json.dumps(placement["tolerations"]),
        CARBONAWARE_SSH_PROBE_SECONDS=str(SSH_PROBE_SECONDS),
        CARBONAWARE_METRICS_PORT=str(port),
        CARBONAWARE_METRICS_ADDRESS="127.0.0.1",
        CARBONAWARE_HEALTH_PORT="0",
    )
    return env


def start_operator(work: Path, plane: Any, port: int) -> dict[str, Any]:
    log_path = work / "operator.log"
    with log_path.open("ab") as log:
        log.write(f"\n===== {time.strftime('%F %T')} make demo =====\n".encode())
        log.flush()
        process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "carbonaware", "run"],
            env=operator_environment(plane, port),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = {
        "pid": process.pid,
        "start_ticks": sshd.process_start_ticks(process.pid) or 0,
        "log": str(log_path),
        "metrics_port": port,
    }

    def ready() -> bool | None:
        if process.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise DemoError(f"the operator exited with {process.returncode}; log:\n{tail}")
        return True if metrics_text(port) is not None else None

    poll(ready, timeout=60, what=f"the operator's metrics on port {port} (log: {log_path})")
    return record


def metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text: str = response.read().decode()
            return text
    except (OSError, urllib.error.URLError):
        return None


# --------------------------------------------------------------------------- watching


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def describe_caj(obj: dict[str, Any]) -> tuple[str, bool]:
    """A one-line state for the progress log, and whether it has settled."""
    status = obj.get("status") or {}
    state = status.get("state") or "Pending"
    now = datetime.now(UTC)
    if state == "Held":
        held = condition(obj, "Held") or {}
        planned = parse_time(status.get("plannedStartTime"))
        settled = planned is not None and planned > now + timedelta(seconds=SOON_SECONDS)
        return f"Held ({held.get('reason', '?')}, planned start {hhmm(planned)})", settled
    if state == "Succeeded":
        sci = status.get("sci") or {}
        if "totalGrams" in sci:
            return f"Succeeded, SCI {_number(sci['totalGrams'])} g", True
        completed = parse_time(status.get("completionTime"))
        late = completed is not None and now - completed > timedelta(seconds=30)
        return "Succeeded (measuring)", late
    if state == "Failed":
        failed = condition(obj, "Failed") or {}
        return f"Failed ({failed.get('reason', '?')}: {failed.get('message', '')})", True
    released = condition(obj, "Released") or {}
    if state in ("Released", "Running") and released:
        return f"{state} ({released.get('reason', '?')})", False
    return state, False


def describe_plain(job: dict[str, Any]) -> tuple[str, bool]:
    annotations = job["metadata"].get("annotations") or {}
    state = annotations.get("carbonaware.io/state")
    for item in (job.get("status") or {}).get("conditions") or []:
        if item.get("type") == "Complete" and item.get("status") == "True":
            grams = annotations.get("carbonaware.io/sci-grams")
            return f"Succeeded (unsuspended), SCI {grams or '?'} g", True
    if state == "Held":
        planned = parse_time(annotations.get("carbonaware.io/planned-start-time"))
        settled = planned is not None and planned > datetime.now(UTC) + timedelta(
            seconds=SOON_SECONDS
        )
        reason = annotations.get("carbonaware.io/reason", "?")
        return f"Held, suspended ({reason}, planned start {hhmm(planned)})", settled
    return state or "Pending", False


def describe_target(target: dict[str, Any]) -> tuple[str, bool]:
    """Reachability and load; settled once reachable and idle (its counts are up to date)."""
    status = target.get("status") or {}
    reachable = (condition(target, "Reachable") or {}).get("status") == "True"
    running, queued = status.get("running", 0), status.get("queued", 0)
    seen = "Reachable" if reachable else "not reachable yet"
    text = f"{seen}, running {running}, queued {queued}"
    return text, reachable and running == 0 and queued == 0


class Watcher:
    """Prints each object's state when it changes; knows when everything has settled."""

    def __init__(self, plane: Any, started: float) -> None:
        self.plane = plane
        self.started = started
        self.seen: dict[str, str] = {}
        self.settled: dict[str, bool] = {}

    def observe(self) -> None:
        for obj in get_json(self.plane, "get", "carbonawarejobs")["items"]:
            self._show(obj["metadata"]["name"], *describe_caj(obj))
        for job in get_json(self.plane, "get", "jobs", "-l", "carbonaware.io/managed=true")[
            "items"
        ]:
            self._show(f"job/{job['metadata']['name']}", *describe_plain(job))
        for target in get_json(self.plane, "get", "servertargets")["items"]:
            self._show(f"srv/{target['metadata']['name']}", *describe_target(target))

    def _show(self, name: str, text: str, settled: bool) -> None:
        self.settled[name] = settled
        if self.seen.get(name) != text:
            self.seen[name] = text
            print(f"    {time.monotonic() - self.started:5.0f} s  {name:28} {text}", flush=True)

    def state_of(self, name: str) -> str:
        return self.seen.get(name, "")

    def all_settled(self, expected: int) -> bool:
        return len(self.settled) >= expected and all(self.settled.values())


# --------------------------------------------------------------------------- the summary


def print_summary(plane: Any, work: Path, port: int) -> None:
    heading(f"kubectl get caj -n {NAMESPACE}")
    print(plane.kubectl("get", "caj", "-n", NAMESPACE).stdout.rstrip())

    heading("why (the operator's condition messages)")
    for obj in get_json(plane, "get", "carbonawarejobs")["items"]:
        print(f"{obj['metadata']['name']}: {explanation(obj)}")

    heading(f"plain Job {PLAIN_JOB} (label carbonaware.io/managed=true)")
    job = get_json(plane, "get", "job", PLAIN_JOB)
    annotations = job["metadata"].get("annotations") or {}
    print(f"suspend: {str(job['spec'].get('suspend')).lower()}")
    for key in sorted(annotations):
        if key.startswith("carbonaware.io/"):
            print(f"{key}: {annotations[key]}")

    heading("SCI of the finished runs (gCO2e; avoided = against starting at creation)")
    rows = []
    for obj in get_json(plane, "get", "carbonawarejobs")["items"]:
        status = obj.get("status") or {}
        sci = status.get("sci") or {}
        released = condition(obj, "Released") or {}
        intensity = status.get("intensity") or {}
        if status.get("state") not in ("Succeeded", "Failed"):
            continue
        rows.append(
            [
                obj["metadata"]["name"],
                obj["spec"].get("schedule", {}).get("policy", "Forecast"),
                released.get("reason", "-"),
                _number(intensity.get("atRelease"), "{:.0f}"),
                _number(intensity.get("runMean"), "{:.0f}"),
                _number(sci.get("cpuCoreSeconds")),
                cpu_source(str(sci.get("method", ""))),
                _number(sci.get("energyKWh")),
                _number(sci.get("totalGrams")),
                _number(sci.get("avoidedGrams")),
                status.get("state", "-"),
            ]
        )
    headers = ["NAME", "POLICY", "RELEASED BY", "I AT RELEASE", "I RUN MEAN", "CPU core-s"]
    headers += ["CPU FROM", "ENERGY kWh"]
    print(table([*headers, "TOTAL g", "AVOIDED g", "STATE"], rows))
    print("(I = grid intensity in gCO2e/kWh; SCI = (E x I + M) per R, Green Software Foundation)")
    print(
        "(CPU FROM: metrics.k8s.io = a real container on the real node, measured by "
        "metrics-server; runner = the server's /proc/stat sampled by the SSH runner pod; "
        "reservation = a kwok pod, which runs nothing: its request for its whole run)"
    )

    heading(f"ServerTarget (kubectl get srv -n {NAMESPACE})")
    print(plane.kubectl("get", "srv", "-n", NAMESPACE).stdout.rstrip())
    for target in get_json(plane, "get", "servertargets")["items"]:
        status = target.get("status") or {}
        for item in status.get("conditions") or []:
            print(
                f"{target['metadata']['name']}: {item['type']}={item['status']} "
                f"({item.get('reason', '')}) {item.get('message', '')}"
            )
        print(
            f"{target['metadata']['name']}: lastProbeTime {status.get('lastProbeTime')}, "
            f"running {status.get('running', 0)}, queued {status.get('queued', 0)}"
        )

    heading(f"metrics (http://127.0.0.1:{port}/metrics, a few carbonaware_* lines)")
    print("\n".join(interesting_metrics(metrics_text(port) or "")))

    env = plane.env()
    state = load_state(work)
    heading("explore")
    print(f"export KUBECONFIG={env['KUBECONFIG']}")
    print(f'export PATH="{os.pathsep.join(str(d) for d in plane.binaries.path_dirs)}:$PATH"')
    print("kubectl get carbonaware -A")
    print(f"kubectl get caj -n {NAMESPACE} -o wide")
    print(f"kubectl describe caj forecast-24h-training -n {NAMESPACE}")
    print(f"kubectl describe job {PLAIN_JOB} -n {NAMESPACE}")
    print(f"kubectl get caj ssh-compress-logs -n {NAMESPACE} -o jsonpath='{{.status.sci}}'")
    print(f"curl -s http://127.0.0.1:{port}/metrics | grep ^carbonaware_")
    print(f"tail -f {state.get('operator', {}).get('log', work / 'operator.log')}")
    print(f"kubectl apply -n {NAMESPACE} -f examples/jobs/   # the examples as they are")
    print("make demo-down   # stop the operator, sshd and the control plane")

    heading("data")
    print(
        "Grid intensity: the GB national 2024 half-hourly trace (actual and forecast), "
        "replayed onto today\n(same weekday and time of day). Source: "
        f"{ATTRIBUTION}."
    )


def explanation(obj: dict[str, Any]) -> str:
    """The message of the condition that says most about where the job is."""
    state = (obj.get("status") or {}).get("state")
    order = {"Failed": ("Failed",), "Held": ("Held",)}.get(str(state), ("Released", "Held"))
    for type_ in order:
        found = condition(obj, type_)
        if found and found.get("status") == "True":
            return str(found.get("message", ""))
    return str(state or "not seen by the operator yet")


def _number(value: Any, fmt: str = "{:.3g}") -> str:
    """Three significant digits; float noise below a nanogram shows as 0."""
    if value is None:
        return "-"
    return fmt.format(0 if abs(float(value)) < 1e-9 else value)


METRIC_PREFIXES = (
    "carbonaware_grid_intensity_grams_per_kwh",
    "carbonaware_grid_intensity_forecast_min_grams_per_kwh",
    "carbonaware_jobs{",
    "carbonaware_releases_total",
    "carbonaware_emitted_grams_total",
    "carbonaware_counterfactual_grams_total",
    "carbonaware_energy_kwh_total",
    "carbonaware_servertarget_reachable",
)


def cpu_source(method: str) -> str:
    """Where a run's CPU figure came from, from the `cpu=` part of `status.sci.method`."""
    sources = [part.split("=", 1)[1] for part in method.split(";") if part.startswith("cpu=")]
    return sources[-1] if sources else "-"


def interesting_metrics(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.startswith(METRIC_PREFIXES) and not line.endswith(" 0.0"):
            lines.append(line)
    return lines[:16]


# --------------------------------------------------------------------------- up / down


def up() -> int:
    work = workdir()
    work.mkdir(parents=True, exist_ok=True)
    port = metrics_port()
    state = load_state(work)
    if state.get("operator") or state.get("sshd"):
        step("stopping the previous demo's operator and sshd")
        stop_operator(state)
        stop_server(state)
        state = {}
        save_state(work, state)
    if not port_is_free(port):
        raise DemoError(
            f"port {port} is in use by another program; free it or run "
            f"CARBONAWARE_DEMO_METRICS_PORT=<port> make demo"
        )

    plane, reused = ensure_plane(work)
    state["plane"] = str(plane.workdir)
    save_state(work, state)
    step("applying the CRDs and a fresh namespace " + NAMESPACE)
    apply_crds(plane)
    fresh_namespace(plane)

    step("starting the company server: OpenSSH on this host's address (pods reach it there)")
    sshd_dir = work / "sshd"
    server = sshd.start_sshd(sshd_dir, plane.real_node_ip)
    state["sshd"] = server.to_json()
    save_state(work, state)
    note(f"sshd pid {server.pid} on {server.host}:{server.port}, user {server.user}")
    data_dir = work / "server-data"
    data_dir.mkdir(exist_ok=True)
    secret, target = server_objects(server)
    apply_objects(plane, [secret, target])
    note(
        f"Secret {secret['metadata']['name']} (client key) and ServerTarget "
        f"{target['metadata']['name']} (knownHosts, hostKeyPolicy Strict, hardware block)"
    )

    step(
        f"starting the operator: trace provider (GB 2024), region {REGION}, tick "
        f"{TICK_SECONDS} s, SSH through runner pods on the real node"
    )
    state["operator"] = start_operator(work, plane, port)
    save_state(work, state)
    note(f"pid {state['operator']['pid']}, log {state['operator']['log']}")
    note(f"metrics on http://127.0.0.1:{port}/metrics")

    from carbonaware.config import OperatorSettings

    settings = OperatorSettings(providers="trace", default_region=REGION)
    outlook = grid_outlook(settings)
    low_start, low_value = outlook.minimum
    step(
        f"the replayed GB grid now: {outlook.current:.0f} gCO2e/kWh; lowest in the next "
        f"24 h: {low_value:.0f} at {hhmm(low_start)}"
    )
    met, waiting, met_why, waiting_why = thresholds(outlook)

    step(f"applying the example jobs to namespace {NAMESPACE}")
    jobs = []
    for name in CLUSTER_JOBS:
        manifest = job_manifest(name)
        if name == "threshold-met-reindex":
            manifest["spec"]["schedule"]["maxIntensity"] = met
            note(f"{name}: maxIntensity {met_why}")
        if name == "threshold-low-backfill":
            manifest["spec"]["schedule"]["maxIntensity"] = waiting
            note(f"{name}: maxIntensity {waiting_why}")
        if name == REAL_NODE_JOB:
            manifest = on_real_node(plane, manifest, REAL_NODE_BURN_SECONDS)
            note(f"{name}: runs on the real node, one core busy for {REAL_NODE_BURN_SECONDS} s")
        jobs.append(manifest)
    jobs.append(job_manifest(PLAIN_JOB))
    apply_objects(plane, jobs)
    applied_at = time.monotonic()
    watcher = Watcher(plane, applied_at)

    def reachable() -> bool | None:
        watcher.observe()
        found = get_json(plane, "get", "servertarget", target["metadata"]["name"])
        ok = (condition(found, "Reachable") or {}).get("status") == "True"
        return True if ok else None

    poll(reachable, timeout=60, what="the ServerTarget to be Reachable", interval=1)
    note("ServerTarget company-server is Reachable (host key checked); applying the SSH jobs")
    apply_objects(plane, [ssh_job(SSH_FIRST, data_dir)])

    def first_started() -> bool | None:
        watcher.observe()
        found = get_json(plane, "get", "caj", SSH_FIRST)
        return True if (found.get("status") or {}).get("releaseTime") else None

    poll(first_started, timeout=SOON_SECONDS, what=f"{SSH_FIRST} to be released", interval=1)
    note(f"{SSH_SECOND} arrives while {SSH_FIRST} holds the server's only slot")
    apply_objects(plane, [ssh_job(SSH_SECOND, data_dir)])

    expected = len(CLUSTER_JOBS) + 1 + 2 + 1
    step(
        f"waiting for the jobs to settle (tick {TICK_SECONDS} s; kwok pods finish ~2 s in, "
        f"the real node's in {REAL_NODE_BURN_SECONDS} s)"
    )

    def settled() -> bool | None:
        watcher.observe()
        return True if watcher.all_settled(expected) else None

    timed_out = False
    try:
        poll(settled, timeout=SETTLE_TIMEOUT_SECONDS, what="the jobs to settle", interval=2)
    except DemoError as exc:
        timed_out = True
        print(f"!!  {exc}; showing what there is", flush=True)

    print_summary(plane, work, port)
    elapsed = time.time() - _T0
    how = "reused" if reused else "started"
    print(
        f"\nThe demo was ready {elapsed:.0f} s after `make demo` started (control plane {how}; "
        f"jobs settled {time.monotonic() - applied_at:.0f} s after they were applied)."
    )
    return 1 if timed_out else 0


def down() -> int:
    work = workdir()
    state = load_state(work)
    step("stopping the demo")
    stop_operator(state)
    stop_server(state)
    plane = localplane.LocalPlane(Path(state.get("plane") or work / "plane"))
    running = plane.pids()
    plane.stop()
    if running:
        note(f"stopped the control plane ({', '.join(f'{n} {p}' for n, p in running.items())})")
    save_state(work, {"plane": str(plane.workdir)})
    left = plane.pids()
    if left:
        raise DemoError(f"still running: {left}")
    note(f"nothing left running; logs and keys stay in {work}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args(argv)
    try:
        if args.command == "down":
            return down()
        if not in_venv() or not _venv_ready():
            ensure_venv()
        if not in_venv():
            env = dict(os.environ)
            env[STARTED_ENV] = str(_T0)
            os.execve(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, "up"], env)
        return up()
    except (DemoError, localplane.LocalPlaneError, sshd.SshdError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        if args.command == "up":
            print("`make demo-down` stops whatever was started.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; `make demo-down` stops whatever was started.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
