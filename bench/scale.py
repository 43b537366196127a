#!/usr/bin/env python3
"""The operator with 10,000 held CarbonAwareJobs on the real local control plane.

Each run starts its own plane (hack/localplane.py: etcd, kube-apiserver, controller-manager,
scheduler, kwok) in a fresh directory, applies the CRDs, serves the UK Carbon Intensity API
on loopback (tests/integration/ukapi.py: national and regional answers) and runs the
operator as a real process (``python -m carbonaware run``). Then it:

1. creates ``--jobs`` held CarbonAwareJobs across three regions (``GB``, ``GB-13`` by region
   id, ``GB-RG10`` by postcode) with parallel POSTs (one keep-alive TLS connection per
   thread): ``--due`` of them Threshold jobs (``maxIntensity: 100``), the rest Forecast jobs
   waiting for a low window 20 h ahead. It prints how long creation took and how long until
   every job had its first status (seen through a watch of its own);
2. measures ``--ticks`` refresh ticks in steady state: the operator's CPU seconds per tick
   interval and inside each refresh, the ``carbonaware_refresh_duration_seconds``
   histogram, the requests the API server answered per tick (current and forecast per
   region), status writes per tick, and the operator's resident memory;
3. creates ``--probes`` single jobs one at a time while all the others are held, spread over
   the tick, and prints creation -> first (Held) condition for each;
4. lowers the grid intensity of every region to 80 gCO2e/kWh (the Forecast jobs' window
   stays better, so only the Threshold jobs fall due) and prints the time from the flip to
   the first and the last release and the releases per second of the burst; the released
   Jobs are counted on the API server;
5. prints the resident memory of every plane component for context.

The child Jobs use ``parallelism: 0`` unless ``--run-pods``: the burst measures the operator,
not kube-scheduler and kwok starting 1,000 pods on two fake nodes. Wall times depend on the
machine's load: the load average is printed with the figures, and nothing is asserted.

    .venv/bin/python bench/scale.py                    # 10,000 jobs, 60 s ticks (~8 min)
    .venv/bin/python bench/scale.py --runs 2
    .venv/bin/python bench/scale.py --jobs 2000 --tick 10 --ticks 3
    .venv/bin/python bench/scale.py --profile /tmp/operator.prof   # operator under cProfile
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
GROUP_PATH = "/apis/carbonaware.io/v1alpha1"
REGIONS = ("GB", "GB-13", "GB-RG10")
# gCO2e/kWh before the flip, per region; all above the Threshold jobs' maxIntensity.
BASELINES = {"GB": 300.0, "GB-13": 250.0, "GB-RG10": 200.0}
DIP_VALUE = 30.0  # the low window every Forecast job waits for
DIP_AHEAD = timedelta(hours=20)
DIP_LENGTH = timedelta(hours=2)
FLIPPED_VALUE = 80.0  # within the Threshold jobs' maxIntensity, above the dip
MAX_INTENSITY = 100
ATTRIBUTION = (
    "Grid values are synthetic, served in the shapes of the Carbon Intensity API (NESO, CC BY 4.0)."
)


def load_by_path(name: str, path: Path) -> ModuleType:
    """Import a script that is not part of an installed package (hack/, tests/)."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


localplane = load_by_path("localplane", REPO_ROOT / "hack/localplane.py")
ukapi = load_by_path("bench_ukapi", REPO_ROOT / "tests/integration/ukapi.py")
operatorproc = load_by_path("bench_operatorproc", REPO_ROOT / "tests/integration/operatorproc.py")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def load_average() -> str:
    return " / ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- grid


class Grid:
    """Per-region intensity: a flat baseline with one low window ``DIP_AHEAD`` from start."""

    def __init__(self, started: datetime) -> None:
        self.baselines = dict(BASELINES)
        first = ukapi.period_start(started + DIP_AHEAD)
        self.dip = (first, first + DIP_LENGTH)  # replaced whole: the server reads it in threads

    def function(self, region: str) -> Callable[[datetime], float]:
        def intensity(start: datetime) -> float:
            dip_start, dip_end = self.dip
            if dip_start <= start < dip_end:
                return DIP_VALUE
            return self.baselines[region]

        return intensity

    def shift_dip(self, by: timedelta) -> None:
        """A forecast revision: the low window moves, and every held job's plan with it."""
        self.dip = (self.dip[0] + by, self.dip[1] + by)

    def flip(self) -> None:
        for region in self.baselines:
            self.baselines[region] = FLIPPED_VALUE


def request_kind(path: str) -> tuple[str, str]:
    """(region, "current" | "forecast") of a path the UK API server answered."""
    parts = path.split("?")[0].strip("/").split("/")
    if parts[0] == "intensity":
        return "GB", "current" if len(parts) == 1 else "forecast"
    region = ukapi.region_key(parts[-1])
    return region, "forecast" if parts[1] == "intensity" else "current"


# --------------------------------------------------------------------------- API access


class Api:
    """The plane's API as the admin user, one keep-alive TLS connection per thread."""

    def __init__(self, plane: Any) -> None:
        match = re.match(r"https://([^:/]+):(\d+)", plane.server)
        if match is None:
            raise ValueError(f"unexpected server address {plane.server}")
        self.host, self.port = match.group(1), int(match.group(2))
        self.context = plane._ssl_context()
        self.local = threading.local()

    def connection(self, timeout: float = 60) -> http.client.HTTPSConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=timeout
            )
            self.local.conn = conn
        return conn

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            conn = self.connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status in (429, 500, 503, 504) and attempt < 2:
                time.sleep(float(response.getheader("Retry-After") or 1))
                continue
            return response.status, json.loads(raw) if raw else None
        raise RuntimeError("unreachable")

    def count(self, path: str) -> int:
        """Objects in a list, read in pages of 500 (a 10,000-item list is tens of MB)."""
        total, token = 0, ""
        while True:
            sep = "&" if "?" in path else "?"
            status, body = self.request("GET", f"{path}{sep}limit=500&continue={token}")
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}: {body}")
            total += len(body.get("items", []))
            token = body.get("metadata", {}).get("continue") or ""
            if not token:
                return total


@dataclass
class WatchLog:
    """What a watch of the namespace's CarbonAwareJobs saw, by name, in monotonic time."""

    first_status: dict[str, float] = field(default_factory=dict)
    released: dict[str, float] = field(default_factory=dict)
    modified: int = 0
    modified_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CajWatch(threading.Thread):
    """Streams watch events of one namespace's CarbonAwareJobs into a :class:`WatchLog`."""

    def __init__(self, api: Api, namespace: str) -> None:
        super().__init__(name="caj-watch", daemon=True)
        self.api = api
        self.path = f"{GROUP_PATH}/namespaces/{namespace}/carbonawarejobs"
        self.seen = WatchLog()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _, body = self.api.request("GET", f"{self.path}?limit=1")
            version = body["metadata"]["resourceVersion"]
            while not self.stopping.is_set():
                version = self._stream(version)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            if not self.stopping.is_set():
                self.error = exc

    def _stream(self, version: str) -> str:
        conn = http.client.HTTPSConnection(
            self.api.host, self.api.port, context=self.api.context, timeout=600
        )
        try:
            conn.request(
                "GET",
                f"{self.path}?watch=1&resourceVersion={version}&timeoutSeconds=3600"
                "&allowWatchBookmarks=true",
                headers={"Accept": "application/json"},
            )
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"watch answered {response.status}: {response.read()[:300]!r}")
            for line in response:
                if self.stopping.is_set():
                    break
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = obj["metadata"]["resourceVersion"]
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                self._record(obj, time.monotonic(), event["type"] == "MODIFIED")
        finally:
            conn.close()
        return version

    def _record(self, obj: dict[str, Any], now: float, modified: bool) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        seen = self.seen
        with seen.lock:
            if modified:
                seen.modified += 1
                seen.modified_times.append(now)
            if status.get("conditions") and name not in seen.first_status:
                seen.first_status[name] = now
            if status.get("releaseTime") and name not in seen.released:
                seen.released[name] = now

    def stop(self) -> None:
        self.stopping.set()


# --------------------------------------------------------------------------- operator


class Operator:
    """``python -m carbonaware run`` as a child process, optionally under cProfile."""

    def __init__(self, env: dict[str, str], log_path: Path, profile: Path | None) -> None:
        prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *prefix, "-m", "carbonaware", "run"],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.log_file.close()


class Metrics:
    """Reads the operator's /metrics."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def scrape(self) -> dict[str, float]:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def ticks(self) -> tuple[int, float]:
        """(refreshes done, their summed wall seconds) from the refresh histogram."""
        values = self.scrape()
        return (
            int(values.get("carbonaware_refresh_duration_seconds_count", 0)),
            values.get("carbonaware_refresh_duration_seconds_sum", 0.0),
        )


# --------------------------------------------------------------------------- jobs


def job_template(run_pods: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
            }
        },
    }
    if not run_pods:
        spec["parallelism"] = 0
    return {"spec": spec}


def manifest(name: str, region: str, schedule: dict[str, Any], run_pods: bool) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {"region": region, "schedule": schedule, "jobTemplate": job_template(run_pods)},
    }


def fleet(jobs: int, due: int, run_pods: bool) -> list[dict[str, Any]]:
    """``due`` Threshold jobs then Forecast jobs, regions taken in turn."""
    manifests = []
    for i in range(jobs):
        region = REGIONS[i % len(REGIONS)]
        if i < due:
            schedule = {"policy": "Threshold", "maxIntensity": MAX_INTENSITY}
            manifests.append(manifest(f"due-{i:05d}", region, schedule, run_pods))
        else:
            schedule = {"policy": "Forecast", "expectedDurationSeconds": 3600}
            manifests.append(manifest(f"hold-{i:05d}", region, schedule, run_pods))
    return manifests


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    operatorproc.wait_for(lambda: check() or None, timeout=timeout, what=what, interval=interval)


# --------------------------------------------------------------------------- one run


@dataclass
class Figures:
    """Everything one run measured, in the order it is printed."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, label: str, value: float, fmt: str = "{:.2f}", unit: str = "") -> None:
        self.values[key] = value
        text = fmt.format(value) + (f" {unit}" if unit else "")
        self.rows.append((label, text))
        print(f"  {label}: {text}", flush=True)

    def note(self, label: str, text: str) -> None:
        self.rows.append((label, text))
        print(f"  {label}: {text}", flush=True)


@dataclass
class Setup:
    plane: Any
    api: Api
    namespace: str
    grid: Grid
    server: Any
    operator: Operator
    metrics: Metrics
    watch: CajWatch


@contextlib.contextmanager
def environment(args: argparse.Namespace, workdir: Path) -> Iterator[Setup]:
    """Plane, CRDs, UK API server, operator and watch; everything stopped on the way out."""
    plane = localplane.LocalPlane(workdir / "plane")
    plane.ensure_built()
    stack = contextlib.ExitStack()
    try:
        log(f"starting the local plane in {plane.workdir}")
        plane.start()
        stack.callback(plane.stop)
        plane.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        for crd in ("carbonawarejobs.carbonaware.io", "servertargets.carbonaware.io"):
            plane.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        namespace = plane.create_namespace("scale")
        grid = Grid(datetime.now(UTC))
        server = stack.enter_context(ukapi.serve_uk_api(grid.function("GB")))
        for region in REGIONS[1:]:
            server.regional[region] = grid.function(region)
        metrics_port = free_port()
        env = operatorproc.operator_env(
            plane.kubeconfig,
            providers="ukci",
            ukci_base_url=server.url,
            default_region="GB",
            tick_seconds=args.tick,
            provider_cache_ttl_seconds=args.cache_ttl or args.tick / 2,
            metrics_port=metrics_port,
            metrics_address="127.0.0.1",
            health_port=0,
        )
        operator = Operator(env, workdir / "operator.log", args.profile)
        stack.callback(operator.stop)
        metrics = Metrics(metrics_port)
        wait_until(lambda: _scrapes(metrics), 60, "the operator's /metrics")
        wait_until(lambda: metrics.ticks()[0] >= 1, 120, "the operator's first refresh tick")
        api = Api(plane)
        watch = CajWatch(api, namespace)
        watch.start()
        stack.callback(watch.stop)
        yield Setup(plane, api, namespace, grid, server, operator, metrics, watch)
    finally:
        log("stopping the operator, the UK API server and the plane")
        stack.close()


def _scrapes(metrics: Metrics) -> bool:
    try:
        metrics.scrape()
    except OSError:
        return False
    return True


def create_all(setup: Setup, manifests: list[dict[str, Any]], threads: int) -> dict[str, float]:
    """POST every manifest from ``threads`` threads; return name -> creation time."""
    path = f"{GROUP_PATH}/namespaces/{setup.namespace}/carbonawarejobs"
    created: dict[str, float] = {}

    def post(body: dict[str, Any]) -> None:
        status, answer = setup.api.request("POST", path, body)
        if status != 201:
            raise RuntimeError(f"creating {body['metadata']['name']}: {status} {answer}")
        created[body["metadata"]["name"]] = time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="create") as pool:
        for future in concurrent.futures.as_completed([pool.submit(post, m) for m in manifests]):
            future.result()
    return created


def operator_alive(setup: Setup) -> None:
    if not setup.operator.alive():
        raise RuntimeError("the operator exited; see operator.log in the work directory")
    if setup.watch.error is not None:
        raise RuntimeError(f"the watch failed: {setup.watch.error!r}")


def phase_create(setup: Setup, args: argparse.Namespace, figures: Figures) -> None:
    manifests = fleet(args.jobs, args.due, args.run_pods)
    pid = setup.operator.pid
    cpu_before = cpu_seconds(pid)
    plane_pids = setup.plane.pids()
    plane_before = {name: cpu_seconds(p) for name, p in plane_pids.items()}
    log(f"creating {len(manifests)} CarbonAwareJobs with {args.threads} threads")
    started = time.monotonic()
    created = create_all(setup, manifests, args.threads)
    created_in = time.monotonic() - started
    figures.add("create_s", "creation of all jobs (POSTs answered)", created_in, unit="s")
    figures.add("create_rate", "creation rate", len(manifests) / created_in, "{:.0f}", "jobs/s")
    seen = setup.watch.seen
    reported = [time.monotonic()]

    def all_seen() -> bool:
        operator_alive(setup)
        with seen.lock:
            done = len(seen.first_status)
        if time.monotonic() - reported[0] > 15:
            reported[0] = time.monotonic()
            log(f"  {done} of {len(manifests)} have a status; operator rss {rss_mib(pid):.0f} MiB")
        return done >= len(manifests)

    wait_until(all_seen, args.timeout, "every job's first status")
    with seen.lock:
        last = max(seen.first_status[name] for name in created)
        latencies = [seen.first_status[name] - created[name] for name in created]
    figures.add(
        "first_status_all_s", "creation start -> all have a status", last - started, unit="s"
    )
    figures.add(
        "first_status_p50_s",
        "per job, POST -> first status, p50",
        percentile(latencies, 0.5),
        unit="s",
    )
    figures.add(
        "first_status_p99_s",
        "per job, POST -> first status, p99",
        percentile(latencies, 0.99),
        unit="s",
    )
    figures.add(
        "create_cpu_s",
        "operator CPU for the whole creation phase",
        cpu_seconds(pid) - cpu_before,
        unit="s",
    )
    plane_cpu = {name: cpu_seconds(p) - plane_before[name] for name, p in plane_pids.items()}
    figures.note(
        "plane CPU in the creation phase (s)",
        ", ".join(f"{n} {v:.1f}" for n, v in sorted(plane_cpu.items())),
    )
    figures.add(
        "writes_per_job",
        "MODIFIED watch events per job at creation",
        seen.modified / len(manifests),
    )


def phase_steady(setup: Setup, args: argparse.Namespace, figures: Figures) -> None:
    """Per-tick figures once the creation backlog is over."""
    pid = setup.operator.pid
    log("waiting for two ticks after creation before measuring")
    count, _ = setup.metrics.ticks()
    wait_until(lambda: setup.metrics.ticks()[0] >= count + 2, 3 * args.tick + 600, "two ticks")
    samples: list[tuple[float, float]] = []  # (monotonic, cpu seconds) every poll
    ticks: list[dict[str, float]] = []
    count, duration_sum = setup.metrics.ticks()
    base = {
        "t": time.monotonic(),
        "cpu": cpu_seconds(pid),
        "requests": len(setup.server.requests),
        "modified": setup.watch.seen.modified,
        "sum": duration_sum,
    }
    per_region: list[dict[tuple[str, str], int]] = []
    log(f"measuring {args.ticks} ticks of {args.tick:g} s")
    while len(ticks) < args.ticks:
        operator_alive(setup)
        time.sleep(args.poll)
        now, cpu = time.monotonic(), cpu_seconds(pid)
        samples.append((now, cpu))
        new_count, new_sum = setup.metrics.ticks()
        if new_count == count:
            continue
        requests = list(setup.server.requests)
        kinds: dict[tuple[str, str], int] = {}
        for path in requests[int(base["requests"]) :]:
            key = request_kind(path)
            kinds[key] = kinds.get(key, 0) + 1
        per_region.append(kinds)
        duration = (new_sum - base["sum"]) / (new_count - count)
        # CPU inside the refresh: the polls covering [end - duration - poll, now]
        window_start = now - duration - args.poll
        before = [c for t, c in samples if t <= window_start]
        refresh_cpu = cpu - (before[-1] if before else base["cpu"])
        ticks.append(
            {
                "interval_s": now - base["t"],
                "interval_cpu_s": cpu - base["cpu"],
                "refresh_cpu_s": refresh_cpu,
                "refresh_wall_s": duration,
                "requests": len(requests) - base["requests"],
                "status_writes": setup.watch.seen.modified - base["modified"],
                "rss_mib": rss_mib(pid),
            }
        )
        log(f"  tick {len(ticks)}: {ticks[-1]}")
        count = new_count
        base = {
            "t": now,
            "cpu": cpu,
            "requests": len(requests),
            "modified": setup.watch.seen.modified,
            "sum": new_sum,
        }
    measured = ticks[1:] if len(ticks) > 1 else ticks  # the first interval starts mid-tick

    def mean(key: str) -> float:
        return statistics.mean(t[key] for t in measured)

    figures.add(
        "rss_steady_mib", "operator RSS, steady, all jobs held", rss_mib(pid), "{:.0f}", "MiB"
    )
    figures.add(
        "tick_interval_cpu_s",
        "operator CPU per tick interval (mean)",
        mean("interval_cpu_s"),
        "{:.3f}",
        "s",
    )
    figures.add(
        "refresh_cpu_s",
        "operator CPU inside one refresh (mean)",
        mean("refresh_cpu_s"),
        "{:.3f}",
        "s",
    )
    figures.add(
        "refresh_cpu_max_s",
        "operator CPU inside one refresh (max)",
        max(t["refresh_cpu_s"] for t in measured),
        "{:.3f}",
        "s",
    )
    figures.add(
        "refresh_wall_s", "refresh wall time, histogram mean", mean("refresh_wall_s"), "{:.3f}", "s"
    )
    figures.add(
        "provider_requests",
        "provider requests per refresh (all regions)",
        mean("requests"),
        "{:.1f}",
    )
    kinds = sorted({key for tick in per_region for key in tick})
    spread = ", ".join(
        f"{region} {kind} {statistics.mean(t.get((region, kind), 0) for t in per_region):.1f}"
        for region, kind in kinds
    )
    figures.note("provider requests per refresh, by region and kind", spread)
    figures.add("status_writes_per_tick", "status writes per tick", mean("status_writes"), "{:.1f}")
    figures.add("ticks_measured", "ticks measured", len(measured), "{:.0f}")


def phase_probe(setup: Setup, args: argparse.Namespace, figures: Figures) -> None:
    """Single new jobs while everything else is held: creation -> first condition."""
    path = f"{GROUP_PATH}/namespaces/{setup.namespace}/carbonawarejobs"
    seen = setup.watch.seen
    latencies = []
    for i in range(args.probes):
        name = f"probe-{i:02d}"
        body = manifest(name, REGIONS[i % len(REGIONS)], {"policy": "Forecast"}, args.run_pods)
        started = time.monotonic()
        status, answer = setup.api.request("POST", path, body)
        if status != 201:
            raise RuntimeError(f"creating {name}: {status} {answer}")

        def has_status(name: str = name) -> bool:
            operator_alive(setup)
            with seen.lock:
                return name in seen.first_status

        wait_until(has_status, 120, f"{name}'s first condition", interval=0.01)
        with seen.lock:
            latencies.append(seen.first_status[name] - started)
        log(f"  {name}: {latencies[-1]:.3f} s")
        time.sleep(args.tick / max(args.probes, 1) + 0.37)  # land at another point of the tick
    figures.add(
        "probe_median_s",
        "new job, creation -> Held condition (median)",
        statistics.median(latencies),
        "{:.3f}",
        "s",
    )
    figures.add(
        "probe_max_s", "new job, creation -> Held condition (max)", max(latencies), "{:.3f}", "s"
    )
    figures.note("new job latencies", ", ".join(f"{v:.3f}" for v in latencies) + " s")


def phase_replan(setup: Setup, args: argparse.Namespace, figures: Figures) -> None:
    """A forecast revision moves every held job's planned start: how the loop writes them."""
    pid = setup.operator.pid
    seen = setup.watch.seen
    expected = args.jobs + args.probes
    count, total = setup.metrics.ticks()
    with seen.lock:
        modified = seen.modified
    cpu_before = cpu_seconds(pid)
    log(f"moving the low window by an hour: {expected} planned starts change")
    shifted = time.monotonic()
    setup.grid.shift_dip(timedelta(hours=1))
    durations: list[float] = []

    def rewritten() -> bool:
        nonlocal count, total
        operator_alive(setup)
        new_count, new_total = setup.metrics.ticks()
        if new_count > count:
            durations.append((new_total - total) / (new_count - count))
            count, total = new_count, new_total
            with seen.lock:
                return seen.modified - modified >= expected
        return False

    wait_until(rewritten, args.tick * 3 + args.timeout, "the tick that rewrites every plan")
    with seen.lock:
        times = seen.modified_times[modified:]
        writes = seen.modified - modified
    figures.add("replan_writes", "status writes after the revision", writes, "{:.0f}")
    figures.add(
        "replan_ticks", "ticks after the revision until all were written", len(durations), "{:.0f}"
    )
    figures.add("replan_tick_s", "longest of those ticks (histogram)", max(durations), unit="s")
    figures.add("replan_burst_s", "first -> last status write", times[-1] - times[0], unit="s")
    figures.add(
        "replan_rate",
        "status writes per second",
        writes / max(times[-1] - times[0], 1e-3),
        "{:.0f}",
    )
    figures.add(
        "replan_cpu_s",
        "operator CPU, revision -> tick done",
        cpu_seconds(pid) - cpu_before,
        unit="s",
    )
    figures.add(
        "replan_first_s",
        "revision -> first write (waits for the tick)",
        times[0] - shifted,
        unit="s",
    )


def phase_release(setup: Setup, args: argparse.Namespace, figures: Figures) -> None:
    pid = setup.operator.pid
    seen = setup.watch.seen
    due = {f"due-{i:05d}" for i in range(args.due)}
    cpu_before = cpu_seconds(pid)
    log(f"lowering every region to {FLIPPED_VALUE:g} g: {args.due} Threshold jobs fall due")
    flipped = time.monotonic()
    setup.grid.flip()

    def all_released() -> bool:
        operator_alive(setup)
        with seen.lock:
            return due <= seen.released.keys()

    wait_until(all_released, args.tick * 2 + args.timeout, "every due job's release")
    with seen.lock:
        times = sorted(seen.released[name] for name in due)
        others = len(seen.released.keys() - due)
    first, last = times[0] - flipped, times[-1] - flipped
    jobs = setup.api.count(f"/apis/batch/v1/namespaces/{setup.namespace}/jobs")
    figures.add("release_first_s", "flip -> first release (waits for the tick)", first, unit="s")
    figures.add("release_last_s", "flip -> last release", last, unit="s")
    figures.add("release_burst_s", "first -> last release", last - first, unit="s")
    figures.add(
        "release_rate",
        "releases per second in the burst",
        len(times) / max(last - first, 1e-3),
        "{:.0f}",
    )
    figures.add(
        "release_cpu_s",
        "operator CPU from the flip to the last release",
        cpu_seconds(pid) - cpu_before,
        unit="s",
    )
    figures.add("jobs_created", "Jobs on the API server after the burst", jobs, "{:.0f}")
    figures.add("others_released", "other jobs released by the flip", others, "{:.0f}")
    figures.add("rss_after_mib", "operator RSS after the burst", rss_mib(pid), "{:.0f}", "MiB")


def phase_plane(setup: Setup, figures: Figures) -> None:
    rss = setup.plane.rss_bytes()
    parts = ", ".join(f"{name} {value / 2**20:.0f}" for name, value in sorted(rss.items()))
    figures.note("plane RSS by component (MiB)", parts)
    figures.add("plane_rss_mib", "plane RSS, total", sum(rss.values()) / 2**20, "{:.0f}", "MiB")
    figures.add(
        "apiserver_rss_mib",
        "kube-apiserver RSS",
        rss.get("kube-apiserver", 0) / 2**20,
        "{:.0f}",
        "MiB",
    )
    figures.add("etcd_rss_mib", "etcd RSS", rss.get("etcd", 0) / 2**20, "{:.0f}", "MiB")


def one_run(args: argparse.Namespace, number: int) -> Figures:
    figures = Figures()
    workdir = Path(tempfile.mkdtemp(prefix="carbonaware-scale-", dir=args.workdir))
    print(f"\nrun {number}: load average {load_average()} (work directory {workdir})", flush=True)
    try:
        with environment(args, workdir) as setup:
            figures.add(
                "rss_empty_mib",
                "operator RSS, no jobs",
                rss_mib(setup.operator.pid),
                "{:.0f}",
                "MiB",
            )
            phase_create(setup, args, figures)
            figures.note("load average after creation", load_average())
            phase_steady(setup, args, figures)
            phase_plane(setup, figures)
            figures.note("load average in steady state", load_average())
            if args.probes:
                phase_probe(setup, args, figures)
            if args.replan:
                phase_replan(setup, args, figures)
            if args.due:
                phase_release(setup, args, figures)
            figures.note("load average at the end", load_average())
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return figures


def versions() -> str:
    from importlib.metadata import version

    parts = [
        f"Python {platform.python_version()}",
        f"kopf {version('kopf')}",
        f"kubernetes client {version('kubernetes')}",
        f"Kubernetes {localplane.kubernetes_version()}",
        f"kwok {localplane.KWOK_VERSION}",
    ]
    etcd = shutil.which("etcd")
    if etcd:
        out = subprocess.run([etcd, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"etcd Version: (\S+)", out)
        if match:
            parts.append(f"etcd {match.group(1)}")
    return ", ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="held jobs to create")
    parser.add_argument("--due", type=int, default=1_000, help="of which Threshold jobs")
    parser.add_argument("--tick", type=float, default=60.0, help="operator tick, seconds")
    parser.add_argument("--ticks", type=int, default=3, help="steady ticks to measure (+1)")
    parser.add_argument("--cache-ttl", type=float, default=None, help="default: tick / 2")
    parser.add_argument("--probes", type=int, default=5, help="single new jobs to time")
    parser.add_argument("--threads", type=int, default=16, help="parallel POSTs")
    parser.add_argument("--poll", type=float, default=0.5, help="metrics poll, seconds")
    parser.add_argument("--timeout", type=float, default=1800, help="longest wait per phase")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--run-pods", action="store_true", help="released Jobs start pods")
    parser.add_argument("--no-replan", dest="replan", action="store_false", help="skip phase 4")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile output (1 run)")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of run directories")
    parser.add_argument("--keep", action="store_true", help="keep run directories")
    args = parser.parse_args()
    if args.due > args.jobs:
        parser.error("--due must not exceed --jobs")
    args.ticks += 1  # the first interval starts mid-tick and is not counted
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; {versions()}")
    print(
        f"{args.jobs} jobs ({args.due} Threshold, {args.jobs - args.due} Forecast) in "
        f"{', '.join(REGIONS)}; tick {args.tick:g} s; provider cache "
        f"{args.cache_ttl or args.tick / 2:g} s; child Jobs "
        f"{'start pods' if args.run_pods else 'with parallelism 0'}"
    )
    runs = [one_run(args, number) for number in range(1, args.runs + 1)]
    if len(runs) > 1:
        print("\nsummary (one column per run)")
        for label, _ in runs[0].rows:
            cells = [dict(run.rows).get(label, "") for run in runs]
            print(f"  {label}: {' | '.join(cells)}")
    print(ATTRIBUTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
