"""Where as well as when, on the real local control plane.

SSH jobs with ``spec.ssh.targetSelector`` against two real OpenSSH servers on loopback whose
ServerTargets sit in two grid regions (GB-1 and GB-13), served different intensities by the
local UK Carbon Intensity API: each job runs on the cleaner server, on the other one when the
cleaner is busy or unreachable, and fails by its latest start when the selector finds none.
Which server ran a job is read from the run itself (``$SSH_CONNECTION`` names the server's
port), not from the operator's status.

Jobs with ``spec.placement`` land on the kwok node of the cleaner region (the plane's two
kwok nodes carry ``topology.kubernetes.io/region`` labels of their own).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .grid import operator_for
from .manifests import key_secret, server_target
from .operatorproc import (
    BATCH_JOB_TEMPLATE,
    OperatorProcess,
    condition,
    free_port,
    get,
    operator_env,
    status_condition,
    status_of,
    wait_for,
)
from .sshd import SshdServer, running_sshd
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

DIRTY, CLEAN = "GB-1", "GB-13"
POOL = {"matchLabels": {"pool": "batch"}}


@dataclass
class Regions:
    """What the local API serves: the national grid and each region, in gCO2e/kWh."""

    values: dict[str, float]

    def install(self, server: UkApiServer) -> None:
        for region in (DIRTY, CLEAN):
            server.regional[region] = lambda start, r=region: self.values[r]  # type: ignore[misc]


@pytest.fixture
def regions() -> Iterator[tuple[Regions, UkApiServer]]:
    served = Regions({DIRTY: 400.0, CLEAN: 100.0})
    with serve_uk_api(lambda start: 250.0) as server:
        served.install(server)
        yield served, server


def selector_job(name: str, command: str, **schedule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule or {"policy": "Immediate"},
            "ssh": {"targetSelector": POOL, "command": command},
        },
    }


def events(plane: Any, namespace: str, name: str, reason: str) -> list[str]:
    items = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return [
        e["message"] for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def server_port_of(marker: Path) -> int:
    """The server port in the ``$SSH_CONNECTION`` a run wrote: client ip, port, server ip, port."""
    return int(marker.read_text().split()[3])


def finished(plane: Any, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status_of(plane, "caj", namespace, name)).get("state")
        in ("Succeeded", "Failed")
        and s,
        timeout=timeout,
        what=f"{name} finished",
    )


def reachable(plane: Any, namespace: str, target: str) -> str | None:
    found = status_condition(status_of(plane, "srv", namespace, target), "Reachable")
    return found["status"] if found else None


@contextlib.contextmanager
def two_servers(plane: Any, namespace: str) -> Iterator[dict[str, SshdServer]]:
    """Two sshd on loopback, ServerTargets ``dirty`` (GB-1) and ``clean`` (GB-13) in the pool,
    and ``web`` (cleanest of all, GB-13, but not in the pool)."""
    with running_sshd() as dirty, running_sshd() as clean:
        for name, server in (("dirty", dirty), ("clean", clean)):
            plane.apply(key_secret(f"key-{name}", server.client_private_key), namespace=namespace)
        plane.apply(key_secret("key-web", clean.client_private_key), namespace=namespace)
        for name, server, region, pool in (
            ("dirty", dirty, DIRTY, "batch"),
            ("clean", clean, CLEAN, "batch"),
            ("web", clean, CLEAN, "web"),
        ):
            manifest = server_target(
                name, server, region=region, maxConcurrent=1,
                privateKeySecretRef={"name": f"key-{name}"},
            )  # fmt: skip
            manifest["metadata"]["labels"] = {"pool": pool}
            plane.apply(manifest, namespace=namespace)
        yield {"dirty": dirty, "clean": clean}


def test_a_target_selector_runs_each_job_on_the_cleanest_reachable_free_server(
    crds: Any, namespace: str, regions: tuple[Regions, UkApiServer], tmp_path: Path
) -> None:
    _, api = regions
    runs = tmp_path / "runs"
    runs.mkdir()
    with two_servers(crds, namespace) as servers:
        env = operator_env(
            crds.kubeconfig, providers="ukci", ukci_base_url=api.url, provider_cache_ttl_seconds=1,
            default_region="GB", ssh_mode="InProcess", ssh_probe_seconds=2, namespace=namespace,
        )  # fmt: skip
        operator = OperatorProcess(env, tmp_path / "operator.log")
        operator.start()
        try:
            for name in ("dirty", "clean", "web"):
                wait_for(lambda n=name: reachable(crds, namespace, n) == "True",  # type: ignore[misc]
                         timeout=60, what=f"ServerTarget {name} reachable")  # fmt: skip

            # The cleaner server: its region is served 100 against 400.
            crds.apply(selector_job("first", f"echo $SSH_CONNECTION > {runs}/first; sleep 15"),
                       namespace=namespace)  # fmt: skip
            wait_for(lambda: (runs / "first").is_file() and (runs / "first").read_text(),
                     timeout=60, what="the first run started")  # fmt: skip
            assert server_port_of(runs / "first") == servers["clean"].port
            first = status_of(crds, "caj", namespace, "first")
            placement = first["placement"]
            assert (placement["target"], placement["region"]) == ("clean", CLEAN)
            assert placement["expectedIntensity"] == 100
            assert placement["candidates"] == 2, "web is not in the pool"
            assert placement["runnerUp"]["target"] == "dirty"
            assert placement["runnerUp"]["expectedIntensity"] == 400
            assert first["region"] == CLEAN
            released = events(crds, namespace, "first", "Released")
            assert any("Placed on ServerTarget clean (region GB-13)" in m for m in released), (
                released
            )

            # The cleaner server is busy (maxConcurrent 1): the next job takes the other one.
            crds.apply(selector_job("second", f"echo $SSH_CONNECTION > {runs}/second"),
                       namespace=namespace)  # fmt: skip
            assert finished(crds, namespace, "second")["state"] == "Succeeded"
            assert server_port_of(runs / "second") == servers["dirty"].port
            assert status_of(crds, "caj", namespace, "second")["placement"]["target"] == "dirty"
            assert finished(crds, namespace, "first")["state"] == "Succeeded"

            # The cleaner server becomes unreachable: jobs go to the other one.
            crds.kubectl("patch", "srv", "clean", "-n", namespace, "--type=merge",
                         "-p", f'{{"spec": {{"port": {free_port()}}}}}')  # fmt: skip
            wait_for(lambda: reachable(crds, namespace, "clean") == "False",
                     timeout=60, what="clean unreachable")  # fmt: skip
            crds.apply(selector_job("third", f"echo $SSH_CONNECTION > {runs}/third"),
                       namespace=namespace)  # fmt: skip
            assert finished(crds, namespace, "third")["state"] == "Succeeded"
            assert server_port_of(runs / "third") == servers["dirty"].port
            third = status_of(crds, "caj", namespace, "third")
            assert third["placement"]["candidates"] == 1
            assert third["region"] == DIRTY

            # Nothing selected: held saying so, failed at the latest start.
            lost = selector_job("lost", "true", policy="Forecast", maxDelaySeconds=20)
            lost["spec"]["ssh"]["targetSelector"] = {"matchLabels": {"pool": "gpu"}}
            crds.apply(lost, namespace=namespace)
            held = wait_for(lambda: condition(get(crds, "caj", namespace, "lost"), "Held"),
                            timeout=30, what="lost held")  # fmt: skip
            assert (held["status"], held["reason"]) == ("True", "NoTargetAvailable"), held
            done = finished(crds, namespace, "lost", timeout=60)
            failed = status_condition(done, "Failed")
            assert done["state"] == "Failed"
            assert failed is not None
            assert failed["reason"] == "NoTargetAvailable"
            assert "pool=gpu" in failed["message"]
        finally:
            operator.stop()
            print(operator.log()[-20000:])
        assert "Traceback" not in operator.log()


def placed_job(name: str) -> dict[str, Any]:
    """A Job that may run in either region; GB-1 on one kwok node, GB-13 on the other."""
    nodes = {"GB-1": "eu-west-2", "GB-13": "europe-west3"}
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": {"policy": "Immediate"},
            "placement": {
                "regions": [
                    {"region": region, "nodeSelector": {"topology.kubernetes.io/region": node}}
                    for region, node in nodes.items()
                ]
            },
            "jobTemplate": copy.deepcopy(BATCH_JOB_TEMPLATE),
        },
    }


def node_region_of_pod(plane: Any, namespace: str, job: str) -> str:
    def scheduled() -> str | None:
        pods = plane.kubectl_json("get", "pods", "-n", namespace, "-l", f"job-name={job}")
        names = [p["spec"].get("nodeName") for p in pods["items"] if p["spec"].get("nodeName")]
        return names[0] if names else None

    node = wait_for(scheduled, timeout=60, what=f"the pod of {job} scheduled")
    labels = plane.kubectl_json("get", "node", node)["metadata"]["labels"]
    return str(labels["topology.kubernetes.io/region"])


def test_a_job_with_placement_lands_on_the_node_pool_of_the_cleaner_region(
    crds: Any, namespace: str, regions: tuple[Regions, UkApiServer], tmp_path: Path
) -> None:
    served, api = regions
    operator: OperatorProcess = operator_for(crds, api, tmp_path / "operator.log",
                                             namespace=namespace)  # fmt: skip
    operator.start()
    try:
        crds.apply(placed_job("to-clean"), namespace=namespace)
        assert node_region_of_pod(crds, namespace, "to-clean") == "europe-west3"
        job = get(crds, "job", namespace, "to-clean")
        assert job["spec"]["template"]["spec"]["nodeSelector"] == {
            "topology.kubernetes.io/region": "europe-west3"
        }
        status = status_of(crds, "caj", namespace, "to-clean")
        assert (status["region"], status["placement"]["region"]) == (CLEAN, CLEAN)
        assert status["placement"]["runnerUp"]["region"] == DIRTY

        served.values[DIRTY], served.values[CLEAN] = 50.0, 450.0  # the grids swap
        time.sleep(3)  # the provider cache (1 s) and a tick
        crds.apply(placed_job("to-other"), namespace=namespace)
        assert node_region_of_pod(crds, namespace, "to-other") == "eu-west-2"
        assert status_of(crds, "caj", namespace, "to-other")["region"] == DIRTY
    finally:
        operator.stop()
        print(operator.log()[-20000:])
    assert "Traceback" not in operator.log()
