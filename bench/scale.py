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
machine's load: the load average is printed with the figures, and nothing is asserted. The
instruments are in ``scaletools.py``, the phases in ``scalephases.py``.

    .venv/bin/python bench/scale.py                    # 10,000 jobs, 60 s ticks (~8 min)
    .venv/bin/python bench/scale.py --runs 2
    .venv/bin/python bench/scale.py --jobs 2000 --tick 10 --ticks 3
    .venv/bin/python bench/scale.py --profile /tmp/operator.prof   # operator under cProfile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planeloader import REPO_ROOT
from scalephases import (
    phase_create,
    phase_plane,
    phase_probe,
    phase_release,
    phase_replan,
    phase_steady,
)
from scaletools import (
    REGIONS,
    Api,
    CajWatch,
    Figures,
    Grid,
    Metrics,
    Operator,
    Setup,
    load_average,
    localplane,
    log,
    operatorproc,
    rss_mib,
    ukapi,
    wait_until,
)

ATTRIBUTION = (
    "Grid values are synthetic, served in the shapes of the Carbon Intensity API (NESO, CC BY 4.0)."
)


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
        metrics_port = operatorproc.free_port()
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
