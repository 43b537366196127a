"""SSH runner pods for real: a container from the operator's image on the real node.

The operator runs as a process in Pod mode; its runner pods use the operator image built
from the Dockerfile and are placed on the real node by the runner settings. The OpenSSH
server listens on this host's non-loopback address, which pods reach over the pod network.
The runner mounts the key from the Secret, checks the host key against the ServerTarget's
``knownHosts``, runs the script and reports through its termination message: the exit code,
the output (the runner pod's log) and the SCI are recorded. With a wrong host key nothing runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api.labels import CANCEL

from .manifests import KEY_SECRET, key_secret, server_target, ssh_job
from .operatorproc import (
    OperatorProcess,
    get,
    operator_env,
    pid_alive,
    real_node_runner_settings,
    status_condition,
    status_of,
    wait_for,
    when,
)
from .sshd import SshdServer, generate_key_pair, known_hosts_line
from .test_ssh_operator import SCI_FIELDS, assert_no_key_material

pytestmark = pytest.mark.integration

HARDWARE = {"vcpus": 2, "minWatts": 10, "maxWatts": 60, "memoryGiB": 8, "embodiedKgCO2e": 300}


def start_operator(plane: Any, namespace: str, log: Path) -> OperatorProcess:
    env = operator_env(
        plane.kubeconfig,
        providers="static",
        static_intensity=200,
        namespace=namespace,
        **real_node_runner_settings(plane),
    )
    operator = OperatorProcess(env, log)
    operator.start()
    return operator


def pod_uid(plane: Any, namespace: str, name: str) -> str | None:
    out = plane.kubectl("get", "pod", name, "-n", namespace, "--ignore-not-found",
                        "-o", "jsonpath={.metadata.uid}").stdout  # fmt: skip
    return out.strip() or None


def finished(plane: Any, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status_of(plane, "caj", namespace, name)).get("completionTime") and s,
        timeout=240,
        what=f"{name} to finish",
    )


def test_real_node_runner_pod_runs_the_script_over_ssh_and_records_it(
    real_node_crds: Any,
    real_node_namespace: str,
    real_node_sshd: SshdServer,
    tmp_path: Path,
) -> None:
    plane, namespace, server = real_node_crds, real_node_namespace, real_node_sshd
    workdir = tmp_path / "work"
    workdir.mkdir()
    plane.apply(key_secret(KEY_SECRET, server.client_private_key), namespace=namespace)
    plane.apply(server_target("box", server, hardware=HARDWARE), namespace=namespace)
    _, other_host_public = generate_key_pair(tmp_path, "other_host")
    plane.apply(
        server_target(
            "impostor",
            server,
            knownHosts=known_hosts_line(server.host, server.port, other_host_public),
        ),
        namespace=namespace,
    )
    script = (
        "#!/bin/sh\n"
        'echo "ran as $(id -un) in $(pwd)"\n'
        'echo "$MODE" > marker\n'
        # Up to five seconds of one busy core, so the run's SCI is clearly not zero.
        "timeout 5 sh -c 'while :; do :; done'\n"
        "exit 0\n"
    )
    plane.apply(ssh_job("nightly", "box", workingDir=str(workdir), script=script,
                        env=[{"name": "MODE", "value": "full"}]), namespace=namespace)  # fmt: skip
    plane.apply(ssh_job("failing", "box", workingDir=str(workdir), command="echo oops; exit 3"),
                namespace=namespace)  # fmt: skip
    plane.apply(ssh_job("spoofed", "impostor", workingDir=str(workdir),
                        command="touch spoofed-marker"), namespace=namespace)  # fmt: skip
    operator = start_operator(plane, namespace, tmp_path / "operator.log")
    try:
        nightly = finished(plane, namespace, "nightly")
        failing = finished(plane, namespace, "failing")
        spoofed = finished(plane, namespace, "spoofed")
    finally:
        operator.stop()
        print(operator.log()[-4000:])

    # The script ran on the server, from a real container on the real node.
    assert nightly["state"] == "Succeeded", nightly
    assert (workdir / "marker").read_text() == "full\n"
    pod = get(plane, "pod", namespace, nightly["podName"])
    assert pod["spec"]["nodeName"] == plane.real_node_name
    (container,) = pod["spec"]["containers"]
    assert container["image"] == plane.images.operator.name
    (container_status,) = pod["status"]["containerStatuses"]
    assert container_status["state"]["terminated"]["exitCode"] == 0
    assert container_status["imageID"], "the container ran from an image in containerd"
    log = plane.kubectl("logs", nightly["podName"], "-n", namespace).stdout
    assert f"ran as {server.user} in {workdir}" in log, log
    # Its SCI comes from the server's /proc/stat, sampled by the runner, on the
    # ServerTarget's hardware figures; the run's times are the runner's.
    sci = nightly["sci"]
    assert set(sci) == SCI_FIELDS, sci
    assert sci["cpuCoreSeconds"] > 1.0, sci
    assert sci["energyKWh"] > 0
    assert "cpu=runner" in sci["method"], sci["method"]
    assert "linear(hardware)" in sci["method"], sci["method"]
    message = container_status["state"]["terminated"]["message"]
    summary = json.loads(message)
    assert sci["cpuCoreSeconds"] == pytest.approx(summary["cpuCoreSeconds"])
    assert when(nightly["startTime"]) == when(summary["startTime"]).replace(microsecond=0)
    assert "Traceback" not in operator.log()
    assert_no_key_material(plane, namespace, operator, server.client_private_key)

    # A non-zero exit code is recorded as such.
    assert failing["state"] == "Failed", failing
    failed = status_condition(failing, "Failed")
    assert failed is not None
    assert "exited with 3" in failed["message"], failed

    # With a host key that does not match, nothing runs.
    assert spoofed["state"] == "Failed", spoofed
    refused = status_condition(spoofed, "Failed")
    assert refused is not None
    assert "host key" in (refused["reason"] + refused["message"]).lower(), refused
    assert not (workdir / "spoofed-marker").exists()


def test_real_node_runner_pod_deleted_mid_run_lets_go_and_cancel_or_delete_stops_the_run(
    real_node_crds: Any,
    real_node_namespace: str,
    real_node_sshd: SshdServer,
    tmp_path: Path,
) -> None:
    """A deleted runner pod (what an eviction or a drain does) only lets go of the run: a new
    pod attaches and the job succeeds, having run once. Cancelling or deleting the job stops
    its run on the server, although the operator has no right to delete pods."""
    plane, namespace, server = real_node_crds, real_node_namespace, real_node_sshd
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    plane.apply(key_secret(KEY_SECRET, server.client_private_key), namespace=namespace)
    plane.apply(server_target("box", server, maxConcurrent=3), namespace=namespace)

    def script(name: str) -> str:
        return (
            f'echo "$$" > {work}/{name}.pid\n'
            f"echo {name} >> {work}/starts\n"
            f'i=0; while [ ! -e {work}/{name}.go ]; do i=$((i+1)); [ "$i" -gt 2400 ] && exit 7; '
            "sleep 0.1; done\n"
            f"echo {name} >> {work}/ends\n"
        )

    for name in ("evicted", "cancelled", "deleted"):
        plane.apply(ssh_job(name, "box", script=script(name)), namespace=namespace)
    operator = start_operator(plane, namespace, tmp_path / "operator.log")
    try:
        pids = {
            name: wait_for(
                lambda name=name: (f := work / f"{name}.pid").exists()  # type: ignore[misc]
                and f.read_text().strip()
                and int(f.read_text()),
                timeout=180,
                what=f"the run of {name} to start on the server",
            )
            for name in ("evicted", "cancelled", "deleted")
        }
        evicted_pod = status_of(plane, "caj", namespace, "evicted")["podName"]
        first_uid = pod_uid(plane, namespace, evicted_pod)
        plane.kubectl("delete", "pod", evicted_pod, "-n", namespace, "--wait=true")
        assert pid_alive(pids["evicted"]), "deleting the runner pod stopped the run"
        wait_for(
            lambda: pod_uid(plane, namespace, evicted_pod) not in (None, first_uid),
            timeout=60,
            what="a new runner pod attached to the run",
        )
        (work / "evicted.go").touch()
        evicted = finished(plane, namespace, "evicted")

        plane.kubectl("annotate", "caj", "cancelled", "-n", namespace, f"{CANCEL}=true")
        cancelled = finished(plane, namespace, "cancelled")
        wait_for(lambda: not pid_alive(pids["cancelled"]), timeout=60,
                 what="the cancelled run to be stopped on the server")  # fmt: skip

        plane.kubectl("delete", "caj", "deleted", "-n", namespace, "--wait=true")
        wait_for(lambda: not pid_alive(pids["deleted"]), timeout=60,
                 what="the deleted job's run to be stopped on the server")  # fmt: skip
    finally:
        for name in ("evicted", "cancelled", "deleted"):
            (work / f"{name}.go").touch()  # whatever failed, nothing waits on the server
        operator.stop()
        print(operator.log()[-6000:])

    assert evicted["state"] == "Succeeded", evicted
    assert (work / "starts").read_text().split().count("evicted") == 1
    assert (work / "ends").read_text().split() == ["evicted"]
    assert cancelled["state"] == "Failed", cancelled
    failed = status_condition(cancelled, "Failed")
    assert failed is not None
    assert failed["reason"] == "Cancelled", failed
    assert "stopped on its server" in failed["message"], failed
    assert (work / "starts").read_text().split().count("cancelled") == 1
