"""ServerTargets and SSH CarbonAwareJobs end to end: the operator as a process on the real
local control plane, a real OpenSSH server on loopback, grid intensity from a local server
speaking the UK Carbon Intensity API.

The sshd runs on this machine as the test user, so what a job did on "the server" is read
straight from the file system (marker files, run logs, /proc).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from .manifests import KEY_SECRET, key_secret, server_target, ssh_job
from .operatorproc import (
    OperatorProcess,
    free_port,
    get,
    operator_env,
    pid_alive,
    status_condition,
    status_of,
    wait_for,
    when,
)
from .sshd import SshdServer, generate_key_pair, known_hosts_line, sshd_server
from .ukapi import UkApiServer, serve_uk_api

__all__ = ["sshd_server"]

pytestmark = pytest.mark.integration

FINISHED = ("Succeeded", "Failed")
SCI_FIELDS = {
    "energyKWh",
    "operationalGrams",
    "embodiedGrams",
    "totalGrams",
    "perUnitGrams",
    "functionalUnit",
    "avoidedGrams",
    "method",
    "cpuCoreSeconds",
    "cpuKWh",
    "memoryKWh",
    "energySource",
    "intensitySource",
}
HARDWARE = {
    "vcpus": 8,
    "minWatts": 40,
    "maxWatts": 200,
    "memoryGiB": 32,
    "embodiedKgCO2e": 1200,
    "lifespanYears": 4,
}


# --------------------------------------------------------------------------- helpers


class Grid:
    """Every period of the served forecast has intensity ``now`` (gCO2e/kWh)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self, start: datetime) -> float:
        return self.now


def wait_finished(plane: Any, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    """The job's status once it is Succeeded or Failed."""
    return wait_for(
        lambda: (s := status_of(plane, "caj", namespace, name)).get("state") in FINISHED and s,
        timeout=timeout,
        what=f"CarbonAwareJob {name} to finish",
    )  # fmt: skip


def key_fragments(private_key: str) -> list[str]:
    """Texts that must never leave the Secret: the key, its base64, each line of its body."""
    body_lines = [
        line.strip()
        for line in private_key.splitlines()
        if line.strip() and not line.startswith("-----")
    ]
    return [
        private_key.strip(),
        base64.b64encode(private_key.encode()).decode(),
        *(line for line in body_lines if len(line) >= 16),
    ]


def assert_no_key_material(
    plane: Any, namespace: str, operator: OperatorProcess, private_key: str
) -> None:
    """Neither the operator's log, nor the Events, nor our objects' statuses show the key."""
    events = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    statuses = [
        item.get("status")
        for kind in ("caj", "srv")
        for item in plane.kubectl_json("get", kind, "-n", namespace)["items"]
    ]
    places = {
        "the operator log": operator.log(),
        "the Events": json.dumps(events),
        "the statuses": json.dumps(statuses),
    }
    assert events, "there are Events to search"
    assert statuses, "there are statuses to search"
    for where, text in places.items():
        for fragment in key_fragments(private_key):
            assert fragment not in text, f"key material found in {where}"


def processes_with(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def grid() -> Iterator[tuple[Grid, UkApiServer]]:
    intensity = Grid(now=300.0)
    with serve_uk_api(intensity) as server:
        yield intensity, server


@pytest.fixture
def start_operator(
    crds: Any, namespace: str, grid: tuple[Grid, UkApiServer], tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """Starts the operator (watching only this test's namespace) in the given SSH mode."""
    started: list[OperatorProcess] = []
    _, server = grid

    def start(ssh_mode: str, **settings: Any) -> OperatorProcess:
        defaults: dict[str, Any] = {"providers": "ukci", "ukci_base_url": server.url}
        env = operator_env(
            crds.kubeconfig,
            provider_cache_ttl_seconds=1,
            default_region="GB",
            ssh_mode=ssh_mode,
            ssh_probe_seconds=2,
            namespace=namespace,
            **{**defaults, **settings},
        )
        process = OperatorProcess(env, tmp_path / f"operator-{ssh_mode}.log")
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
        print(process.log()[-20000:])


@pytest.fixture
def key_in_namespace(crds: Any, namespace: str, sshd_server: SshdServer) -> SshdServer:
    """The sshd's client key as a kubernetes.io/ssh-auth Secret in the test namespace."""
    crds.apply(key_secret(KEY_SECRET, sshd_server.client_private_key), namespace=namespace)
    return sshd_server


# --------------------------------------------------------------------------- probes


def test_servertarget_probes_report_each_failure_precisely(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    server = key_in_namespace
    _, other_host_public = generate_key_pair(tmp_path, "other_host_key")
    other_client_private, _ = generate_key_pair(tmp_path, "other_client_key")
    crds.apply(key_secret("unknown-key", other_client_private), namespace=namespace)
    wrong_known_hosts = known_hosts_line(server.host, server.port, other_host_public)
    targets = {
        "good": server_target("good", server),
        "wrong-host-key": server_target("wrong-host-key", server, knownHosts=wrong_known_hosts),
        "wrong-user-key": server_target(
            "wrong-user-key", server, privateKeySecretRef={"name": "unknown-key"}
        ),
        "closed-port": server_target("closed-port", server, port=free_port()),
        "no-dns": server_target("no-dns", server, host="no-such-host.invalid"),
        "accept-any": server_target(
            "accept-any", server, knownHosts=None, hostKeyPolicy="AcceptAny"
        ),
        "no-secret": server_target(
            "no-secret", server, privateKeySecretRef={"name": "missing-secret"}
        ),
    }
    for manifest in targets.values():
        crds.apply(manifest, namespace=namespace)
    operator = start_operator("InProcess")

    def probed() -> dict[str, dict[str, Any]] | None:
        items = crds.kubectl_json("get", "srv", "-n", namespace)["items"]
        found = {i["metadata"]["name"]: i.get("status") or {} for i in items}
        ready = all(found.get(name, {}).get("lastProbeTime") for name in targets)
        return found if ready else None

    statuses = wait_for(probed, timeout=60, what="every ServerTarget probed")
    expected = {
        "good": ("True", "Connected"),
        "wrong-host-key": ("False", "HostKeyMismatch"),
        "wrong-user-key": ("False", "AuthFailed"),
        "closed-port": ("False", "Unreachable"),
        "no-dns": ("False", "Unreachable"),
        "accept-any": ("True", "Connected"),
        "no-secret": ("False", "SecretNotFound"),
    }
    for name, (status, reason) in expected.items():
        reachable = status_condition(statuses[name], "Reachable")
        assert reachable is not None, name
        assert (reachable["status"], reachable["reason"]) == (status, reason), (name, reachable)
        assert reachable["message"], name
        assert statuses[name]["running"] == 0, name
        assert statuses[name]["queued"] == 0, name
    assert "no-such-host.invalid" in status_condition(statuses["no-dns"], "Reachable")["message"]  # type: ignore[index]
    assert "missing-secret" in status_condition(statuses["no-secret"], "Reachable")["message"]  # type: ignore[index]

    checked = status_condition(statuses["good"], "HostKeyChecked")
    assert checked is not None
    assert (checked["status"], checked["reason"]) == (
        "True",
        "HostKeyVerified",
    )
    unchecked = status_condition(statuses["accept-any"], "HostKeyChecked")
    assert unchecked is not None
    assert (unchecked["status"], unchecked["reason"]) == ("False", "HostKeyCheckDisabled")
    mismatch = status_condition(statuses["wrong-host-key"], "HostKeyChecked")
    assert mismatch is not None
    assert mismatch["reason"] == "HostKeyMismatch"

    def warning_events() -> list[dict[str, Any]]:
        return [
            e
            for e in crds.kubectl_json("get", "events", "-n", namespace)["items"]
            if e["type"] == "Warning" and e["reason"] == "HostKeyCheckDisabled"
        ]

    warnings = wait_for(warning_events, timeout=30, what="the HostKeyCheckDisabled Event")
    assert {e["involvedObject"]["name"] for e in warnings} == {"accept-any"}
    assert warnings[0]["involvedObject"]["kind"] == "ServerTarget"

    # Probes repeat (ssh_probe_seconds=2): the probe time moves on.
    first = when(statuses["good"]["lastProbeTime"])
    wait_for(
        lambda: when(status_of(crds, "srv", namespace, "good")["lastProbeTime"]) > first,
        timeout=30,
        what="a second probe",
    )
    assert "Traceback" not in operator.log()
    assert_no_key_material(crds, namespace, operator, server.client_private_key)
    assert_no_key_material(crds, namespace, operator, other_client_private)


# --------------------------------------------------------------------------- in-process runs


def test_in_process_job_runs_on_the_server_and_records_sci(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    crds.apply(server_target("box", server, hardware=HARDWARE), namespace=namespace)
    script = (
        "#!/bin/sh\n"
        'echo "$GREETING from $(pwd)" > marker\n'
        # About a second of CPU, so the runner's CPU reading is clearly above zero.
        "i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done\n"
        "echo done >> marker\n"
    )
    crds.apply(
        ssh_job(
            "train",
            "box",
            workingDir=str(workdir),
            script=script,
            env=[{"name": "GREETING", "value": "hello"}],
        ),
        namespace=namespace,
    )
    operator = start_operator("InProcess")
    status = wait_finished(crds, namespace, "train")

    assert status["state"] == "Succeeded", status
    complete = status_condition(status, "Complete")
    assert complete is not None
    assert complete["status"] == "True"
    assert complete["reason"] == "Succeeded"
    assert status_condition(status, "Released")["reason"] == "Immediate"  # type: ignore[index]
    assert (workdir / "marker").read_text() == f"hello from {workdir}\ndone\n"
    assert when(status["releaseTime"]) <= when(status["startTime"])
    assert when(status["startTime"]) <= when(status["completionTime"])
    assert status["region"] == "GB"  # the ServerTarget's region

    sci = status["sci"]
    assert set(sci) == SCI_FIELDS
    assert sci["cpuCoreSeconds"] > 0
    assert sci["energyKWh"] > 0
    assert sci["embodiedGrams"] > 0
    # The ServerTarget's hardware gives both the power model and the embodied emissions.
    assert "linear(hardware)" in sci["method"]
    assert "embodied=hardware" in sci["method"]
    assert "cpu=runner" in sci["method"]
    assert sci["energySource"] == "modelled"  # the runner measured the CPU time
    assert status["intensity"]["runMean"] == 300
    assert sci["operationalGrams"] == pytest.approx(sci["energyKWh"] * 300, rel=1e-6)
    assert sci["totalGrams"] == pytest.approx(sci["operationalGrams"] + sci["embodiedGrams"])
    assert sci["perUnitGrams"] == pytest.approx(sci["totalGrams"])
    assert sci["functionalUnit"] == "1 run"
    # Created and run in the same 300 g/kWh period: nothing avoided.
    assert sci["avoidedGrams"] == pytest.approx(0.0, abs=1e-9)

    events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "train"}
    assert {"Released", "Succeeded"} <= reasons
    assert "Traceback" not in operator.log()
    assert_no_key_material(crds, namespace, operator, server.client_private_key)


def test_in_process_job_failures_have_precise_reasons(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    _, other_host_public = generate_key_pair(tmp_path, "other_host_key")
    other_client_private, _ = generate_key_pair(tmp_path, "other_client_key")
    crds.apply(key_secret("unknown-key", other_client_private), namespace=namespace)
    targets = [
        server_target("good", server, maxConcurrent=4),
        server_target(
            "wrong-host-key",
            server,
            knownHosts=known_hosts_line(server.host, server.port, other_host_public),
        ),
        server_target("wrong-user-key", server, privateKeySecretRef={"name": "unknown-key"}),
        server_target("closed-port", server, port=free_port()),
        server_target("no-dns", server, host="no-such-host.invalid"),
    ]
    for manifest in targets:
        crds.apply(manifest, namespace=namespace)
    sleeper = "sleep 3007"  # a command line no other process on this machine has
    jobs = [
        ssh_job("exit-3", "good", workingDir=str(workdir), command="echo ran > exit-3; exit 3"),
        ssh_job(
            "too-slow",
            "good",
            workingDir=str(workdir),
            script=f"#!/bin/sh\necho $$ > too-slow.pid\n{sleeper} &\necho $! > sleep.pid\nwait\n",
            timeoutSeconds=2,
        ),
        *(
            ssh_job(f"via-{name}", name, workingDir=str(workdir), command=f"touch marker-{name}")
            for name in ("wrong-host-key", "wrong-user-key", "closed-port", "no-dns")
        ),
    ]
    for manifest in jobs:
        crds.apply(manifest, namespace=namespace)
    operator = start_operator("InProcess")

    failed = wait_finished(crds, namespace, "exit-3")
    assert failed["state"] == "Failed"
    assert (workdir / "exit-3").read_text() == "ran\n"
    reason = status_condition(failed, "Failed")
    assert reason is not None
    assert reason["reason"] == "JobFailed"
    assert "3" in reason["message"]
    assert failed["startTime"]
    assert failed["completionTime"]

    timed_out = wait_finished(crds, namespace, "too-slow")
    assert timed_out["state"] == "Failed"
    assert status_condition(timed_out, "Failed")["reason"] == "TimedOut"  # type: ignore[index]
    shell_pid = int((workdir / "too-slow.pid").read_text())
    sleep_pid = int((workdir / "sleep.pid").read_text())
    wait_for(
        lambda: not pid_alive(shell_pid) and not pid_alive(sleep_pid),
        timeout=20,
        what="the timed-out job's processes to be gone",
    )
    assert processes_with(sleeper) == []

    expected = {
        "wrong-host-key": "HostKeyMismatch",
        "wrong-user-key": "AuthFailed",
        "closed-port": "Unreachable",
        "no-dns": "Unreachable",
    }
    for target, reason_text in expected.items():
        status = wait_finished(crds, namespace, f"via-{target}")
        assert status["state"] == "Failed", target
        failure = status_condition(status, "Failed")
        assert failure is not None
        assert failure["reason"] == reason_text, (target, failure)
        assert failure["message"], target
        assert "startTime" not in status, f"{target}: nothing started on the server"
        assert not (workdir / f"marker-{target}").exists(), f"{target}: the command ran"
    events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
    warnings = {
        (e["involvedObject"]["name"], e["reason"]) for e in events if e["type"] == "Warning"
    }
    assert ("via-closed-port", "Unreachable") in warnings
    assert ("too-slow", "TimedOut") in warnings
    assert "Traceback" not in operator.log()
    assert_no_key_material(crds, namespace, operator, server.client_private_key)
    assert_no_key_material(crds, namespace, operator, other_client_private)


def test_max_concurrent_one_runs_jobs_one_after_the_other_by_priority(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    grid: tuple[Grid, UkApiServer],
    tmp_path: Path,
) -> None:
    intensity, _ = grid
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    crds.apply(server_target("gpu-box", server, maxConcurrent=1), namespace=namespace)
    threshold = {"policy": "Threshold", "maxIntensity": 100}

    def logged_run(name: str, seconds: int) -> str:
        return (
            "#!/bin/sh\n"
            f'echo "start {name} $(date +%s.%N)" >> runs.log\n'
            f"sleep {seconds}\n"
            f'echo "end {name} $(date +%s.%N)" >> runs.log\n'
        )

    # The low-priority job is created first: order must come from priority, not age.
    crds.apply(
        ssh_job("cleanup", "gpu-box", schedule=threshold, priority=1,
                workingDir=str(workdir), script=logged_run("cleanup", 1)),
        namespace=namespace,
    )  # fmt: skip
    crds.apply(
        ssh_job("training", "gpu-box", schedule=threshold, priority=10,
                workingDir=str(workdir), script=logged_run("training", 6)),
        namespace=namespace,
    )  # fmt: skip
    operator = start_operator("InProcess")
    for name in ("cleanup", "training"):
        wait_for(
            lambda name=name: (
                c := status_condition(status_of(crds, "caj", namespace, name), "Held")
            )
            and c["reason"] == "WaitingForThreshold",
            timeout=30,
            what=f"{name} held for the threshold",
        )
    queued = wait_for(
        lambda: status_of(crds, "srv", namespace, "gpu-box").get("queued") == 2,
        timeout=30,
        what="both jobs queued on the target",
    )
    assert queued

    intensity.now = 50.0  # both are due in the same tick
    seen_busy = wait_for(
        lambda: (c := status_condition(status_of(crds, "caj", namespace, "cleanup"), "Held"))
        and c["reason"] == "TargetBusy"
        and c,
        timeout=30,
        what="cleanup held with TargetBusy",
    )
    assert "gpu-box" in seen_busy["message"]
    # The release of training and the TargetBusy of cleanup are written in the same tick,
    # concurrently: either may land first.
    wait_for(
        lambda: status_of(crds, "caj", namespace, "training")["state"] in ("Released", "Running"),
        timeout=30,
        what="training released",
    )
    counts = wait_for(
        lambda: (s := status_of(crds, "srv", namespace, "gpu-box")).get("running") == 1
        and s.get("queued") == 1
        and s,
        timeout=30,
        what="running 1 / queued 1 on the ServerTarget",
    )
    assert counts["running"] == 1

    training = wait_finished(crds, namespace, "training", timeout=60)
    cleanup = wait_finished(crds, namespace, "cleanup", timeout=60)
    assert training["state"] == cleanup["state"] == "Succeeded"
    assert status_condition(training, "Released")["reason"] == "ThresholdMet"  # type: ignore[index]
    runs = {}
    for line in (workdir / "runs.log").read_text().splitlines():
        event, name, stamp = line.split()
        runs[(event, name)] = float(stamp)
    assert len(runs) == 4, runs
    assert runs[("start", "training")] < runs[("end", "training")]
    assert runs[("end", "training")] < runs[("start", "cleanup")], "cleanup waited for training"
    assert when(training["completionTime"]) <= when(cleanup["releaseTime"])
    wait_for(
        lambda: (s := status_of(crds, "srv", namespace, "gpu-box")).get("running") == 0
        and s.get("queued") == 0,
        timeout=30,
        what="the target idle again",
    )
    assert "Traceback" not in operator.log()


def test_an_in_process_run_survives_an_operator_sigkill_and_is_recorded_once(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """The run lives on the server under a lease named after the job's UID: the restarted
    operator attaches to it, records its outcome, and never starts it a second time."""
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    crds.apply(server_target("box", server), namespace=namespace)
    crds.apply(
        ssh_job("long", "box", workingDir=str(workdir),
                command="echo start >> runs; touch started; sleep 6; echo done >> runs"),
        namespace=namespace,
    )  # fmt: skip
    operator = start_operator("InProcess")
    wait_for(
        lambda: status_of(crds, "caj", namespace, "long").get("state") == "Running"
        and (workdir / "started").exists(),
        timeout=30,
        what="the run going",
    )
    operator.kill()
    assert (workdir / "runs").read_text() == "start\n", "killed mid-run"
    operator.start()
    status = wait_finished(crds, namespace, "long", timeout=90)
    complete = status_condition(status, "Complete")
    assert complete is not None, status
    assert complete["reason"] == "Succeeded"
    assert (workdir / "runs").read_text() == "start\ndone\n", "ran exactly once"
    assert status["sci"]["cpuCoreSeconds"] >= 0
    assert when(status["completionTime"]) - when(status["startTime"]) >= timedelta(seconds=5)
    assert "attaching to the SSH run" in operator.log()


# --------------------------------------------------------------------------- pod mode


def test_pod_mode_creates_a_locked_down_runner_pod(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    crds.apply(server_target("box", server), namespace=namespace)
    crds.apply(
        ssh_job("nightly", "box", workingDir=str(workdir), command="echo ran > marker",
                env=[{"name": "MODE", "value": "full"}], timeoutSeconds=600),
        namespace=namespace,
    )  # fmt: skip
    operator = start_operator("Pod")
    pod_name = wait_for(
        lambda: status_of(crds, "caj", namespace, "nightly").get("podName"),
        timeout=30,
        what="the runner pod",
    )
    job = get(crds, "caj", namespace, "nightly")
    pod = get(crds, "pod", namespace, pod_name)
    spec = pod["spec"]

    volumes = spec["volumes"]
    secret_volumes = [v for v in volumes if "secret" in v]
    assert len(secret_volumes) == 1
    secret = secret_volumes[0]["secret"]
    assert secret["secretName"] == KEY_SECRET
    assert secret["items"] == [{"key": "ssh-privatekey", "path": "id"}]
    assert secret["defaultMode"] == 0o400
    (container,) = spec["containers"]
    assert container["command"][:3] == ["carbonaware", "runner", "ssh"]
    assert f"--host={server.host}" in container["command"]
    assert f"--port={server.port}" in container["command"]
    assert f"--working-dir={workdir}" in container["command"]
    assert "--host-key-policy=Strict" in container["command"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CARBONAWARE_SSH_COMMAND"] == "echo ran > marker"
    assert env["CARBONAWARE_SSH_KNOWN_HOSTS"] == server.known_hosts
    assert json.loads(env["CARBONAWARE_SSH_ENV"]) == [{"name": "MODE", "value": "full"}]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "CarbonAwareJob",
        "nightly",
        job["metadata"]["uid"],
    )
    assert owner["controller"] is True
    pod_labels = pod["metadata"]["labels"]
    assert pod_labels["carbonaware.io/job-uid"] == job["metadata"]["uid"]
    assert pod_labels["carbonaware.io/job-name"] == "nightly"
    assert pod_labels["carbonaware.io/target"] == "box"
    assert pod_labels["app.kubernetes.io/component"] == "ssh-runner"
    pod_json = json.dumps(pod)
    for fragment in key_fragments(server.client_private_key):
        assert fragment not in pod_json

    # kwok plays the kubelet: the pod goes Running, and the job with it.
    running = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "nightly")).get("state") == "Running" and s,
        timeout=30,
        what="the job Running with its pod",
    )
    assert running["startTime"]
    wait_for(
        lambda: status_of(crds, "srv", namespace, "box").get("running") == 1,
        timeout=30,
        what="running 1 on the ServerTarget",
    )
    # kwok ends the fake pod Succeeded without a termination message: no run summary.
    crds.kubectl("annotate", "pod", pod_name, "-n", namespace,
                 "pod-complete.stage.kwok.x-k8s.io/delay=1s")  # fmt: skip
    status = wait_finished(crds, namespace, "nightly")
    failure = status_condition(status, "Failed")
    assert failure is not None
    assert failure["reason"] == "JobFailed"
    assert "without a result" in failure["message"]
    assert pod_name in failure["message"]
    assert "sci" not in status
    assert not (workdir / "marker").exists(), "kwok runs no containers"
    wait_for(
        lambda: status_of(crds, "srv", namespace, "box").get("running") == 0,
        timeout=30,
        what="running 0 after the pod ended",
    )
    assert "Traceback" not in operator.log()
    assert_no_key_material(crds, namespace, operator, server.client_private_key)


# --------------------------------------------------------------------------- missing pieces


def test_missing_target_or_secret_fails_the_job_clearly(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    server = key_in_namespace
    crds.apply(
        server_target("keyless", server, privateKeySecretRef={"name": "no-such-secret"}),
        namespace=namespace,
    )
    crds.apply(ssh_job("orphan", "no-such-target", command="true"), namespace=namespace)
    crds.apply(ssh_job("keyless-job", "keyless", command="true"), namespace=namespace)
    operator = start_operator("Pod")

    orphan = wait_finished(crds, namespace, "orphan")
    failure = status_condition(orphan, "Failed")
    assert failure is not None
    assert failure["reason"] == "TargetNotFound"
    assert "no-such-target" in failure["message"]
    keyless = wait_finished(crds, namespace, "keyless-job")
    failure = status_condition(keyless, "Failed")
    assert failure is not None
    assert failure["reason"] == "SecretNotFound"
    assert "no-such-secret" in failure["message"]
    assert crds.kubectl_json("get", "pods", "-n", namespace)["items"] == []
    events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
    warnings = {
        (e["involvedObject"]["name"], e["reason"]) for e in events if e["type"] == "Warning"
    }
    assert {("orphan", "TargetNotFound"), ("keyless-job", "SecretNotFound")} <= warnings

    # Failed once, not retried: the statuses stay as they are over further ticks.
    stamps = (orphan["completionTime"], keyless["completionTime"])
    probed = wait_for(
        lambda: status_condition(status_of(crds, "srv", namespace, "keyless"), "Reachable"),
        timeout=30,
        what="the keyless target probed",
    )
    assert probed["reason"] == "SecretNotFound"
    assert (
        status_of(crds, "caj", namespace, "orphan")["completionTime"],
        status_of(crds, "caj", namespace, "keyless-job")["completionTime"],
    ) == stamps
    log = operator.log()
    assert "Traceback" not in log
    assert "failed temporarily" not in log
    assert "failed permanently" not in log


def test_a_job_seen_before_its_target_plans_with_the_targets_region(
    crds: Any,
    namespace: str,
    key_in_namespace: SshdServer,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    server = key_in_namespace
    workdir = tmp_path / "work"
    workdir.mkdir()
    operator = start_operator("InProcess", providers="static", static_table="GB=300;DE=40")
    crds.apply(
        ssh_job("etl", "de-box", schedule={"policy": "Threshold", "maxIntensity": 100},
                workingDir=str(workdir), command="touch ran"),
        namespace=namespace,
    )  # fmt: skip
    held = wait_for(
        lambda: (s := status_of(crds, "caj", namespace, "etl")).get("state") == "Held" and s,
        timeout=30,
        what="the job held while its target does not exist",
    )
    assert held["region"] == "GB"  # the operator's default: no target to ask yet
    assert status_condition(held, "Held")["reason"] == "WaitingForThreshold"  # type: ignore[index]
    crds.apply(server_target("de-box", server, region="DE"), namespace=namespace)
    status = wait_finished(crds, namespace, "etl")
    assert status["state"] == "Succeeded", status
    assert status_condition(status, "Released")["reason"] == "ThresholdMet"  # type: ignore[index]
    assert status["region"] == "DE"
    assert status["intensity"]["atRelease"] == 40
    assert (workdir / "ran").exists()
    assert "Traceback" not in operator.log()
