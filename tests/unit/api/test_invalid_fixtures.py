"""The pydantic models refuse what the CRDs refuse: every API-stage case in
tests/integration/fixtures/invalid/ (bar edits after release, which need the old object)
fails model validation, and every manifest in fixtures/valid/ passes.

JSON strict mode mirrors the API server: a number must be a JSON number, not a string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from carbonaware.api.carbonawarejob import CarbonAwareJobSpec
from carbonaware.api.cronjob import CarbonAwareCronJobSpec
from carbonaware.api.policy import CarbonAwarePolicySpec
from carbonaware.api.servertarget import ServerTargetSpec

FIXTURES = Path(__file__).parents[2] / "integration" / "fixtures"
MODELS: dict[str, type[BaseModel]] = {
    "CarbonAwareJob": CarbonAwareJobSpec,
    "ServerTarget": ServerTargetSpec,
    "CarbonAwareCronJob": CarbonAwareCronJobSpec,
    "CarbonAwarePolicy": CarbonAwarePolicySpec,
}


def cases() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.stem, yaml.safe_load(path.read_text()))
        for path in sorted((FIXTURES / "invalid").glob("*.yaml"))
    ]


def valid() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.stem, yaml.safe_load(path.read_text()))
        for path in sorted((FIXTURES / "valid").glob("*.yaml"))
    ]


API_CASES = [
    (name, case)
    for name, case in cases()
    if case.get("stage", "api") == "api" and "existing" not in case and "spec" in case["manifest"]
]


def validate(manifest: dict[str, Any]) -> BaseModel:
    model = MODELS[manifest["kind"]]
    return model.model_validate_json(json.dumps(manifest["spec"]), strict=True)


@pytest.mark.parametrize(("name", "case"), API_CASES, ids=[name for name, _ in API_CASES])
def test_the_model_refuses_what_the_crd_refuses(name: str, case: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate(case["manifest"])


@pytest.mark.parametrize(("name", "manifest"), valid(), ids=[name for name, _ in valid()])
def test_the_model_accepts_what_the_crd_accepts(name: str, manifest: dict[str, Any]) -> None:
    validate(manifest)


def test_the_edits_after_release_start_from_valid_objects() -> None:
    edits = [case for _, case in cases() if "existing" in case]
    assert len(edits) >= 5
    for case in edits:
        validate(case["existing"])
        validate(case["manifest"])  # valid on its own: only the transition is refused


def test_the_case_table_is_broad_and_specific() -> None:
    """At least 30 API cases, 10 of them CarbonAwareJobs; every case names a field and
    expects key words, never just the API server's generic "is invalid"."""
    api = [case for _, case in cases() if case.get("stage", "api") == "api"]
    kinds = [case["manifest"]["kind"] for case in api]
    assert len(api) >= 30
    assert kinds.count("CarbonAwareJob") >= 10
    assert kinds.count("ServerTarget") >= 10
    for name, case in cases():
        expect = case["expect"]
        assert expect["field"].startswith(("spec", "carbonaware.io/")), name
        assert expect["says"], name
        for fragment in expect["says"]:
            assert fragment.strip() not in ("is invalid", "invalid", "Invalid value"), name
