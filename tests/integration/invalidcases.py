"""The malformed-resource cases in ``fixtures/invalid/``, one YAML file per case.

Each file holds::

    # why this input is wrong (one line)
    stage: api            # api (default): the API server refuses it; operator: only the
                          # operator can tell (plain Jobs' annotations), it marks the object
    existing: {...}       # optional: created first and marked released through the status
                          # subresource; ``manifest`` is then an edit of it
    expect:
      field: spec.schedule.maxDelaySeconds   # the field the message must name
      says: [must be between 0 and 31536000] # fragments the message must contain
    manifest: {...}       # what the user applies

``fixtures/valid/`` holds manifests (plain YAML) that must be accepted, so the rules are
shown not to refuse good input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).parent / "fixtures"
INVALID = FIXTURES / "invalid"
VALID = FIXTURES / "valid"
STAGES = ("api", "operator")


@dataclass(frozen=True)
class BadInput:
    id: str
    why: str
    stage: str
    field: str
    says: tuple[str, ...]
    manifest: dict[str, Any]
    existing: dict[str, Any] | None

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])


def load(path: Path) -> BadInput:
    text = path.read_text()
    first = text.splitlines()[0] if text else ""
    if not first.startswith("# "):
        raise ValueError(f"{path.name}: the first line must be a '# why' comment")
    data = yaml.safe_load(text)
    unknown = set(data) - {"stage", "existing", "expect", "manifest"}
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
    stage = data.get("stage", "api")
    if stage not in STAGES:
        raise ValueError(f"{path.name}: stage must be one of {STAGES}")
    expect = data["expect"]
    return BadInput(
        id=path.stem,
        why=first[2:].strip(),
        stage=stage,
        field=str(expect["field"]),
        says=tuple(str(fragment) for fragment in expect["says"]),
        manifest=data["manifest"],
        existing=data.get("existing"),
    )


def load_cases(stage: str | None = None) -> list[BadInput]:
    cases = [load(path) for path in sorted(INVALID.glob("*.yaml"))]
    return [case for case in cases if stage is None or case.stage == stage]


def load_valid() -> list[tuple[str, dict[str, Any]]]:
    return [(path.stem, yaml.safe_load(path.read_text())) for path in sorted(VALID.glob("*.yaml"))]
