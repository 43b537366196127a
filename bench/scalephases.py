"""The phases of one ``bench/scale.py`` run: creation, steady ticks, single new jobs, a
re-plan of every job, the release burst, and the plane's memory."""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scaletools import (
    FLIPPED_VALUE,
    GROUP_PATH,
    REGIONS,
    Figures,
    Setup,
    cpu_seconds,
    fleet,
    log,
    manifest,
    percentile,
    request_kind,
    rss_mib,
    wait_until,
)


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
