"""Scripts of this repository that are not an installed package (``hack/localplane.py``,
the test bed's helpers under ``tests/integration/``), for the benchmarks, which run as scripts
from this directory."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_by_path(name: str, path: Path) -> ModuleType:
    """Import the script at ``path`` as module ``name``, once per process."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_localplane() -> ModuleType:
    """hack/localplane.py."""
    return load_by_path("localplane", REPO_ROOT / "hack/localplane.py")
