"""values.yaml is documented name-first; the image and the kind cluster fit the chart."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from carbonaware.config import OperatorSettings

from .helmchart import CHART, REPO_ROOT


@dataclass
class Key:
    """One key of values.yaml: its dotted path, the comment above it, its children."""

    path: str
    comment: str
    children: list[Key] = field(default_factory=list)


def parse_values(text: str) -> list[Key]:
    """Keys of a values file by indentation, each with the comment block right above it."""
    roots: list[Key] = []
    stack: list[tuple[int, Key]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
            continue
        match = re.match(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*):", line)
        if match is None:  # a list item or a continuation
            comment = []
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1] if stack else None
        path = f"{parent.path}.{match.group(2)}" if parent else match.group(2)
        key = Key(path=path, comment=" ".join(comment))
        (parent.children if parent else roots).append(key)
        stack.append((indent, key))
        comment = []
    return roots


def undocumented(keys: list[Key]) -> list[str]:
    """Keys that break the rule: documented name-first, or an undocumented section of such keys."""
    problems = []
    for key in keys:
        if key.comment:
            if not key.comment.startswith(f"{key.path} "):
                problems.append(f"{key.path}: comment does not start with its name")
        elif key.children:
            problems += undocumented(key.children)  # a section: its keys carry the docs
        else:
            problems.append(f"{key.path}: no comment")
    return problems


def test_values_are_documented_name_first() -> None:
    keys = parse_values((CHART / "values.yaml").read_text())
    assert len(keys) > 20
    assert undocumented(keys) == []


def test_the_documentation_rule_catches_a_bare_key() -> None:
    text = (
        "# top is documented\ntop: 1\nsection:\n  ok: 1\n  # wrong.name is not this key\n  bad: 2\n"
    )
    assert undocumented(parse_values(text)) == [
        "section.ok: no comment",
        "section.bad: comment does not start with its name",
    ]


def dockerfile() -> str:
    return (REPO_ROOT / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_image_is_multi_stage_slim_and_non_root() -> None:
    steps = instructions(dockerfile())
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].endswith("AS build")
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile())
    # The runtime stage runs as the uid the chart's security context expects.
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    users = [rest for word, rest in steps if word == "USER"]
    assert users == [
        f"{values['securityContext']['runAsUser']}:{values['securityContext']['runAsGroup']}"
    ]
    assert ("ENTRYPOINT", '["carbonaware"]') in steps
    assert ("CMD", '["run"]') in steps
    copies = [rest for word, rest in steps if word == "COPY"]
    assert any(rest.startswith("--from=build ") for rest in copies)


def test_dockerignore_sends_only_the_package_sources() -> None:
    lines = [
        line
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for word, rest in instructions(dockerfile())
        if word == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert copied <= allowed


def test_chart_image_is_the_runner_image_default() -> None:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    image = f"{values['image']['repository']}:{chart['appVersion']}"
    assert OperatorSettings.model_fields["runner_image"].default == image


def test_kind_cluster_has_two_labelled_workers_on_kubernetes_136() -> None:
    config = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [node["role"] for node in config["nodes"]]
    assert roles == ["control-plane", "worker", "worker"]
    for node in config["nodes"]:
        assert re.fullmatch(r"kindest/node:v1\.36\.\d+@sha256:[0-9a-f]{64}", node["image"])
    for worker in config["nodes"][1:]:
        assert worker["labels"]["node.kubernetes.io/instance-type"]
        assert worker["labels"]["topology.kubernetes.io/region"]
    regions = {w["labels"]["topology.kubernetes.io/region"] for w in config["nodes"][1:]}
    assert len(regions) == 2
