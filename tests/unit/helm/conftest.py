"""Fixtures for the Helm chart tests.

helm comes from hack/localplane.py, which builds the pinned Helm 3 once into the shared cache
directory, so CI builds it once for these tests and the integration tests alike. If it cannot be
built, the tests fail: nothing here is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helmchart import Helm, load_localplane


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    localplane = load_localplane()
    localplane.build_helm()
    helm: Path = localplane.helm_bin_dir() / "helm"
    assert helm.is_file(), f"hack/localplane.py built no helm at {helm}"
    return helm


@pytest.fixture(scope="session")
def helm(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(binary=helm_binary, home=tmp_path_factory.mktemp("helm-home"))
