"""Input that passes the schema but is wrong at run time ends in a clear condition, not a
crash loop: unknown regions, missing ServerTargets and Secrets, plain Jobs with bad
annotations, deadlines long past.

One operator process (``python -m carbonaware run``) serves the whole module, watching one
namespace; grid intensity comes from a local server speaking the UK Carbon Intensity API:
300 gCO2e/kWh now and 40 from three hours on, so Forecast jobs that may wait that long hold
for the clean window and Threshold jobs (at most 100) hold until their latest start. After
every test the operator must still be running, never restarted, with no Python traceback
in its log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .invalidcases import BadInput, load_cases
from .operatorproc import (
    QUICK_JOB_TEMPLATE,
    OperatorProcess,
    get,
    operator_env,
    status_condition,
    wait_for,
    when,
)
from .ukapi import UkApiServer, serve_uk_api

pytestmark = pytest.mark.integration

JOB_CASES = load_cases(stage="operator")
DIRTY, CLEAN = 300.0, 40.0
CLEAN_AFTER = timedelta(hours=3)
# Unreachable on purpose: nothing listens on the discard port.
NOWHERE = {"host": "127.0.0.1", "port": 9}


@pytest.fixture(scope="module")
def grid() -> Iterator[UkApiServer]:
    clean_from = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + CLEAN_AFTER
    with serve_uk_api(lambda start: CLEAN if start >= clean_from else DIRTY) as server:
        yield server


@pytest.fixture(scope="module")
def ns(crds: Any) -> Iterator[str]:
    """The namespace the module's operator watches (object names are unique per test)."""
    name: str = crds.create_namespace("runtime")
    yield name
    crds.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(
    crds: Any, grid: UkApiServer, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = operator_env(
        crds.kubeconfig,
        providers="ukci",
        ukci_base_url=grid.url,
        provider_cache_ttl_seconds=1,
        default_region="GB",
        namespace=ns,
        ssh_mode="InProcess",
        ssh_probe_seconds=2,
    )
    process = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log")
    process.start()
    yield process
    process.stop()
    print(process.log()[-20000:])


@pytest.fixture(autouse=True)
def operator_survives(operator: OperatorProcess) -> Iterator[None]:
    """Bad input must never crash the operator or make a handler blow up."""
    yield
    log = operator.log()
    assert operator.alive(), f"the operator exited:\n{log[-5000:]}"
    assert operator.starts == 1
    assert "Traceback" not in log, log[max(log.find("Traceback") - 2000, 0) :][:6000]


# --------------------------------------------------------------------------- helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def caj(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def status_of(plane: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(plane, "carbonawarejobs", namespace, name).get("status") or {})


def events_for(plane: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    items = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def wait_for_state(
    plane: Any, namespace: str, name: str, state: str, timeout: float
) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status_of(plane, namespace, name)).get("state") == state and s,
        timeout=timeout,
        what=f"{name} to be {state}",
    )


def witness_released(plane: Any, namespace: str) -> None:
    """An Immediate job created now is released: the operator has kept working since."""
    name = unique("witness")
    plane.apply(
        caj(name, schedule={"policy": "Immediate"}, jobTemplate=QUICK_JOB_TEMPLATE),
        namespace=namespace,
    )
    wait_for(lambda: status_of(plane, namespace, name).get("releaseTime"), timeout=30,
             what="the witness job's release")  # fmt: skip


# --------------------------------------------------------------------------- unknown region


def test_unknown_region_is_held_with_the_reason_then_released_at_the_latest_start(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    forecast, threshold = unique("region-xx-forecast"), unique("region-xx-threshold")
    crds.apply(caj(forecast, region="XX", schedule={"policy": "Forecast", "maxDelaySeconds": 20},
                   jobTemplate=QUICK_JOB_TEMPLATE), namespace=ns)  # fmt: skip
    crds.apply(caj(threshold, region="XX", schedule={"policy": "Threshold", "maxIntensity": 100,
                   "maxDelaySeconds": 20}, jobTemplate=QUICK_JOB_TEMPLATE),
               namespace=ns)  # fmt: skip

    for name in (forecast, threshold):
        held = wait_for(lambda n=name: status_condition(status_of(crds, ns, n), "Held"),
                        timeout=30, what=f"{name} held")  # fmt: skip
        assert held["status"] == "True"
        assert held["reason"] == "ForecastUnavailable"
        message = held["message"]
        assert "region 'XX'" in message, message
        assert "is not a GB region key; use GB" in message, message
        assert "released by" in message, message
        assert status_of(crds, ns, name)["region"] == "XX"

    for name in (forecast, threshold):
        status = wait_for(lambda n=name: (s := status_of(crds, ns, n)).get("releaseTime") and s,
                          timeout=60, what=f"{name} released at its latest start")  # fmt: skip
        released = status_condition(status, "Released")
        assert released is not None
        assert released["reason"] in ("ProviderUnavailable", "DeadlineReached")
        assert "region 'XX'" in released["message"], released["message"]
        assert when(status["releaseTime"]) <= when(status["latestStartTime"])
        assert status["jobName"], "the run went ahead without intensity data"
        warnings = [e for e in events_for(crds, ns, name) if e["type"] == "Warning"]
        assert warnings == []


# --------------------------------------------------------------------------- SSH targets


def test_unknown_server_target_fails_at_release_naming_the_target(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    now, later = unique("no-target-now"), unique("no-target-later")
    ssh = {"targetRef": {"name": "no-such-server"}, "command": "./nightly.sh"}
    crds.apply(caj(now, schedule={"policy": "Immediate"}, ssh=ssh), namespace=ns)
    crds.apply(caj(later, schedule={"policy": "Threshold", "maxIntensity": 100,
                                    "maxDelaySeconds": 10}, ssh=ssh), namespace=ns)  # fmt: skip

    held = wait_for(lambda: status_condition(status_of(crds, ns, later), "Held"), timeout=30,
                    what="the Threshold job held until its latest start")  # fmt: skip
    assert held["status"] == "True"
    assert held["reason"] == "WaitingForThreshold"
    for name in (now, later):
        status = wait_for_state(crds, ns, name, "Failed", timeout=60)
        failed = status_condition(status, "Failed")
        assert failed is not None
        assert failed["status"] == "True"
        assert failed["reason"] == "TargetNotFound"
        assert "ServerTarget no-such-server does not exist" in failed["message"]
        assert "spec.ssh.targetRef.name" in failed["message"]
        warnings = [e for e in events_for(crds, ns, name) if e["type"] == "Warning"]
        assert [e["reason"] for e in warnings] == ["TargetNotFound"]
        assert "no-such-server" in warnings[0]["message"]
    witness_released(crds, ns)
    assert status_of(crds, ns, now)["state"] == "Failed", "a failed job is not retried"


def check_missing_secret(crds: Any, ns: str) -> None:
    """A ServerTarget whose key Secret is missing: the probe says so, and a job on it
    ends Failed SecretNotFound naming the Secret (once, with one Warning Event)."""
    target, job = unique("keyless"), unique("keyless-run")
    crds.apply(
        {
            "apiVersion": "carbonaware.io/v1alpha1",
            "kind": "ServerTarget",
            "metadata": {"name": target},
            "spec": {**NOWHERE, "user": "deploy", "hostKeyPolicy": "AcceptAny",
                     "privateKeySecretRef": {"name": "no-such-key"}},
        },
        namespace=ns,
    )  # fmt: skip
    reachable = wait_for(
        lambda: status_condition(
            get(crds, "servertargets", ns, target).get("status") or {}, "Reachable"
        ),
        timeout=30,
        what="the ServerTarget probed",
    )
    assert reachable["status"] == "False"
    assert reachable["reason"] == "SecretNotFound"
    assert "Secret no-such-key" in reachable["message"]

    ssh = {"targetRef": {"name": target}, "command": "./nightly.sh"}
    crds.apply(caj(job, schedule={"policy": "Immediate"}, ssh=ssh), namespace=ns)
    status = wait_for_state(crds, ns, job, "Failed", timeout=60)
    failed = status_condition(status, "Failed")
    assert failed is not None
    assert failed["reason"] == "SecretNotFound"
    for words in ("Secret no-such-key", "ssh-privatekey", ns):
        assert words in failed["message"], failed["message"]
    assert [e["reason"] for e in events_for(crds, ns, job) if e["type"] == "Warning"] == [
        "SecretNotFound"
    ]


def test_missing_secret_fails_the_run_and_marks_the_target(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    check_missing_secret(crds, ns)


def test_missing_secret_in_pod_mode_fails_before_any_runner_pod(
    crds: Any, grid: UkApiServer, namespace: str, tmp_path: Any
) -> None:
    """The default SSH mode: a runner pod without its Secret would never start."""
    env = operator_env(crds.kubeconfig, providers="ukci", ukci_base_url=grid.url,
                       provider_cache_ttl_seconds=1, namespace=namespace, ssh_mode="Pod",
                       ssh_probe_seconds=2)  # fmt: skip
    process = OperatorProcess(env, tmp_path / "pod-mode.log")
    process.start()
    try:
        check_missing_secret(crds, namespace)
        assert crds.kubectl_json("get", "pods", "-n", namespace)["items"] == []
        assert process.alive()
    finally:
        process.stop()
    assert "Traceback" not in process.log()


def test_a_template_the_job_api_refuses_fails_with_its_message(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    """The schema checks what a mistake in jobTemplate would most often be (restart policy,
    containers, labels); the rest, such as resource quantities, only the Job API checks, when
    the Job is created. Such a refusal cannot pass by waiting: the job ends Failed with it."""
    name = unique("bad-template")
    pod = {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "ports": [{"containerPort": 70000}]}],
    }
    crds.apply(caj(name, schedule={"policy": "Immediate"}, jobTemplate={"spec": {"template": {
        "spec": pod}}}), namespace=ns)  # fmt: skip
    status = wait_for_state(crds, ns, name, "Failed", timeout=30)
    failed = status_condition(status, "Failed")
    assert failed is not None
    assert failed["reason"] == "InvalidSpec"
    assert "spec.template.spec.containers[0].ports[0].containerPort" in failed["message"]
    assert "create the job again" in failed["message"]
    # Nothing was created: no Job of this CarbonAwareJob exists.
    jobs = crds.kubectl_json("get", "jobs", "-n", ns)["items"]
    assert not [j for j in jobs if j["metadata"]["name"] == name]


# --------------------------------------------------------------------------- deadlines


def test_a_deadline_long_past_releases_at_once(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    """Valid RFC 3339, but before the job existed: start now rather than overflow."""
    name = unique("ancient-deadline")
    schedule = {"deadlineTime": "0001-01-01T00:00:00Z"}
    crds.apply(caj(name, schedule=schedule, jobTemplate=QUICK_JOB_TEMPLATE), namespace=ns)
    status = wait_for(lambda: (s := status_of(crds, ns, name)).get("releaseTime") and s,
                      timeout=30, what="release")  # fmt: skip
    # the current half hour is the only window left: either reason says "start now"
    reason = status_condition(status, "Released")["reason"]  # type: ignore[index]
    assert reason in ("DeadlineReached", "LowCarbonWindow")
    created = when(get(crds, "carbonawarejobs", ns, name)["metadata"]["creationTimestamp"])
    assert when(status["latestStartTime"]) == created


# --------------------------------------------------------------------------- plain Jobs


@pytest.mark.parametrize("case", JOB_CASES, ids=[case.id for case in JOB_CASES])
def test_plain_job_with_bad_annotations_stays_suspended_and_says_why(
    crds: Any, ns: str, operator: OperatorProcess, case: BadInput
) -> None:
    crds.apply(case.manifest, namespace=ns)

    annotations = wait_for(
        lambda: (a := get(crds, "job", ns, case.name)["metadata"].get("annotations") or {}).get(
            "carbonaware.io/state"
        )
        and a,
        timeout=30,
        what="the operator's verdict on the Job",
    )
    assert annotations["carbonaware.io/state"] == "Failed"
    assert annotations["carbonaware.io/reason"] == "InvalidSpec"
    warnings = [e for e in events_for(crds, ns, case.name) if e["type"] == "Warning"]
    assert warnings, "a Warning Event explains the failure"
    assert {e["reason"] for e in warnings} == {"InvalidSpec"}
    message = warnings[0]["message"]
    assert f"annotation {case.field}" in message, message
    for fragment in case.says:
        assert fragment in message, message
    assert "the Job stays suspended" in message

    witness_released(crds, ns)
    job = get(crds, "job", ns, case.name)
    assert job["spec"]["suspend"] is True
    assert "carbonaware.io/release-time" not in job["metadata"]["annotations"]


def test_fixing_the_annotations_puts_the_job_on_hold(
    crds: Any, ns: str, operator: OperatorProcess
) -> None:
    (case,) = [c for c in JOB_CASES if c.id == "job-max-delay-soon"]
    manifest = json.loads(json.dumps(case.manifest))
    manifest["metadata"]["name"] = name = unique("fixed")
    crds.apply(manifest, namespace=ns)
    wait_for(lambda: (get(crds, "job", ns, name)["metadata"].get("annotations") or {}).get(
        "carbonaware.io/reason") == "InvalidSpec", timeout=30, what="InvalidSpec")  # fmt: skip

    crds.kubectl("annotate", "job", name, "-n", ns, "--overwrite",
                 "carbonaware.io/max-delay-seconds=43200")  # fmt: skip

    annotations = wait_for(
        lambda: (a := get(crds, "job", ns, name)["metadata"]["annotations"]).get(
            "carbonaware.io/state"
        )
        == "Held"
        and a,
        timeout=30,
        what="the fixed Job held",
    )
    created = when(get(crds, "job", ns, name)["metadata"]["creationTimestamp"])
    assert annotations["carbonaware.io/reason"] == "WaitingForLowerIntensity"
    assert when(annotations["carbonaware.io/latest-start-time"]) == created + timedelta(hours=12)
    assert get(crds, "job", ns, name)["spec"]["suspend"] is True
