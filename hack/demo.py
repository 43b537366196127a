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
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HACK = Path(__file__).resolve().parent
sys.path.insert(0, str(HACK))

import localplane  # noqa: E402 - hack/ is not a package
import sshd  # noqa: E402
from demokit.common import (  # noqa: E402
    CLUSTER_JOBS,
    NAMESPACE,
    PLAIN_JOB,
    REAL_NODE_BURN_SECONDS,
    REAL_NODE_JOB,
    REGION,
    REPO_ROOT,
    SETTLE_TIMEOUT_SECONDS,
    SOON_SECONDS,
    SSH_FIRST,
    SSH_PROBE_SECONDS,
    SSH_SECOND,
    STARTED_ENV,
    TICK_SECONDS,
    VENV_PYTHON,
    DemoError,
    condition,
    get_json,
    hhmm,
    load_state,
    metrics_port,
    metrics_text,
    note,
    poll,
    save_state,
    step,
    workdir,
)
from demokit.environment import (  # noqa: E402
    apply_crds,
    apply_objects,
    ensure_plane,
    ensure_venv,
    fresh_namespace,
    in_venv,
    port_is_free,
    stop_operator,
    stop_server,
    venv_ready,
)
from demokit.jobs import (  # noqa: E402
    grid_outlook,
    job_manifest,
    on_real_node,
    server_objects,
    ssh_job,
    thresholds,
)
from demokit.show import Watcher, print_summary  # noqa: E402

_T0 = float(os.environ.get(STARTED_ENV) or time.time())


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
        if not in_venv() or not venv_ready():
            ensure_venv()  # then start again in it: this interpreter's imports predate it
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
