"""Running the pinned helm against the chart, and reading what it renders."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART = REPO_ROOT / "helm" / "carbon-aware-operator"
RELEASE = "demo"
NAMESPACE = "carbon"
FULLNAME = f"{RELEASE}-carbon-aware-operator"


def load_localplane() -> ModuleType:
    """Import hack/localplane.py by path (hack/ is not a package)."""
    name = "carbonaware_hack_localplane"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "hack" / "localplane.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Helm:
    """The pinned helm with a private Helm home, pointed at the chart."""

    binary: Path
    home: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        return subprocess.run(
            [str(self.binary), *args], env=env, capture_output=True, text=True, timeout=120
        )

    def template_text(self, *values: str, namespace: str = NAMESPACE) -> str:
        """Render the chart with `--set` values; fail the test if helm fails."""
        args = ["template", RELEASE, str(CHART), "--namespace", namespace]
        for value in values:
            args += ["--set", value]
        result = self.run(*args)
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def template(self, *values: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        """Render the chart with `--set` values and return the parsed objects."""
        text = self.template_text(*values, namespace=namespace)
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def template_error(self, *values: str) -> str:
        """Render with values the chart must refuse; return helm's error output."""
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for value in values:
            args += ["--set", value]
        result = self.run(*args)
        assert result.returncode != 0, f"helm accepted {values}:\n{result.stdout[:2000]}"
        return result.stderr


USER_ROLES = frozenset({"carbonaware-edit", "carbonaware-view"})


def is_user_role(obj: dict[str, Any]) -> bool:
    """The aggregated ClusterRoles for people (rbac.userRoles), not the operator's own."""
    return obj["kind"] == "ClusterRole" and obj["metadata"]["name"] in USER_ROLES


def only(objects: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single rendered object of a kind (for ClusterRole: the operator's own)."""
    found = [obj for obj in objects if obj["kind"] == kind and not is_user_role(obj)]
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objects: Sequence[dict[str, Any]]) -> set[str]:
    return {obj["kind"] for obj in objects}


def container(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The operator container of the rendered Deployment."""
    spec = only(objects, "Deployment")["spec"]["template"]["spec"]
    (operator,) = spec["containers"]
    assert isinstance(operator, dict)
    return operator


def env_of(objects: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operator container's environment, by variable name."""
    return {item["name"]: item for item in container(objects)["env"]}


def rbac_rules(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rule of every rendered Role and ClusterRole of the operator (not the user roles)."""
    return [
        rule
        for obj in objects
        if obj["kind"] in ("Role", "ClusterRole") and not is_user_role(obj)
        for rule in obj.get("rules", [])
    ]
