"""The operator's metrics, scraped by a real Prometheus, and the Grafana dashboard's queries.

One end-to-end run on the local control plane (module fixture ``run``): the operator as a
process with its metrics port open, Debian's Prometheus scraping it every second, grid
intensity from a local server speaking the UK Carbon Intensity API, a real OpenSSH server as
a reachable ServerTarget and a closed port as an unreachable one. The run holds jobs, releases
some at once and some when the grid gets cleaner, keeps one running, runs a script over SSH
(measured CPU, so a non-zero SCI), runs a CarbonAwareCronJob's one period ten minutes before
its nominal time, lets a plain Job run watched by a Shadow CarbonAwarePolicy (through the
operator's admission webhook), takes the grid API down for a while (errors, then stale
answers) and brings it back.

The tests then read everything back through the Prometheus HTTP API: every collector of
``carbonaware.metrics.Metrics`` has samples with the values the run implies, and every query
of ``helm/carbon-aware-operator/dashboards/carbon-aware-operator.json`` (panel targets,
annotations, template variables, with Grafana's variables substituted) returns data. A
``... or vector(0)`` fallback is also evaluated without the fallback, so a panel never passes
on its placeholder alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from carbonaware.metrics import Metrics

from .operatorproc import (
    BATCH_JOB_TEMPLATE,
    REPO_ROOT,
    OperatorProcess,
    apt_get_install,
    caj,
    cron_job,
    free_port,
    get,
    operator_env,
    status_condition,
    status_of,
    suspended_job,
    wait_for,
)
from .sshd import SshdServer, sshd_server
from .ukapi import UkApiServer, period_start, serve_uk_api
from .webhookbed import Webhook, governed_namespace, installed_webhook, serving

__all__ = ["sshd_server"]

pytestmark = pytest.mark.integration

DASHBOARD = (
    REPO_ROOT / "helm" / "carbon-aware-operator" / "dashboards" / "carbon-aware-operator.json"
)
SCRAPE_SECONDS = 1
# Grafana's maxDataPoints default: $__interval is the range divided by it, at least one scrape.
MAX_DATA_POINTS = 1000
STARTUP_TIMEOUT = 60.0
KEY_SECRET = "server-key"
# The kwok stage that completes pods reads this annotation (see hack/localplane.py).
POD_COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
FALLBACK = re.compile(r"\s+or\s+vector\(0\)\s*$")
# Burns CPU on "the server" for about two seconds, so the SCI of the run is not zero.
BUSY_SCRIPT = "timeout 2 sh -c 'while :; do :; done'; echo done\n"


# --------------------------------------------------------------------------- helpers


def ensure_prometheus() -> str:
    """Debian's prometheus binary, installed with apt-get when missing. Only the binary is
    used: the package's own service (if the post-install script starts one) is ignored."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if found:
        return found
    apt_get_install("prometheus")
    found = shutil.which("prometheus")
    assert found, "apt-get install prometheus did not provide the prometheus binary"
    return found


class Prometheus:
    """A Prometheus server we started, and its HTTP API."""

    def __init__(self, binary: str, workdir: Path, target_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.log_path = workdir / "prometheus.log"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_SECONDS}s\n"
            f"  scrape_timeout: {SCRAPE_SECONDS}s\n"
            f"  evaluation_interval: {SCRAPE_SECONDS}s\n"
            "scrape_configs:\n"
            "  - job_name: carbon-aware-operator\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n",
            encoding="utf-8",
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; the ``data`` of a successful answer."""
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise AssertionError(f"Prometheus refused {path} {params}: {body}") from error
        assert body.get("status") == "success", body
        return body["data"]

    def instant(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now, or None when it has no sample."""
        result = self.instant(expr)
        return float(result[0]["value"][1]) if result else None

    def series(self, expr: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}s"
        )
        assert data["resultType"] == "matrix", data
        return list(data["result"])


def finite_values(result: list[dict[str, Any]]) -> list[float]:
    """Every finite sample value of an instant (``value``) or range (``values``) result."""
    values = [float(item["value"][1]) for item in result if "value" in item]
    values += [float(v) for item in result for _, v in item.get("values", [])]
    return [v for v in values if math.isfinite(v)]


def by_label(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {item["metric"].get(label, ""): float(item["value"][1]) for item in result}


def sample_names(metrics: Metrics) -> dict[str, str]:
    """Every sample name the operator exposes, mapped to its collector's name."""
    names: dict[str, str] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        for family in collector.collect():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",),
            }[family.type]
            for suffix in suffixes:
                names[family.name + suffix] = family.name
    return names


class Grid:
    """The served grid: ``now`` for the period covering the present and the next hour, then
    ``later`` (so the 24 h forecast minimum differs from the current value)."""

    def __init__(self, now: float, later: float) -> None:
        self.now = now
        self.later = later

    def __call__(self, start: datetime) -> float:
        if start >= period_start(datetime.now(UTC)) + timedelta(hours=1):
            return self.later
        return self.now


def long_running_template() -> dict[str, Any]:
    """The Job template with pods that stay Running for ten minutes on the kwok nodes."""
    template = json.loads(json.dumps(BATCH_JOB_TEMPLATE))
    template["spec"]["template"]["metadata"] = {"annotations": {POD_COMPLETE_DELAY: "10m"}}
    return template


def server_target(name: str, host: str, port: int, user: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "ServerTarget",
        "metadata": {"name": name},
        "spec": {
            "host": host,
            "port": port,
            "user": user,
            "privateKeySecretRef": {"name": KEY_SECRET},
            "region": "GB",
            **spec,
        },
    }


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    prometheus: Prometheus
    namespace: str
    started: float
    operator: OperatorProcess
    metrics_port: int
    grid: Grid
    api: UkApiServer
    webhook: Webhook

    def window(self) -> tuple[float, float]:
        return self.started, time.time()


@pytest.fixture(scope="module")
def run(
    crds: Any, sshd_server: SshdServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    plane = crds
    binary = ensure_prometheus()
    workdir = tmp_path_factory.mktemp("metrics-run")
    namespace: str = governed_namespace(plane, plane.create_namespace("metrics"))
    metrics_port = free_port()
    prometheus = Prometheus(binary, workdir, metrics_port)
    grid = Grid(now=300.0, later=180.0)
    try:
        with serve_uk_api(grid) as api, installed_webhook(plane, workdir) as webhook:
            api.actuals = True  # the blend scores the own forecasters on the past actuals
            env = operator_env(
                plane.kubeconfig,
                providers="ukci",
                ukci_base_url=api.url,
                provider_cache_ttl_seconds=1,
                provider_retries=1,
                default_region="GB",
                namespace=namespace,
                metrics_port=metrics_port,
                ssh_mode="InProcess",
                ssh_probe_seconds=2,
                reconcile_seconds=5,  # passes within the run, for the dashboard's panel
                **webhook.settings(),
            )
            operator = OperatorProcess(env, workdir / "operator.log")
            started = time.time()
            operator.start()
            wait_for(prometheus.ready, timeout=STARTUP_TIMEOUT, what="Prometheus to be ready")
            record = Run(prometheus, namespace, started, operator, metrics_port, grid, api, webhook)
            try:
                drive(plane, record, sshd_server)
                yield record
            finally:
                operator.stop()
                print(operator.log()[-20000:])
    finally:
        prometheus.stop()
        plane.delete_namespace(namespace)


def drive(plane: Any, run: Run, server: SshdServer) -> None:
    """The scenario; returns once Prometheus has scraped its outcome."""
    ns, prom = run.namespace, run.prometheus
    wait_for(
        lambda: prom.value('up{job="carbon-aware-operator"}') == 1,
        timeout=STARTUP_TIMEOUT,
        what="Prometheus to scrape the operator's metrics port",
    )
    plane.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": KEY_SECRET},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {"ssh-privatekey": server.client_private_key},
        },
        namespace=ns,
    )
    plane.apply(
        server_target("up", server.host, server.port, server.user, knownHosts=server.known_hosts),
        namespace=ns,
    )
    # Nothing listens on a port just freed: the probe is refused, reachable is 0.
    plane.apply(
        server_target("down", "127.0.0.1", free_port(), server.user, hostKeyPolicy="AcceptAny"),
        namespace=ns,
    )
    plane.apply(caj("waiting", {"policy": "Threshold", "maxIntensity": 100}), namespace=ns)
    plane.apply(caj("cleaner", {"policy": "Threshold", "maxIntensity": 250}), namespace=ns)
    plane.apply(
        caj("long", {"policy": "Immediate"}, jobTemplate=long_running_template()), namespace=ns
    )
    plane.apply(
        caj("scripted", {"policy": "Immediate"}, ssh={"targetRef": {"name": "up"},
                                                      "script": BUSY_SCRIPT}),
        namespace=ns,
    )  # fmt: skip
    # One period, ten minutes ahead, whose window opened an hour before it: it runs at once.
    nominal = (datetime.now(UTC) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    plane.apply(
        cron_job("yearly", f"{nominal:%M %H %d %m} *", caj("run", {"policy": "Immediate"}),
                 windowBeforeSeconds=3600),
        namespace=ns,
    )  # fmt: skip
    plane.apply(
        suspended_job(
            "plain",
            labels={"carbonaware.io/managed": "true"},
            annotations={
                "carbonaware.io/policy": "Threshold",
                "carbonaware.io/max-intensity": "250",
            },
        ),
        namespace=ns,
    )

    # A plain Job a Shadow policy watches: it runs at once, measured against the policy's plan
    # (the grid is cleaner from the next hour on).
    plane.apply({"apiVersion": "carbonaware.io/v1alpha1", "kind": "CarbonAwarePolicy",
                 "metadata": {"name": "try-first"},
                 "spec": {"mode": "Shadow", "schedule": {"policy": "Forecast",
                                                         "maxDelaySeconds": 21600}}},
                namespace=ns)  # fmt: skip
    wait_for(lambda: serving(run.webhook.port), timeout=60, what="the policy webhook")
    shadowed = json.loads(json.dumps(BATCH_JOB_TEMPLATE))
    shadowed.update(apiVersion="batch/v1", kind="Job", metadata={"name": "shadowed"})
    plane.apply(shadowed, namespace=ns)

    def state(name: str) -> str | None:
        return status_of(plane, "caj", ns, name).get("state")

    for name in ("waiting", "cleaner"):
        wait_for(lambda n=name: state(n) == "Held", timeout=30, what=f"{name} held")
    wait_for(lambda: state("long") == "Running", timeout=60, what="long running")
    scripted = wait_for(
        lambda: (s := status_of(plane, "caj", ns, "scripted")).get("sci") and s,
        timeout=90,
        what="the SSH run's SCI",
    )
    assert scripted["state"] == "Succeeded", scripted
    assert scripted["sci"]["totalGrams"] > 0, scripted["sci"]
    cron_run = f"yearly-{int(nominal.timestamp()) // 60}"
    wait_for(lambda: state(cron_run) == "Succeeded", timeout=60, what="the cron job's run")
    for name, reachable in (("up", "True"), ("down", "False")):
        wait_for(
            lambda n=name, r=reachable: (c := status_condition(status_of(plane, "srv", ns, n),
                                                        "Reachable"))
            and c["status"] == r,
            timeout=60,
            what=f"ServerTarget {name} probed",
        )  # fmt: skip

    # The grid API fails for a while: failed attempts, then stale answers from the cache.
    run.api.mode = "down"

    def requests(outcome: str) -> float:
        return prom.value(f'sum(carbonaware_provider_requests_total{{outcome="{outcome}"}})') or 0

    wait_for(
        lambda: requests("stale") > 0 and requests("unavailable") > 0,
        timeout=60,
        what="failed and stale provider requests in Prometheus",
    )  # fmt: skip
    run.api.mode = "ok"

    # A cleaner grid releases the jobs waiting for at most 250 g; they run and are measured.
    run.grid.now = 200.0
    wait_for(lambda: state("cleaner") == "Succeeded", timeout=60, what="cleaner to succeed")
    wait_for(
        lambda: get(plane, "job", ns, "plain")["metadata"]["annotations"].get(
            "carbonaware.io/state"
        )
        == "Succeeded",
        timeout=60,
        what="the plain Job to succeed",
    )
    wait_for(
        lambda: "carbonaware.io/shadow-would-have-grams"
        in get(plane, "job", ns, "shadowed")["metadata"]["annotations"],
        timeout=60,
        what="the Shadow Job's figures",
    )
    assert state("waiting") == "Held"

    # Everything above is in Prometheus once the last changes have been scraped.
    expected = {
        f'sum(carbonaware_releases_total{{namespace="{ns}", reason="ThresholdMet"}})': 2,
        f'sum(carbonaware_run_sci_grams_count{{namespace="{ns}"}})': 5,
        f'sum(carbonaware_jobs{{namespace="{ns}", state="Succeeded"}})': 4,
        'carbonaware_grid_intensity_grams_per_kwh{region="GB"}': 200,
    }
    for expr, value in expected.items():
        wait_for(
            lambda e=expr, v=value: prom.value(e) == v,
            timeout=30,
            what=f"{expr} == {value} in Prometheus",
        )


# --------------------------------------------------------------------------- metrics


def test_every_metric_is_exported_with_the_values_of_the_run(run: Run) -> None:
    prom, ns = run.prometheus, run.namespace
    for sample, collector in sample_names(Metrics()).items():
        assert prom.instant(f'count({sample}{{job="carbon-aware-operator"}})'), (
            f"{sample} ({collector}) has no samples in Prometheus"
        )

    # Grid: the current value of the served grid, the lowest period of the next 24 h.
    now = by_label(prom.instant("carbonaware_grid_intensity_grams_per_kwh"), "source")
    assert now == {"ukci": 200.0}
    assert prom.value('carbonaware_grid_intensity_forecast_min_grams_per_kwh{region="GB"}') == 180
    # The blend: the own forecasters scored on the past actuals at once; the provider, not
    # scored in minutes, trusted alone.
    own_error = prom.value('carbonaware_forecast_mae_grams{region="GB",source="own",lead="0-3h"}')
    assert own_error is not None
    assert own_error >= 0
    weights = by_label(
        prom.instant('carbonaware_forecast_weight{region="GB",lead="24-48h"}'), "source"
    )
    assert weights == {"provider": 1.0, "own": 0.0}

    # Jobs by state and kind: one waits, one runs, four succeeded (three CarbonAwareJobs, one of
    # them the cron job's run, and one Job).
    jobs = prom.instant(f'carbonaware_jobs{{namespace="{ns}"}} > 0')
    counts = {(i["metric"]["kind"], i["metric"]["state"]): float(i["value"][1]) for i in jobs}
    assert counts == {
        ("CarbonAwareJob", "Held"): 1,
        ("CarbonAwareJob", "Running"): 1,
        ("CarbonAwareJob", "Succeeded"): 3,
        ("Job", "Succeeded"): 1,
    }

    releases = by_label(prom.instant(f'carbonaware_releases_total{{namespace="{ns}"}}'), "reason")
    assert releases == {"Immediate": 3, "ThresholdMet": 2}
    holds = by_label(
        prom.instant(f'carbonaware_hold_duration_seconds_count{{namespace="{ns}"}}'), "policy"
    )
    assert holds == {"Immediate": 3, "Threshold": 2}
    held_for = prom.value(
        f'carbonaware_hold_duration_seconds_sum{{namespace="{ns}", policy="Threshold"}}'
    )
    assert held_for is not None
    assert held_for > 1.0  # they waited for the grid to change

    # Carbon: the SSH run burned real CPU, so grams and energy are positive. Every run here
    # starts in the half hour it was created in, so had each started at creation it would
    # have emitted the same: the counterfactual counter equals the emitted one.
    emitted = prom.value(f'carbonaware_emitted_grams_total{{namespace="{ns}"}}') or 0
    assert emitted > 0
    assert (prom.value(f'carbonaware_energy_kwh_total{{namespace="{ns}"}}') or 0) > 0
    counterfactual = prom.value(f'carbonaware_counterfactual_grams_total{{namespace="{ns}"}}')
    assert counterfactual == pytest.approx(emitted, rel=1e-9)
    assert prom.value(f'carbonaware_run_sci_grams_count{{namespace="{ns}"}}') == 5
    assert (prom.value(f'carbonaware_run_sci_grams_sum{{namespace="{ns}"}}') or 0) > 0

    # The cron job: one period, its run created and released about ten minutes early.
    periods = by_label(
        prom.instant(f'carbonaware_cronjob_periods_total{{namespace="{ns}"}}'), "outcome"
    )
    assert periods == {"created": 1}
    selector = f'{{namespace="{ns}", direction="before"}}'
    assert prom.value(f"carbonaware_cronjob_start_offset_seconds_count{selector}") == 1
    early = prom.value(f"carbonaware_cronjob_start_offset_seconds_sum{selector}") or 0
    assert 60 < early <= 600

    # Provider: successful requests, failed attempts while the API was down, stale answers.
    outcomes = by_label(prom.instant("carbonaware_provider_requests_total"), "outcome")
    assert {"ok", "unavailable", "stale"} <= set(outcomes), outcomes
    assert all(count > 0 for count in outcomes.values()), outcomes
    assert {
        i["metric"]["provider"] for i in prom.instant("carbonaware_provider_requests_total")
    } == {"ukci"}

    # The Shadow policy: one Job seen by the webhook, run at once; held to the policy's plan
    # (the grid 180 g from the next hour instead of 300 g now) it would have emitted less.
    admissions = by_label(
        prom.instant(f'carbonaware_policy_admissions_total{{namespace="{ns}"}}'), "outcome"
    )
    assert admissions == {"shadowed": 1}
    shadow = f'{{namespace="{ns}", policy="try-first"}}'
    shadow_emitted = prom.value(f"carbonaware_shadow_emitted_grams_total{shadow}") or 0
    would_have = prom.value(f"carbonaware_shadow_would_have_grams_total{shadow}") or 0
    assert 0 < would_have < shadow_emitted

    reachable = by_label(
        prom.instant(f'carbonaware_servertarget_reachable{{namespace="{ns}"}}'), "target"
    )
    assert reachable == {"up": 1, "down": 0}
    assert (prom.value("carbonaware_refresh_duration_seconds_count") or 0) >= 5


def test_the_report_adds_the_operators_counters_from_prometheus(crds: Any, run: Run) -> None:
    """``kubectl carbonaware report --prometheus``: the statuses' runs and, beside them, the
    operator's own counters over the period (which would also count runs whose objects are
    gone); the counters start at zero, so increase() counts the namespace's first run too."""
    prom, ns = run.prometheus, run.namespace
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARBONAWARE_", "KUBECONFIG"))}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kubectl-carbonaware")), "report", "--since", "1d",
         "-n", ns, "-o", "json", f"--prometheus={prom.url}", f"--kubeconfig={crds.kubeconfig}"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    print(json.dumps(document, indent=1))
    (counted,) = document["operatorMetrics"]
    assert counted["namespace"] == ns
    # three CarbonAwareJobs (one a cron job's run), a Job and a Job a Shadow policy watched,
    # from their statuses and annotations
    assert document["total"]["runs"] == 5
    # increase() is evaluated at the last scrape and the counters start at zero, so it does not
    # extrapolate (it added 5.1 % under load when evaluated at "now").
    assert counted["runs"] == pytest.approx(5, rel=0.05)
    emitted = prom.value(f'carbonaware_emitted_grams_total{{namespace="{ns}"}}')
    assert counted["emittedGrams"] == pytest.approx(emitted, rel=0.05)
    assert counted["emittedGrams"] == pytest.approx(document["total"]["emittedGrams"], rel=0.05)
    assert counted["avoidedGrams"] == pytest.approx(0.0, abs=0.05 * counted["emittedGrams"])


def test_operator_listens_on_its_metrics_and_webhook_ports_only(run: Run) -> None:
    assert listening_ports(run.operator.pid) == {run.metrics_port, run.webhook.port}


# --------------------------------------------------------------------------- dashboard


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    instant: bool
    step: int | None = None


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every PromQL query of the dashboard: panel targets (rows' nested panels included) and
    annotation queries."""
    queries: list[Query] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            if panel.get("type") != "row":
                assert panel.get("targets"), f"panel {panel.get('title')!r} has no query"
            for target in panel.get("targets", []):
                where = f"panel {panel.get('title')!r} target {target.get('refId')}"
                queries.append(Query(where, target["expr"], bool(target.get("instant"))))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            step = parse_duration(annotation["step"]) if annotation.get("step") else None
            queries.append(
                Query(f"annotation {annotation['name']!r}", annotation["expr"], False, step)
            )
    return queries


def parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", text)
    assert match, f"unexpected duration {text!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's variable syntaxes ($name, ${name}, [[name]]) replaced; none may remain."""
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name]
        expr = expr.replace(f"${{{name}}}", value).replace(f"[[{name}]]", value)
        expr = re.sub(rf"\${re.escape(name)}\b", lambda _, v=value: v, expr)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    assert "[[" not in expr, f"unknown variable left in {expr!r}"
    return expr


def grafana_variables(namespace: str, start: float, end: float) -> dict[str, str]:
    """What Grafana would substitute for this time range with a 1 s scrape interval data
    source and one namespace selected."""
    span = max(int(end - start), 1)
    interval = max(math.ceil(span / MAX_DATA_POINTS), SCRAPE_SECONDS)
    return {
        "namespace": namespace,  # one value selected: inserted as is
        "__interval": f"{interval}s",
        "__interval_ms": str(interval * 1000),
        # Grafana: max($__interval + scrape interval, 4 x scrape interval).
        "__rate_interval": f"{max(interval + SCRAPE_SECONDS, 4 * SCRAPE_SECONDS)}s",
        "__range": f"{span}s",
        "__range_s": str(span),
        "__range_ms": str(span * 1000),
    }


def evaluate(
    prom: Prometheus, query: Query, expr: str, start: float, end: float, step: int
) -> list[float]:
    if query.instant:
        return finite_values(prom.instant(expr, at=end))
    if query.step:
        # Annotations are evaluated on their own step; align the range so ``end`` is a point.
        step = query.step
        start = end - step * max(math.ceil((end - start) / step), 1)
    return finite_values(prom.series(expr, start, end, step))


def test_every_dashboard_query_returns_data(run: Run) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    start, end = run.window()
    variables = grafana_variables(run.namespace, start, end)
    step = int(variables["__interval"].rstrip("s"))
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20
    empty: list[str] = []
    for query in queries:
        expr = substitute(query.expr, variables)
        candidates = [expr]
        if FALLBACK.search(expr):
            candidates.append(FALLBACK.sub("", expr))  # the data, not the placeholder
        for candidate in candidates:
            if not evaluate(run.prometheus, query, candidate, start, end, step):
                empty.append(f"{query.where}: {candidate}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_dashboard_variable_query_returns_data(run: Run) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    start, end = run.window()
    variables = dashboard["templating"]["list"]
    assert variables
    for variable in variables:
        if variable["type"] == "datasource":
            assert variable["query"] == "prometheus"  # Grafana lists data sources; no query
            continue
        assert variable["type"] == "query", variable
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match, f"variable {variable['name']}: unsupported query {query!r}"
        metric, label = match.groups()
        values = run.prometheus.api(
            f"label/{label}/values", **{"match[]": metric, "start": start, "end": end}
        )
        assert run.namespace in values, (variable["name"], values)


# --------------------------------------------------------------------------- the port setting


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on: its socket inodes matched against /proc/net/tcp*."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            listening = fields[3] == "0A"
            if listening and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_metrics_port_zero_serves_nothing(crds: Any, tmp_path: Path) -> None:
    env = operator_env(crds.kubeconfig, providers="static", static_intensity=100,
                       metrics_port=0, health_port=0)  # fmt: skip
    operator = OperatorProcess(env, tmp_path / "operator.log")
    operator.start()
    try:
        wait_for(lambda: "carbon-aware-operator started" in operator.log(), timeout=60,
                 what="the operator to start")  # fmt: skip
        wait_for(lambda: "Activity 'started' succeeded" in operator.log(), timeout=30,
                 what="the start-up handler to finish")  # fmt: skip
        assert operator.alive()
        assert listening_ports(operator.pid) == set()
    finally:
        operator.stop()


def test_metrics_port_in_use_stops_the_operator(crds: Any, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = operator_env(crds.kubeconfig, providers="static", static_intensity=100,
                           metrics_port=port)  # fmt: skip
        operator = OperatorProcess(env, tmp_path / "operator.log")
        operator.start()
        try:
            wait_for(lambda: not operator.alive(), timeout=60, what="the operator to exit")
        finally:
            operator.stop()
    assert operator.process is not None
    assert operator.process.returncode != 0
    assert f"cannot serve metrics on port {port}" in operator.log()
