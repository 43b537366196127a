"""The optional BoaviztAPI server: off by default, one switch deploys it beside the operator."""

from __future__ import annotations

from typing import Any

import pytest

from .helmchart import FULLNAME, NAMESPACE, Helm

pytestmark = pytest.mark.timeout(1800)


def _by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _operator_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = _by_name(objects, "Deployment", FULLNAME)
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item.get("value") for item in operator["env"]}


def test_boaviztapi_is_off_by_default(helm: Helm) -> None:
    objects = helm.template()
    assert not [o for o in objects if "boavizta" in o["metadata"]["name"]]
    assert "CARBONAWARE_BOAVIZTA_URL" not in _operator_env(objects)


def test_one_switch_deploys_it_and_points_the_operator_at_it(helm: Helm) -> None:
    objects = helm.template("boavizta.enabled=true")
    name = f"{FULLNAME}-boavizta"
    deployment = _by_name(objects, "Deployment", name)
    service = _by_name(objects, "Service", name)
    pod = deployment["spec"]["template"]
    (server,) = pod["spec"]["containers"]
    assert server["image"] == "ghcr.io/boavizta/boaviztapi:2.5.0"
    assert server["ports"][0]["containerPort"] == 5000
    # Restricted like the operator: non-root, read-only root file system, nothing escalates.
    context = server["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    # Its Service selects it, and the operator's metrics Service does not.
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    metrics = _by_name(objects, "Service", FULLNAME)
    assert not set(metrics["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())
    url = _operator_env(objects)["CARBONAWARE_BOAVIZTA_URL"]
    assert url == f"http://{name}.{NAMESPACE}.svc:5000"


def test_an_existing_server_can_be_named_instead(helm: Helm) -> None:
    objects = helm.template("boavizta.url=http://boavizta.tools:5000")
    assert _operator_env(objects)["CARBONAWARE_BOAVIZTA_URL"] == "http://boavizta.tools:5000"
    assert not [o for o in objects if "boavizta" in o["metadata"]["name"]]


def test_the_schema_refuses_unknown_boavizta_keys(helm: Helm) -> None:
    assert "boavizta" in helm.template_error("boavizta.replicas=2")
