"""Bad input is refused by the API server with a message that says what must change.

Every case in ``fixtures/invalid/`` (stage ``api``) is applied with ``kubectl apply`` to the
real local control plane with the CRDs installed (no operator: the schema and its CEL rules
do the work). Each must be refused, and the message must name the field and contain the
case's key words. Edits after release start from an accepted object whose
``status.releaseTime`` is set through the status subresource, as the operator would.
The manifests in ``fixtures/valid/`` must be accepted, so the rules do not refuse good input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .invalidcases import BadInput, load_cases, load_valid

pytestmark = pytest.mark.integration

API_CASES = load_cases(stage="api")
VALID = load_valid()
RELEASE_TIME = "2024-05-01T12:00:00Z"
PLURALS = {
    "CarbonAwareJob": "carbonawarejobs",
    "ServerTarget": "servertargets",
    "CarbonAwareCronJob": "carbonawarecronjobs",
    "CarbonAwarePolicy": "carbonawarepolicies",
}


@pytest.fixture(scope="module")
def cases_namespace(crds: Any) -> Iterator[str]:
    """One namespace for every case (names are unique per fixture)."""
    name: str = crds.create_namespace("badinput")
    yield name
    crds.delete_namespace(name)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> Iterator[list[tuple[str, str, str]]]:
    """Collects (case, field, verdict) and prints them as a table after the module."""
    rows: list[tuple[str, str, str]] = []
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not rows:
        return
    width = max(len(case) for case, _, _ in rows)
    field_width = max(len(field) for _, field, _ in rows)
    reporter.write_line("")
    reporter.write_line(f"bad input refused by the API server ({len(rows)} cases):")
    reporter.write_line(f"  {'case':<{width}}  {'field named':<{field_width}}  verdict")
    for case, field, verdict in rows:
        reporter.write_line(f"  {case:<{width}}  {field:<{field_width}}  {verdict}")


def apply(plane: Any, namespace: str, manifest: dict[str, Any]) -> Any:
    return plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps(manifest), check=False
    )


def stored(plane: Any, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = plane.kubectl("get", PLURALS[kind], name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def release(plane: Any, namespace: str, name: str) -> None:
    """Mark a CarbonAwareJob released the way the operator does: through /status."""
    plane.kubectl(
        "patch", "carbonawarejobs", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"releaseTime": RELEASE_TIME}}),
    )  # fmt: skip


def names_the_field(message: str, field: str) -> bool:
    """The API server prefixes each problem with its path (``spec.port: Invalid value``);
    strict field validation reports ``unknown field "spec.x"``."""
    return f"{field}:" in message or f'unknown field "{field}"' in message


@pytest.mark.parametrize("case", API_CASES, ids=[case.id for case in API_CASES])
def test_bad_input_is_refused_with_a_message_that_says_what_to_change(
    crds: Any, cases_namespace: str, summary: list[tuple[str, str, str]], case: BadInput
) -> None:
    verdict = "FAILED"
    try:
        before = None
        if case.existing is not None:
            created = apply(crds, cases_namespace, case.existing)
            assert created.returncode == 0, f"the starting object was refused: {created.stderr}"
            release(crds, cases_namespace, case.name)
            before = stored(crds, cases_namespace, case.kind, case.name)

        result = apply(crds, cases_namespace, case.manifest)

        message = result.stderr
        assert result.returncode != 0, f"accepted: {result.stdout}"
        assert names_the_field(message, case.field), f"{case.field} not named in: {message}"
        for fragment in case.says:
            assert fragment in message, f"{fragment!r} not in: {message}"
        after = stored(crds, cases_namespace, case.kind, case.name)
        if before is None:
            assert after is None, "a refused object must not exist"
        else:
            assert after is not None
            assert after["spec"] == before["spec"], "a refused edit must change nothing"
        verdict = "refused, " + "; ".join(case.says)[:60]
    finally:
        summary.append((case.id, case.field, verdict))


def contains(whole: Any, part: Any) -> bool:
    """``part`` is ``whole`` with some defaulted fields left out."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and contains(whole[key], value) for key, value in part.items()
        )
    return bool(whole == part)


@pytest.mark.parametrize(("name", "manifest"), VALID, ids=[name for name, _ in VALID])
def test_valid_resources_are_accepted(
    crds: Any, cases_namespace: str, name: str, manifest: dict[str, Any]
) -> None:
    result = apply(crds, cases_namespace, manifest)
    assert result.returncode == 0, result.stderr
    document = stored(crds, cases_namespace, manifest["kind"], manifest["metadata"]["name"])
    assert document is not None
    assert contains(document["spec"], manifest["spec"]), document["spec"]


def test_defaults_are_filled_in(crds: Any, cases_namespace: str) -> None:
    manifest = dict(VALID)["caj-minimal"]
    assert apply(crds, cases_namespace, manifest).returncode == 0
    spec = stored(crds, cases_namespace, "CarbonAwareJob", manifest["metadata"]["name"])["spec"]  # type: ignore[index]
    # maxDelaySeconds has no schema default: with deadlineTime alone the deadline alone bounds
    # the hold, and with neither the operator holds for at most 24 h (status.latestStartBound).
    assert spec["schedule"] == {"policy": "Forecast", "expectedDurationSeconds": 3600}
    assert spec["priority"] == 0
    assert spec["sci"] == {"functionalUnit": {"name": "run", "quantity": 1}}
    assert spec["ssh"]["workingDir"] == "."
    assert spec["ssh"]["timeoutSeconds"] == 86400


def released_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"name": name},
        "spec": {
            "description": "nightly model training",
            "region": "GB",
            "schedule": {"policy": "Forecast", "maxDelaySeconds": 43200},
            "ssh": {"targetRef": {"name": "backup"}, "command": "./nightly.sh"},
        },
    }


def test_description_stays_editable_after_release(crds: Any, cases_namespace: str) -> None:
    manifest = released_job("describe-me")
    assert apply(crds, cases_namespace, manifest).returncode == 0
    release(crds, cases_namespace, "describe-me")
    manifest["spec"]["description"] = "nightly model training (re-run of Tuesday's data)"

    result = apply(crds, cases_namespace, manifest)

    assert result.returncode == 0, result.stderr
    document = stored(crds, cases_namespace, "CarbonAwareJob", "describe-me")
    assert document is not None
    assert document["spec"]["description"].endswith("(re-run of Tuesday's data)")
    assert document["status"]["releaseTime"] == RELEASE_TIME


def test_everything_stays_editable_until_release(crds: Any, cases_namespace: str) -> None:
    """The immutability rules key on status.releaseTime, not on the object's age."""
    manifest = released_job("still-held")
    assert apply(crds, cases_namespace, manifest).returncode == 0
    manifest["spec"]["schedule"] = {"policy": "Threshold", "maxIntensity": 100}
    manifest["spec"]["region"] = "DE"
    manifest["spec"]["ssh"]["command"] = "./nightly.sh --full"
    manifest["spec"]["sci"] = {"functionalUnit": {"name": "backups", "quantity": 2}}

    result = apply(crds, cases_namespace, manifest)

    assert result.returncode == 0, result.stderr
    document = stored(crds, cases_namespace, "CarbonAwareJob", "still-held")
    assert document is not None
    assert document["spec"]["region"] == "DE"
    assert document["spec"]["schedule"]["maxIntensity"] == 100
