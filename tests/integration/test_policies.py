"""CarbonAwarePolicy on the real local control plane, through the operator's admission webhook
(the chart's MutatingWebhookConfiguration, pointed at the operator process: webhookbed.py).

- Enforce: a plain batch/v1 CronJob, not changed in any way, has its Job held by the policy
  and released when the grid is clean.
- Fail-open: with the operator stopped, Jobs are created and run unheld; after a restart and
  after a certificate rotation (new CA in the configuration, new files under the operator)
  every Job is still created, and the policy holds new Jobs again.
- Shadow: a Job runs at once; its annotations, an Event, the metrics and the report say what
  holding it to the policy's plan would have saved, by figures checked against the grid.
"""

from __future__ import annotations

import copy
import itertools
import json
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from carbonaware.api import labels

from .grid import Intensity, grid, operator_for
from .operatorproc import (
    BATCH_JOB_TEMPLATE,
    OperatorProcess,
    free_port,
    get,
    scrape_metrics,
    wait_for,
)
from .test_kubectl_plugin import plugin
from .ukapi import UkApiServer, period_start
from .webhookbed import (
    Webhook,
    governed_namespace,
    installed_webhook,
    serving,
    set_ca_bundle,
    write_certificate,
)

pytestmark = pytest.mark.integration
__all__ = ["grid"]

THRESHOLD = {"policy": "Threshold", "maxIntensity": 100, "maxDelaySeconds": 7200}


@pytest.fixture(scope="module")
def webhook(crds: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    with installed_webhook(crds, tmp_path_factory.mktemp("webhook")) as installed:
        yield installed


@pytest.fixture
def governed(crds: Any, namespace: str) -> str:
    """A namespace whose Jobs the webhook sees."""
    return governed_namespace(crds, namespace)


@pytest.fixture
def operator(
    crds: Any, grid: tuple[Intensity, UkApiServer], webhook: Webhook, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = operator_for(
        crds, grid[1], tmp_path / "operator.log", metrics_port=free_port(), **webhook.settings()
    )
    process.start()
    wait_for(lambda: serving(webhook.port), timeout=60, what="the operator serving its webhook")
    yield process
    process.stop()
    print(process.log()[-20000:])


def policy(name: str, mode: str, schedule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwarePolicy",
        "metadata": {"name": name},
        "spec": {"mode": mode, "schedule": schedule},
    }


def plain_job(name: str) -> dict[str, Any]:
    """A plain Job as a team would write it: nothing carbon-aware in it."""
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": copy.deepcopy(BATCH_JOB_TEMPLATE["spec"])}  # fmt: skip


def annotations(plane: Any, namespace: str, name: str) -> dict[str, str]:
    return dict(get(plane, "job", namespace, name)["metadata"].get("annotations") or {})


def governed_by(job: dict[str, Any]) -> str | None:
    return (job["metadata"].get("annotations") or {}).get(labels.GOVERNING_POLICY)


def succeeded(plane: Any, namespace: str, name: str) -> bool:
    return bool(get(plane, "job", namespace, name).get("status", {}).get("succeeded"))


def held(plane: Any, namespace: str, name: str) -> bool:
    job = get(plane, "job", namespace, name)
    return bool(job["spec"].get("suspend")) and (
        (job["metadata"].get("annotations") or {}).get(labels.REASON) == "WaitingForThreshold"
    )


def events(plane: Any, namespace: str, name: str, reason: str) -> list[str]:
    items = plane.kubectl_json("get", "events", "-n", namespace)["items"]
    return [e["message"] for e in items
            if e["involvedObject"]["name"] == name and e["reason"] == reason]  # fmt: skip


def test_a_plain_cronjob_is_held_and_released_by_an_enforce_policy_unchanged(
    crds: Any, governed: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    grid[0].now = 300.0
    crds.apply(policy("clean-batch", "Enforce", THRESHOLD), namespace=governed)
    cron = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                 "jobTemplate": {"spec": copy.deepcopy(BATCH_JOB_TEMPLATE["spec"])}},
    }  # fmt: skip
    crds.apply(cron, namespace=governed)
    written = get(crds, "cronjob", governed, "nightly")

    def first_run() -> dict[str, Any] | None:
        jobs = crds.kubectl_json("get", "jobs", "-n", governed)["items"]
        owned = [
            j for j in jobs
            if any(r["kind"] == "CronJob" for r in j["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
        return owned[0] if owned else None

    job = wait_for(first_run, timeout=100, what="the CronJob's first Job")
    name = job["metadata"]["name"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][labels.MANAGED] == "true"
    found = job["metadata"]["annotations"]
    assert found[labels.GOVERNING_POLICY] == "clean-batch"
    assert found[labels.POLICY_MODE] == "Enforce"
    assert (found[labels.POLICY], found[labels.MAX_INTENSITY]) == ("Threshold", "100")
    assert found[labels.MAX_DELAY_SECONDS] == "7200"
    wait_for(lambda: held(crds, governed, name), timeout=30, what=f"{name} held")
    time.sleep(3)  # a few ticks at 300 g: still held, no pod
    assert held(crds, governed, name)
    assert not crds.kubectl_json("get", "pods", "-n", governed)["items"]

    grid[0].now = 50.0
    wait_for(lambda: succeeded(crds, governed, name), timeout=60, what=f"{name} released and run")
    done = annotations(crds, governed, name)
    assert done[labels.REASON] == "ThresholdMet"
    wait_for(lambda: labels.SCI_GRAMS in annotations(crds, governed, name), timeout=30,
             what="its SCI")  # fmt: skip
    crds.kubectl("patch", "cronjob", "nightly", "-n", governed, "--type=merge",
                 "-p", '{"spec": {"suspend": true}}')  # fmt: skip
    # The CronJob itself was never touched by the policy (only by the test's suspend).
    after = get(crds, "cronjob", governed, "nightly")
    assert {**after["spec"], "suspend": False} == written["spec"]
    assert after["metadata"].get("annotations") == written["metadata"].get("annotations")
    assert after["metadata"].get("labels") == written["metadata"].get("labels")


def test_jobs_are_never_blocked_by_a_stopped_restarted_or_rotating_webhook(
    crds: Any,
    governed: str,
    grid: tuple[Intensity, UkApiServer],
    webhook: Webhook,
    operator: OperatorProcess,
) -> None:
    grid[0].now = 300.0
    crds.apply(policy("clean-batch", "Enforce", THRESHOLD), namespace=governed)
    created: list[str] = []
    counter = itertools.count()

    def create(prefix: str) -> str:
        name = f"{prefix}-{next(counter)}"
        crds.apply(plain_job(name), namespace=governed)  # raises if the API refused it
        created.append(name)
        return name

    def held_again(prefix: str) -> str | None:
        """Create a Job; its name once one is governed (the webhook answers)."""
        name = create(prefix)
        return name if governed_by(get(crds, "job", governed, name)) else None

    wait_for(lambda: held_again("before"), timeout=30, what="the webhook governing Jobs")

    operator.stop()
    down = create("while-down")
    job = get(crds, "job", governed, down)
    assert not job["spec"].get("suspend")
    assert labels.MANAGED not in job["metadata"].get("labels", {})
    wait_for(lambda: succeeded(crds, governed, down), timeout=60, what="the unheld Job's run")

    operator.start()
    restarted = wait_for(lambda: held_again("restart"), timeout=90, interval=1,
                         what="the restarted operator governing Jobs")  # fmt: skip
    wait_for(lambda: held(crds, governed, restarted), timeout=30, what=f"{restarted} held")

    # Rotation: a new CA in the configuration, then the new files under the running operator
    # (kopf re-reads them); Jobs are created all along, held once both agree again.
    set_ca_bundle(crds, webhook.configuration, write_certificate(webhook.certificates))
    rotated = wait_for(lambda: held_again("rotate"), timeout=90, interval=0.5,
                       what="Jobs governed with the new certificate")  # fmt: skip
    served = ssl.get_server_certificate(("127.0.0.1", webhook.port))
    assert served.strip() == (webhook.certificates / "tls.crt").read_text().strip()
    wait_for(lambda: held(crds, governed, rotated), timeout=30, what=f"{rotated} held")

    # Every Job was created; each either ran at once (ungoverned) or is held until released.
    names = {
        j["metadata"]["name"] for j in crds.kubectl_json("get", "jobs", "-n", governed)["items"]
    }
    assert set(created) <= names
    grid[0].now = 50.0
    for name in created:
        wait_for(lambda name=name: succeeded(crds, governed, name), timeout=90,  # type: ignore[misc]
                 what=f"{name} run")  # fmt: skip


def test_a_shadow_policy_runs_jobs_at_once_and_reports_what_holding_would_have_saved(
    crds: Any, governed: str, grid: tuple[Intensity, UkApiServer], operator: OperatorProcess
) -> None:
    intensity, server = grid
    intensity.now, intensity.low = 300.0, 40.0
    clean_from = period_start(datetime.now(UTC)) + timedelta(hours=2)
    intensity.low_from = clean_from
    schedule = {"policy": "Forecast", "maxDelaySeconds": 6 * 3600, "expectedDurationSeconds": 1800}
    crds.apply(policy("try-first", "Shadow", schedule), namespace=governed)
    crds.apply(plain_job("report"), namespace=governed)

    job = get(crds, "job", governed, "report")
    assert not job["spec"].get("suspend")  # Shadow holds nothing
    assert job["metadata"]["labels"][labels.MANAGED] == "shadow"
    wait_for(lambda: labels.SHADOW_PLANNED_START in annotations(crds, governed, "report"),
             timeout=30, what="the Shadow plan")  # fmt: skip
    planned = annotations(crds, governed, "report")
    assert planned[labels.SHADOW_PLANNED_START] == clean_from.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert float(planned[labels.SHADOW_INTENSITY_NOW]) == 300.0
    assert float(planned[labels.SHADOW_INTENSITY_PLANNED]) == 40.0

    wait_for(lambda: succeeded(crds, governed, "report"), timeout=60, what="the Job's run")
    wait_for(lambda: labels.SHADOW_WOULD_HAVE_GRAMS in annotations(crds, governed, "report"),
             timeout=60, what="the Shadow figures")  # fmt: skip
    found = annotations(crds, governed, "report")
    emitted = float(found[labels.SCI_GRAMS])
    operational = float(found[labels.OPERATIONAL_GRAMS])
    embodied = float(found[labels.EMBODIED_GRAMS])
    would_have = float(found[labels.SHADOW_WOULD_HAVE_GRAMS])
    saved = float(found[labels.SHADOW_WOULD_HAVE_SAVED_GRAMS])
    assert float(found[labels.AVOIDED_GRAMS]) == 0.0  # it ran at once: nothing avoided
    # Ran at 300 g/kWh; as planned it would have run at 40: the same energy, priced at 40.
    assert float(found[labels.INTENSITY_RUN_MEAN]) == 300.0
    assert would_have == pytest.approx(embodied + operational * 40 / 300, rel=1e-4)
    assert saved == pytest.approx(emitted - would_have, rel=1e-4)
    assert saved > 0
    (message,) = events(crds, governed, "report", "ShadowSucceeded")
    assert "try-first" in message
    assert "would have emitted" in message

    print(crds.kubectl("get", "cap", "-n", governed).stdout)
    text = plugin(crds, server, "report", "--since", "1d", "-n", governed, "-o", "json")
    (group,) = json.loads(text)["groups"]
    assert group["policy"] == "Forecast (Shadow: try-first)"
    assert group["emittedGrams"] == pytest.approx(emitted, rel=1e-4)
    assert group["avoidedGrams"] == 0.0
    assert group["wouldHaveSavedGrams"] == pytest.approx(saved, rel=1e-4)

    port = int(operator.env["CARBONAWARE_METRICS_PORT"])
    samples = scrape_metrics(port, timeout=10)
    key = (("namespace", governed), ("policy", "try-first"))
    assert samples[("carbonaware_shadow_would_have_grams_total", key)] == pytest.approx(
        would_have, rel=1e-4
    )
    assert samples[("carbonaware_shadow_emitted_grams_total", key)] == pytest.approx(
        emitted, rel=1e-4
    )
    outcome = (("namespace", governed), ("outcome", "shadowed"))
    assert samples[("carbonaware_policy_admissions_total", outcome)] == 1.0
