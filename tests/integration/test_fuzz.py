"""Random mutations of valid objects through the real API server, with the operator running.

hypothesis mutates valid CarbonAwareJobs (Job and SSH), ServerTargets and plain-Job
annotations (replace a value with random JSON, drop a field, add one) and applies each to
the real API server. Whatever the schema lets in, the operator must give a clear state, stay
up, and keep running the valid control jobs applied beside them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .grid import Intensity, operator_for
from .operatorproc import QUICK_JOB_TEMPLATE, OperatorProcess, caj, get, status_of, wait_for
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

EXAMPLES = 200
CLEAR_STATES = {"Held", "Released", "Running", "Paused", "Succeeded", "Failed"}
TARGET = {
    "apiVersion": "carbonaware.io/v1alpha1",
    "kind": "ServerTarget",
    "metadata": {"name": "base"},
    "spec": {
        "host": "build.invalid",
        "port": 22,
        "user": "batch",
        "privateKeySecretRef": {"name": "key", "key": "ssh-privatekey"},
        "hostKeyPolicy": "AcceptAny",
        "maxConcurrent": 2,
        "region": "GB",
    },
}
SSH_JOB = {
    "apiVersion": "carbonaware.io/v1alpha1",
    "kind": "CarbonAwareJob",
    "metadata": {"name": "base"},
    "spec": {
        "region": "GB",
        "schedule": {"policy": "Forecast", "maxDelaySeconds": 3600},
        "ssh": {"targetRef": {"name": "fuzz-target"}, "command": "echo hi", "env": []},
    },
}
PLAIN_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "base",
        "labels": {"carbonaware.io/managed": "true"},
        "annotations": {
            "carbonaware.io/policy": "Threshold",
            "carbonaware.io/max-intensity": "100",
            "carbonaware.io/max-delay-seconds": "600",
            "carbonaware.io/priority": "3",
        },
    },
    "spec": {"suspend": True, **QUICK_JOB_TEMPLATE["spec"]},
}
BASES = {
    "caj": caj(
        "base", {"policy": "Threshold", "maxIntensity": 150}, jobTemplate=QUICK_JOB_TEMPLATE
    ),
    "ssh": SSH_JOB,
    "srv": TARGET,
    "job": PLAIN_JOB,
}

# Values a user might plausibly write, with the boundaries of every rule around them.
PLAUSIBLE_TEXT = st.sampled_from(
    [
        "",
        "Forecast",
        "Threshold",
        "Immediate",
        "Sometimes",
        "VeryLow",
        "Low",
        "High",
        "GB",
        "GB-13",
        "DE",
        "XX",
        "2030-01-31T18:00:00Z",
        "2020-01-01T00:00:00Z",
        "2030-01-31T18:00:00",
        "tomorrow",
        "Never",
        "OnFailure",
        "Always",
        "busybox",
        "Main",
        "main",
        "build.invalid",
        "10.0.0.1",
        "-oProxyCommand=x",
        "batch user",
        "$(reboot)",
        "../../etc",
        "Strict",
        "AcceptAny",
        "ssh-privatekey",
        "éç",
        "x" * 70,
        "x" * 300,
    ]
)
PLAUSIBLE_INT = st.sampled_from(
    [-1, 0, 1, 2, 59, 3600, 5000, 5001, 86400, 31536000, 31536001, 1000000, 2**31, 2**63 - 1]
) | st.integers(-100, 10**6)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=6,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` below the top, metadata names excepted."""
    found: list[tuple[Any, ...]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, value in items:
        path = (*prefix, key)
        if path[:2] in (("metadata", "name"), ("apiVersion",), ("kind",)) or path == ("metadata",):
            continue
        found.append(path)
        found.extend(paths(value, path))
    return found


def parent_of(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


def plausible(current: Any) -> st.SearchStrategy[Any]:
    """A replacement for ``current``: mostly of its own type, sometimes anything at all."""
    if isinstance(current, bool):
        same: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(current, int):
        same = PLAUSIBLE_INT
    elif isinstance(current, str):
        same = PLAUSIBLE_TEXT | st.text(max_size=20)
    else:
        same = JSON
    return st.one_of(same, same, same, JSON)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(BASES)))
    obj = copy.deepcopy(BASES[kind])
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(obj) if p[0] in ("spec", "metadata")]
        if kind == "job":  # the Job API is not ours: fuzz what the operator reads
            candidates = [p for p in candidates if p[:2] == ("metadata", "annotations")]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        holder = parent_of(obj, path)
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(holder, dict):
            del holder[path[-1]]
        elif action == "add" and isinstance(holder, dict):
            holder[draw(st.text(min_size=1, max_size=12))] = draw(JSON)
        elif kind == "job":  # annotations are strings
            holder[path[-1]] = draw(PLAUSIBLE_TEXT | st.integers(-10, 10**6).map(str) | st.text())
        else:
            holder[path[-1]] = draw(plausible(holder[path[-1]]))
    return kind, obj


@pytest.fixture(scope="module")
def fuzz_namespace(crds: Any) -> Iterator[str]:
    name: str = crds.create_namespace("fuzz")
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "key"},
            "type": "kubernetes.io/ssh-auth",
            "stringData": {"ssh-privatekey": "x"},
        },
        namespace=name,
    )
    target = copy.deepcopy(TARGET)
    target["metadata"]["name"] = "fuzz-target"
    crds.apply(target, namespace=name)
    yield name
    crds.delete_namespace(name)


@pytest.fixture(scope="module")
def fuzz_operator(
    crds: Any, fuzz_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OperatorProcess, Intensity]]:
    intensity = Intensity(now=200.0)
    with serve_uk_api(intensity) as server:
        assert isinstance(server, UkApiServer)
        log = Path(tmp_path_factory.mktemp("fuzz")) / "operator.log"
        process = operator_for(crds, server, log, namespace=fuzz_namespace, ssh_probe_seconds=5)
        process.start()
        yield process, intensity
        process.stop()
        print(process.log()[-20000:])


def test_random_mutations_never_disturb_the_operator_or_the_valid_jobs(
    crds: Any, fuzz_namespace: str, fuzz_operator: tuple[OperatorProcess, Intensity]
) -> None:
    process, _ = fuzz_operator
    namespace = fuzz_namespace
    for index in range(3):
        crds.apply(
            caj(f"control-{index}", {"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE),
            namespace=namespace,
        )
    accepted: list[tuple[str, str]] = []
    refused: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated())
    def apply_one(case: tuple[str, dict[str, Any]]) -> None:
        kind, obj = case
        name = f"{kind}-{len(accepted) + len(refused)}"
        obj["metadata"]["name"] = name
        result = crds.kubectl(
            "apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
        )
        if result.returncode == 0:
            accepted.append((kind, name))
        else:
            assert "Internal error" not in result.stderr, result.stderr
            refused.append(name)

    apply_one()
    print(
        f"fuzz: {len(accepted) + len(refused)} specs tried, {len(accepted)} accepted, "
        f"{len(refused)} refused by the API server"
    )
    assert accepted, "nothing passed the schema: the mutations are too wild to test anything"
    assert refused, "nothing was refused: the mutations never hit the schema"

    def unclear() -> list[str]:
        left = []
        for kind, name in accepted:
            if kind in ("caj", "ssh"):
                status = status_of(crds, "caj", namespace, name)
                if status.get("state") not in CLEAR_STATES or not status.get("conditions"):
                    left.append(name)
            elif kind == "job":
                annotations = get(crds, "job", namespace, name)["metadata"].get("annotations") or {}
                if annotations.get("carbonaware.io/state") not in CLEAR_STATES:
                    left.append(name)
            else:
                status = status_of(crds, "servertarget", namespace, name)
                if not status.get("conditions"):
                    left.append(name)
        return left

    wait_for(
        lambda: not unclear(),
        timeout=180,
        interval=2,
        what="every accepted object to reach a clear state",
    )
    for index in range(3):
        wait_for(
            lambda i=index: status_of(crds, "caj", namespace, f"control-{i}").get("state")
            == "Succeeded",
            timeout=60,
            what=f"control-{index} to succeed",
        )
    assert process.alive(), process.log()[-5000:]
    log = process.log()
    assert "refresh loop died" not in log
    assert "refresh tick failed" not in log
