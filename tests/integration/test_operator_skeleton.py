"""The operator run in-process with kopf's KopfRunner against the real control plane: a new
CarbonAwareJob gets its first conditions, and the liveness endpoint answers."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from kopf.testing import KopfRunner

from .operatorproc import free_port, wait_for

pytestmark = pytest.mark.integration


def use_the_trace(plane: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator run here reads the plane and the shipped GB trace replayed onto today."""
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    for key, value in {"PROVIDERS": "trace", "METRICS_PORT": "0", "TICK_SECONDS": "1"}.items():
        monkeypatch.setenv(f"CARBONAWARE_{key}", value)


def never_due(name: str, **spec: Any) -> dict[str, Any]:
    """A CarbonAwareJob whose threshold is never met before its bound."""
    template = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
    }
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": {"policy": "Threshold", "maxIntensity": 0},
            "jobTemplate": {"spec": {"template": template}},
            **spec,
        },
    }


def test_kopfrunner_sets_the_first_conditions_and_serves_liveness(
    crds: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_the_trace(crds, monkeypatch)
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    job = never_due("first")
    args = ["run", "--standalone", f"--namespace={namespace}", f"--liveness={liveness}",
            "-m", "carbonaware.handlers"]  # fmt: skip
    with KopfRunner(args, timeout=60) as runner:
        crds.apply(job, namespace=namespace)

        def first_conditions() -> dict[str, Any] | None:
            obj = crds.kubectl_json("get", "caj", "first", "-n", namespace)
            status: dict[str, Any] = obj.get("status") or {}
            return status if status.get("conditions") else None

        status = wait_for(first_conditions, timeout=30, what="the first conditions")
        with urllib.request.urlopen(liveness, timeout=5) as response:
            assert response.status == 200
    assert runner.exit_code == 0
    assert runner.exception is None
    held = {c["type"]: c for c in status["conditions"]}["Held"]
    assert held["status"] == "True"
    assert held["reason"] == "WaitingForThreshold"
    assert held["message"]
    assert held["observedGeneration"] == 1
    assert status["observedGeneration"] == 1
    assert status["state"] == "Held"
    assert status["region"] == "GB"
    obj = crds.kubectl_json("get", "caj", "first", "-n", namespace)
    kopf_keys = [k for k in obj["metadata"].get("annotations", {}) if "kopf" in k]
    assert kopf_keys, "kopf's bookkeeping is in annotations"
    assert all(k.startswith("kopf.carbonaware.io/") for k in kopf_keys)


def test_an_unknown_region_is_flagged_with_a_warning_event_and_in_the_message(
    crds: Any, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region no configured provider knows is never silently served another region's data:
    the plan's message and a Warning Event say whose data stands in for it."""
    use_the_trace(crds, monkeypatch)
    job = never_due("elsewhere", region="XX")
    args = ["run", "--standalone", f"--namespace={namespace}", "-m", "carbonaware.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        crds.apply(job, namespace=namespace)

        def warned() -> list[dict[str, Any]]:
            events = crds.kubectl_json("get", "events", "-n", namespace)["items"]
            return [e for e in events if e.get("reason") == "UnknownRegion"]

        (event,) = wait_for(warned, timeout=30, what="the UnknownRegion Warning event")
        status = crds.kubectl_json("get", "caj", "elsewhere", "-n", namespace)["status"]
    assert runner.exit_code == 0
    assert event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "elsewhere"
    assert "holds GB data; its values stand in for region 'XX'" in event["message"]
    held = {c["type"]: c for c in status["conditions"]}["Held"]
    assert "Warning: trace" in held["message"], held
    assert "stand in for region 'XX'" in held["message"], held
    assert status["region"] == "XX"
