"""Grid-intensity providers failing under a running operator.

Six simulated hours in about three minutes: operator time runs 120 times as fast as the
wall clock (``CARBONAWARE_TIME_SCALE``; one tick of 1 s is two minutes of operator time). A
local server speaking the UK Carbon Intensity API serves, at the same scaled time, a grid
that gets cleaner through the run, and goes through phases: healthy, HTTP 500, HTTP 503,
answers slower than the provider timeout, broken JSON, periods days old. Two operators read
it at once:

- ``fallback`` chains ``ukci,trace`` (a trace CSV of the same grid, 40 gCO2e/kWh dirtier,
  read at operator time): the data never stops, the source of what the jobs see switches
  to ``trace`` during faults and back to ``ukci`` afterwards;
- ``ukci-only`` has no fallback and no stale-while-error: during faults nothing is known,
  and jobs due then are released at their latest start saying ``ProviderUnavailable``.

Both hold Forecast and Threshold jobs whose latest starts (30 min to 6 h after creation)
fall across every phase. Neither may crash, hold a job past its latest start (by more than
one tick), or give a release reason the data at that moment does not support.

Secrets: an operator whose chain starts with Electricity Maps (a token) and WattTime (a
password) against local fakes that also answer 401 and 500 and echo the credentials back in
their error bodies never shows them in its log, Events or statuses.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from .loopgaps import LoopGaps
from .operatorproc import (
    QUICK_JOB_TEMPLATE,
    OperatorProcess,
    Samples,
    ScaledClock,
    caj,
    condition,
    free_port,
    operator_env,
    scrape_metrics,
    wait_for,
    when,
)
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

SCALE = 120.0
TICK = timedelta(seconds=SCALE)  # tick_seconds=1, in operator time
MINUTE = timedelta(minutes=1)
# (operator minutes from the origin, mode): what the UK API server does from then on.
PHASES: tuple[tuple[int, str], ...] = (
    (0, "ok"),
    (40, "error"),
    (80, "ok"),
    (120, "down"),
    (160, "slow"),
    (200, "ok"),
    (240, "garbage"),
    (280, "stale"),
    (320, "ok"),
)
FAULTS = frozenset({"error", "down", "slow", "garbage", "stale"})
RUN = timedelta(hours=6, minutes=20)
# How long after a phase starts the operators may still act on what they saw before it:
# the provider cache (1 min), a refresh still waiting on a slow answer (two attempts of 1 s
# for the current value and for the forecast: ~5 s wall, 10 min) and a tick of slack. On a
# loaded machine a tick lasts longer (the longest gap measured): a refresh begun in the
# previous phase can end that much later, so the settling time grows by as much.
SETTLE = timedelta(minutes=15)
JOBS_PER_POLICY = 24
EXPECTED_DURATION = 1800


def scrape(port: int) -> Samples:
    """Every sample of the operator's /metrics as {(name, sorted labels): value}."""
    return scrape_metrics(port, timeout=10)


def metrics_up(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def provider_outcomes(port: int, provider: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (name, labels), value in scrape(port).items():
        label = dict(labels)
        if name == "carbonaware_provider_requests_total" and label.get("provider") == provider:
            counts[label["outcome"]] += int(value)
    return counts


def quiet_server_errors(server: ThreadingHTTPServer) -> None:
    """A slow answer the client stopped waiting for ends in a broken pipe: expected here."""
    default = server.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        default(request, client_address)

    server.handle_error = handle_error  # type: ignore[method-assign]


# --------------------------------------------------------------------------- six hours


def phase_at(moment: datetime, origin: datetime) -> tuple[str, datetime]:
    """The server's mode at operator time ``moment`` and when that phase began."""
    minutes = (moment - origin) / MINUTE
    mode, began = PHASES[0][1], origin
    for start, name in PHASES:
        if minutes >= start:
            mode, began = name, origin + start * MINUTE
    return mode, began


def falling_grid(origin: datetime) -> Callable[[datetime], float]:
    """A grid that gets cleaner all through the run (380 -> 80 gCO2e/kWh over six hours):
    a Forecast job's best window is its last one and each threshold is crossed at its own
    moment, so releases spread over the whole run and every phase."""

    def intensity(start: datetime) -> float:
        return max(380.0 - 50.0 * ((start - origin) / timedelta(hours=1)), 80.0)

    return intensity


def write_trace(path: Path, grid: Callable[[datetime], float], origin: datetime) -> Path:
    """The grid plus 40 gCO2e/kWh as a trace CSV (the shipped traces' columns) covering
    the run, the two weeks of history the operator reads and two days of forecast."""
    first = origin - timedelta(days=16)
    rows = ["Datetime (UTC),Actual Carbon Intensity (gCO2/kWh),Forecast Carbon Intensity "
            "(gCO2/kWh),Index"]  # fmt: skip
    for i in range(19 * 48):
        start = first + i * 30 * MINUTE
        value = round(grid(start) + 40)
        rows.append(f"{start:%Y-%m-%dT%H:%MZ},{value},{value},moderate")
    path.write_text("\n".join(rows) + "\n")
    return path


@dataclass
class Fleet:
    """One operator under test: its namespace, process, metrics port and job names."""

    name: str
    namespace: str
    process: OperatorProcess
    metrics_port: int
    jobs: dict[str, dict[str, Any]]


def job_manifests(created: datetime) -> dict[str, dict[str, Any]]:
    """Forecast and Threshold jobs whose latest starts spread from 30 min to 6 h (a third
    of them bound by ``deadlineTime`` instead of ``maxDelaySeconds``); thresholds from 100
    to 350 gCO2e/kWh, so some are crossed before the latest start and some are not."""
    manifests = {}
    span = (6 * 3600 - 1800) / (JOBS_PER_POLICY - 1)
    for policy in ("Forecast", "Threshold"):
        for i in range(JOBS_PER_POLICY):
            delay = int(1800 + i * span)
            schedule: dict[str, Any] = {
                "policy": policy,
                "expectedDurationSeconds": EXPECTED_DURATION,
            }
            if i % 3 == 2:
                deadline = created + timedelta(seconds=delay + EXPECTED_DURATION)
                schedule["deadlineTime"] = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
            else:
                schedule["maxDelaySeconds"] = delay
            if policy == "Threshold":
                schedule["maxIntensity"] = 100 + (i * 37) % 251
            name = f"{policy.lower()}-{i:02d}"
            manifests[name] = caj(name, schedule, jobTemplate=QUICK_JOB_TEMPLATE)
    return manifests


def test_six_hours_of_provider_faults(crds: Any, tmp_path: Path) -> None:
    clock = ScaledClock(datetime.now(UTC).replace(microsecond=0), SCALE)
    started = time.monotonic()
    grid = falling_grid(clock.origin)
    with serve_uk_api(grid) as server:
        quiet_server_errors(server)
        server.clock = clock.now
        server.schedule = lambda now: phase_at(now, clock.origin)[0]
        server.delay = 3.0  # beyond the operators' 1 s provider timeout
        server.stale_by = timedelta(days=3)
        trace = write_trace(tmp_path / "fallback.csv", grid, clock.origin)
        fleets = start_fleets(crds, server, clock, trace, tmp_path)
        try:
            run_and_check(crds, server, clock, fleets)
        finally:
            for fleet in fleets:
                fleet.process.stop()
                crds.delete_namespace(fleet.namespace)
            print(f"six simulated hours took {time.monotonic() - started:.0f} s of wall time")


def start_fleets(
    crds: Any, server: UkApiServer, clock: ScaledClock, trace: Path, tmp_path: Path
) -> list[Fleet]:
    fleets = []
    for name, providers, stale in (("fallback", "ukci,trace", 3 * 3600), ("ukci-only", "ukci", 0)):
        namespace = crds.create_namespace(name)
        port = free_port()
        env = operator_env(
            crds.kubeconfig,
            providers=providers,
            ukci_base_url=server.url,
            provider_cache_ttl_seconds=60,
            provider_stale_max_age_seconds=stale,
            provider_timeout_seconds=1,
            provider_retries=1,
            default_region="GB",
            namespace=namespace,
            metrics_port=port,
            metrics_address="127.0.0.1",
            time_scale=SCALE,
            time_origin=clock.origin.isoformat(),
            trace_path=trace,
            trace_shift_to_now=False,
        )
        process = OperatorProcess(env, tmp_path / f"{name}.log")
        process.start()
        fleets.append(Fleet(name, namespace, process, port, {}))
    for fleet in fleets:
        wait_for(
            lambda f=fleet: metrics_up(f.metrics_port),  # type: ignore[misc]
            timeout=60,
            what=f"the {fleet.name} operator's metrics endpoint",
        )
        fleet.jobs = job_manifests(clock.now())
        listing = {"apiVersion": "v1", "kind": "List", "items": list(fleet.jobs.values())}
        crds.kubectl("apply", "-n", fleet.namespace, "-f", "-", input=json.dumps(listing))
    return fleets


def run_and_check(crds: Any, server: UkApiServer, clock: ScaledClock, fleets: list[Fleet]) -> None:
    def all_released(fleet: Fleet) -> list[dict[str, Any]] | None:
        items = crds.kubectl_json("get", "caj", "-n", fleet.namespace)["items"]
        done = [o for o in items if o.get("status", {}).get("releaseTime")]
        return items if len(done) == len(fleet.jobs) else None

    end = clock.origin + RUN
    results = {}
    with LoopGaps(*(fleet.metrics_port for fleet in fleets)) as gaps:
        for fleet in fleets:
            remaining = clock.wall_seconds(end - clock.now())
            results[fleet.name] = wait_for(
                lambda f=fleet: all_released(f),  # type: ignore[misc]
                timeout=max(remaining, 0) + 90,
                what=f"every {fleet.name} job released",
                interval=2,
            )
    gap = timedelta(seconds=gaps.longest * SCALE)
    horizon = timedelta(seconds=gaps.horizon)
    print(f"longest gap between two ticks: {gaps.longest:.2f} s of wall time")
    print(f"longest decision horizon: {horizon / MINUTE:.1f} min of operator time")

    for fleet in fleets:
        log = fleet.process.log()
        assert fleet.process.alive(), f"{fleet.name} operator exited:\n{log[-5000:]}"
        assert fleet.process.starts == 1
        assert "Traceback" not in log, f"{fleet.name} logged a traceback:\n{log[-8000:]}"
    print(f"UK API answers by mode: {dict(server.served)}")
    summaries = [
        check_releases(fleets[0], results["fallback"], clock, gap, horizon, fallback=True),
        check_releases(fleets[1], results["ukci-only"], clock, gap, horizon, fallback=False),
    ]
    for fleet in fleets:
        outcomes = provider_outcomes(fleet.metrics_port, "ukci")
        print(f"{fleet.name}: ukci requests by outcome {dict(outcomes)}")
        # 500 and 503 count as "unavailable", slow answers as "timeout", bad JSON "bad_data"
        for outcome in ("ok", "unavailable", "timeout", "bad_data"):
            assert outcomes[outcome] > 0, f"{fleet.name}: no ukci {outcome}: {outcomes}"
    assert provider_outcomes(fleets[0].metrics_port, "trace")["ok"] > 0
    assert {m for m, n in server.served.items() if n} == {"ok"} | FAULTS, server.served
    for summary in summaries:
        print(summary)


def check_releases(
    fleet: Fleet,
    items: list[dict[str, Any]],
    clock: ScaledClock,
    gap: timedelta,
    horizon: timedelta,
    *,
    fallback: bool,
) -> str:
    """Every release on time, with a reason the data supported; returns a summary line.

    ``gap`` is the longest measured gap between two ticks (operator time): a tick is the
    configured interval or that, whichever is longer. Decisions look ahead by the decision
    horizon, twice the tick or 1.5 times the longest recent gap between decisions (the
    largest the operators reported is ``horizon``), so a deadline release comes at most that
    (and half a tick of polling) early, and at most a tick late."""
    tick = max(TICK, gap)
    earliest = max(2 * TICK, 1.5 * gap, horizon) + TICK / 2
    by_reason: Counter[str] = Counter()
    sources: dict[str, Counter[str]] = {"ok": Counter(), "fault": Counter()}
    lateness: list[timedelta] = []
    for obj in items:
        name, status = obj["metadata"]["name"], obj["status"]
        reason = condition(obj, "Released")["reason"]  # type: ignore[index]
        by_reason[reason] += 1
        released, latest = when(status["releaseTime"]), when(status["latestStartTime"])
        lateness.append(released - latest)
        where = f"{fleet.name}/{name} ({reason})"
        assert released <= latest + tick, f"{where} released {released - latest} late"
        intensity = status.get("intensity", {})
        if reason in ("ProviderUnavailable", "DeadlineReached"):
            assert released >= latest - earliest, f"{where} released long before its latest start"
        if reason == "ProviderUnavailable":
            assert "atRelease" not in intensity, f"{where}: {intensity}"
            assert "source" not in intensity, f"{where}: {intensity}"
        else:
            assert intensity.get("source") in ("ukci", "trace"), f"{where}: {intensity}"
        if reason == "ThresholdMet":
            assert intensity["atRelease"] <= obj["spec"]["schedule"]["maxIntensity"], where
        mode, began = phase_at(released, clock.origin)
        print(
            f"  {fleet.name}/{name}: released at {(released - clock.origin) / MINUTE:5.0f} min"
            f" ({mode}), latest start {(latest - clock.origin) / MINUTE:5.0f} min: {reason}"
            f" {intensity.get('atRelease')} from {intensity.get('source')}"
        )
        if released - began < SETTLE + (tick - TICK):
            continue  # the operator may still act on what it saw in the previous phase
        phase = "fault" if mode in FAULTS else "ok"
        sources[phase][intensity.get("source", "none")] += 1
        if phase == "ok":
            assert intensity.get("source") == "ukci", f"{where} in {mode}: {intensity}"
        elif fallback:
            assert intensity.get("source") == "trace", f"{where} in {mode}: {intensity}"
        else:
            assert reason == "ProviderUnavailable", f"{where} in {mode}: {intensity}"
    if fallback:
        assert "ProviderUnavailable" not in by_reason, by_reason
        assert sources["fault"]["trace"] > 0, sources
    else:
        assert by_reason["ProviderUnavailable"] > 0, by_reason
    assert sources["ok"]["ukci"] > 0, sources
    assert by_reason["LowCarbonWindow"] + by_reason["ThresholdMet"] > 0, by_reason
    late = [d for d in lateness if d > timedelta(0)]
    return (
        f"{fleet.name}: releases by reason {dict(by_reason)}; by phase and source "
        f"{ {k: dict(v) for k, v in sources.items()} }; after the latest start: {len(late)} "
        f"of {len(items)} (most {max(late, default=timedelta(0))} of operator time)"
    )


# --------------------------------------------------------------------------- secrets

EM_TOKEN = "em-token-Zq81xRv0sEcretT0ken"
WT_USER = "carbon-ops"
WT_PASSWORD = "wt-pass-Ky72Lw9sEcretPassw0rd"
WT_BEARER = "wt-bearer-Hj55Dd3sEcretBearer"


class CredentialedApis(ThreadingHTTPServer):
    """Electricity Maps (``auth-token`` header) and WattTime (basic-auth login, bearer
    token) on one loopback port. ``modes[api]``: ``ok``; ``unauthorized`` answers 401 and
    ``error`` answers 500, both echoing back every credential the request carried (the
    header values, the decoded basic-auth pair, the bare bearer token), as a careless
    upstream might."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CredentialedHandler)
        self.modes = {"electricitymaps": "ok", "watttime": "ok"}
        self.served: Counter[tuple[str, str, int]] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CredentialedHandler(BaseHTTPRequestHandler):
    server: CredentialedApis

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        api = "watttime" if url.path.startswith(("/login", "/v3/")) else "electricitymaps"
        authorization = self.headers.get("Authorization", "")
        scheme, _, credential = authorization.partition(" ")
        echoed = [authorization, self.headers.get("auth-token", ""), credential]
        if scheme == "Basic":
            echoed.append(base64.b64decode(credential).decode())
        mode = self.server.modes[api]
        if mode != "ok":
            status = 401 if mode == "unauthorized" else 500
            message = f"refused {' '.join(e for e in echoed if e)}"
            self._send(api, status, {"error": message, "message": message})
            return
        if api == "electricitymaps" and self.headers.get("auth-token") != EM_TOKEN:
            self._send(api, 401, {"error": "missing or wrong auth-token"})
            return
        if url.path == "/login":
            expected = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
            if authorization != f"Basic {expected}":
                self._send(api, 403, {"error": "bad credentials"})
                return
            self._send(api, 200, {"token": WT_BEARER})
            return
        if api == "watttime" and authorization != f"Bearer {WT_BEARER}":
            self._send(api, 401, {"error": "bad token"})
            return
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        if url.path == "/carbon-intensity/latest":
            body: Any = {"zone": query.get("zone"), **hourly(hour, 1, 420)[0]}
        elif url.path == "/carbon-intensity/forecast":
            body = {"zone": query.get("zone"), "forecast": hourly(hour, 48, 420, step=-5)}
        elif url.path == "/carbon-intensity/past-range":
            start = datetime.fromisoformat(query["start"]).replace(minute=0, second=0)
            hours = (datetime.fromisoformat(query["end"]) - start) // timedelta(hours=1)
            body = {"zone": query.get("zone"), "data": hourly(start, max(hours, 1), 400)}
        elif url.path == "/v3/forecast":
            points = 12 * max(int(query.get("horizon_hours", 1)), 1)
            moments = [hour + i * timedelta(minutes=5) for i in range(points)]
            body = {
                "meta": {"units": "lbs_co2_per_mwh", "data_point_period_seconds": 300},
                "data": [
                    {"point_time": f"{m:%Y-%m-%dT%H:%M:%SZ}", "value": 900.0} for m in moments
                ],
            }
        elif url.path == "/v3/signal-index":
            body = {"data": [{"point_time": f"{hour:%Y-%m-%dT%H:%M:%SZ}", "value": 55.0}]}
        else:
            self._send(api, 404, {"error": f"no such path {url.path}"})
            return
        self._send(api, 200, body)

    def _send(self, api: str, status: int, body: Any) -> None:
        with self.server.lock:
            self.server.served[(api, self.server.modes[api], status)] += 1
        content = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def hourly(first: datetime, hours: int, value: float, step: float = 0) -> list[dict[str, Any]]:
    """Electricity Maps hourly entries from ``first``, changing by ``step`` each hour."""
    return [
        {
            "carbonIntensity": value + step * h,
            "datetime": f"{first + h * timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}",
        }
        for h in range(hours)
    ]


@pytest.fixture
def credentialed_apis() -> Iterator[CredentialedApis]:
    server = CredentialedApis()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def secret_forms() -> dict[str, str]:
    """Every credential, raw and in the encodings a request carries it in."""
    basic = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
    return {
        "Electricity Maps token": EM_TOKEN,
        "WattTime password": WT_PASSWORD,
        "WattTime basic-auth header": basic,
        "WattTime bearer token": WT_BEARER,
    }


def test_provider_credentials_never_leave_the_operator(
    crds: Any, namespace: str, credentialed_apis: CredentialedApis, tmp_path: Path
) -> None:
    apis = credentialed_apis
    with serve_uk_api(lambda start: 250.0) as ukapi:
        env = operator_env(
            crds.kubeconfig,
            providers="electricitymaps,watttime,ukci",
            electricitymaps_base_url=apis.url,
            electricitymaps_token=EM_TOKEN,
            watttime_base_url=apis.url,
            watttime_username=WT_USER,
            watttime_password=WT_PASSWORD,
            ukci_base_url=ukapi.url,
            provider_cache_ttl_seconds=1,
            provider_stale_max_age_seconds=0,
            provider_retries=0,
            default_region="DE",
            namespace=namespace,
        )
        process = OperatorProcess(env, tmp_path / "operator.log")
        process.start()
        try:
            run_through_credential_errors(crds, namespace, apis, process)
        finally:
            process.stop()
            print(process.log()[-6000:])

    texts = {"operator log": process.log()}
    for kind in ("caj", "events", "jobs"):
        texts[kind] = json.dumps(crds.kubectl_json("get", kind, "-n", namespace))
    for where, text in texts.items():
        for what, secret in secret_forms().items():
            assert secret not in text, f"the {what} appears in the {where}"
    # The errors did reach the places checked, so the check above looked at them.
    assert "answered HTTP 401" in texts["operator log"]
    assert "answered HTTP 500" in texts["operator log"]
    assert "answered HTTP 401" in texts["caj"] or "answered HTTP 401" in texts["events"]


def held_naming(obj: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The Held condition once its message names ``text``."""
    held = condition(obj, "Held")
    return held if held is not None and text in held.get("message", "") else None


def run_through_credential_errors(
    crds: Any, namespace: str, apis: CredentialedApis, process: OperatorProcess
) -> None:
    """Jobs in zone DE held and released while the upstreams take turns answering 200, 401
    and 500: Electricity Maps first, WattTime (logged in with its password, then with its
    bearer token) when Electricity Maps fails, nothing when both fail."""

    def de_job(name: str, schedule: dict[str, Any]) -> dict[str, Any]:
        return caj(name, schedule, region="DE", jobTemplate=QUICK_JOB_TEMPLATE)

    def get(name: str) -> dict[str, Any]:
        result: dict[str, Any] = crds.kubectl_json("get", "caj", name, "-n", namespace)
        return result

    def released_from(name: str) -> str | None:
        status = get(name).get("status", {})
        return status.get("intensity", {}).get("source") if status.get("releaseTime") else None

    def served(api: str, mode: str) -> int:
        return sum(n for (a, m, _), n in apis.served.items() if (a, m) == (api, mode))

    # A Threshold job that never meets its threshold keeps region DE refreshed every tick.
    crds.apply(de_job("waits", {"policy": "Threshold", "maxIntensity": 10,
                                "maxDelaySeconds": 3600}), namespace=namespace)  # fmt: skip
    steps = (
        ("ok", "ok", "electricitymaps"),
        ("unauthorized", "ok", "watttime"),
        ("unauthorized", "unauthorized", None),
        ("error", "error", None),
        ("ok", "ok", "electricitymaps"),
    )
    for step, (em_mode, wt_mode, source) in enumerate(steps):
        apis.modes.update(electricitymaps=em_mode, watttime=wt_mode)
        # WattTime is asked only when Electricity Maps fails
        asked = {a: m for a, m in apis.modes.items() if a == "electricitymaps" or em_mode != "ok"}
        before = {api: served(api, mode) for api, mode in asked.items()}
        # Twice: an upstream counts a request before the operator has read the answer, and a
        # job's first Held (written once per plan) must name the failure of this step.
        wait_for(
            lambda b=before, q=asked: all(served(a, m) >= b[a] + 2 for a, m in q.items()),  # type: ignore[misc]
            timeout=30,
            what=f"the upstreams asked twice while answering {asked}",
        )
        name = f"step-{step}"
        if source is not None:
            crds.apply(de_job(name, {"policy": "Immediate"}), namespace=namespace)
            got = wait_for(lambda n=name: released_from(n), timeout=60, what=f"{name} released")  # type: ignore[misc]
            assert got == source, (name, apis.modes, got)
        else:
            crds.apply(de_job(name, {"policy": "Forecast", "maxDelaySeconds": 3600}),
                       namespace=namespace)  # fmt: skip
            code = "401" if em_mode == "unauthorized" else "500"
            held = wait_for(
                lambda n=name, c=code: held_naming(get(n), f"answered HTTP {c}"),  # type: ignore[misc]
                timeout=60,
                what=f"{name} held naming HTTP {code} while both upstreams answer {em_mode}",
            )
            assert held["reason"] == "ForecastUnavailable", (name, held)
    assert apis.served[("watttime", "ok", 200)] > 0, apis.served  # the bearer token was used
    assert process.alive()
