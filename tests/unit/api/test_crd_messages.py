"""Every CEL rule in crds/*.yaml carries a message that names its field and says "must"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = Path(__file__).parents[3] / "crds"


def rules(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from rules(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from rules(schema["items"], f"{path}[]")


def all_rules() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for crd_path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(crd_path.read_text())
        (version,) = crd["spec"]["versions"]
        for path, rule in rules(version["schema"]["openAPIV3Schema"], ""):
            found.append((crd_path.stem, path, rule))
    return found


RULES = all_rules()


@pytest.mark.parametrize(
    ("crd", "path", "rule"), RULES, ids=[f"{crd}:{path or 'root'}" for crd, path, _ in RULES]
)
def test_rule_message_says_what_must_change(crd: str, path: str, rule: dict[str, Any]) -> None:
    message = rule.get("message", "")
    assert " must " in f" {message} ", f"{crd} {path}: {message!r}"
    assert "spec." in message, f"{crd} {path}: the message must name the field: {message!r}"


def test_there_are_rules_to_check() -> None:
    assert len(RULES) >= 20
