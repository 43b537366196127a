"""The instruments of ``bench/scale.py``: the synthetic grid, a raw API client and a watch of
its own, the operator process, its metrics, the job manifests, and what a run records."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planeloader import REPO_ROOT, load_by_path, load_localplane

GROUP_PATH = "/apis/carbonaware.io/v1alpha1"
REGIONS = ("GB", "GB-13", "GB-RG10")
# gCO2e/kWh before the flip, per region; all above the Threshold jobs' maxIntensity.
BASELINES = {"GB": 300.0, "GB-13": 250.0, "GB-RG10": 200.0}
DIP_VALUE = 30.0  # the low window every Forecast job waits for
DIP_AHEAD = timedelta(hours=20)
DIP_LENGTH = timedelta(hours=2)
FLIPPED_VALUE = 80.0  # within the Threshold jobs' maxIntensity, above the dip
MAX_INTENSITY = 100

localplane = load_localplane()
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
