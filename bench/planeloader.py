"""The local control plane (``hack/localplane.py``, a script, not an installed package) for the
benchmarks, which run as scripts from this directory."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_localplane() -> ModuleType:
    """Import hack/localplane.py once per process."""
    loaded = sys.modules.get("localplane")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("localplane", REPO_ROOT / "hack/localplane.py")
    if spec is None or spec.loader is None:
        raise ImportError("cannot load hack/localplane.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["localplane"] = module
    spec.loader.exec_module(module)
    return module
