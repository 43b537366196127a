"""What the demo prints: each object's state as it changes, whether all have settled, and the
summary at the end (jobs, their SCI, the ServerTarget, metrics, what to try)."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from demokit.common import (
    ATTRIBUTION,
    NAMESPACE,
    PLAIN_JOB,
    SOON_SECONDS,
    condition,
    get_json,
    heading,
    hhmm,
    load_state,
    metrics_text,
    parse_time,
    table,
)

# --------------------------------------------------------------------------- watching


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
