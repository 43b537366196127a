#!/usr/bin/env python3
"""Create the project's virtualenv fast: dependencies from a cache, the project itself editable.

    python3 hack/venv.py .venv

The dependencies (the project's, its ``dev`` and ``bench`` extras and its build requirements)
are installed once per dependency set into a virtualenv under the cache directory
(``~/.cache/carbon-aware-operator/venvs/<key>``, the key a hash of what ``pyproject.toml``
asks for and of the Python version). A checkout's own virtualenv is a hard-linked copy of
that one with its paths rewritten, plus the project installed editable from the checkout:
a few seconds instead of a full install, and every checkout keeps a virtualenv of its own.
A cold cache installs everything, as ``pip install -e '.[dev,bench]'`` would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXTRAS = ("dev", "bench")
sys.path.insert(0, str(REPO / "hack"))

import debian  # noqa: E402
from testbed.common import cache_dir, file_lock  # noqa: E402


def requirements() -> list[str]:
    """Everything the project needs installed, as pip requirement strings."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = list(project["build-system"]["requires"])
    wanted += project["project"].get("dependencies", [])
    extras = project["project"].get("optional-dependencies", {})
    for extra in EXTRAS:
        wanted += extras.get(extra, [])
    return wanted


def cache_key(wanted: list[str]) -> str:
    text = json.dumps({"requirements": sorted(wanted), "python": sys.version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True)


def new_virtualenv(path: Path) -> None:
    """``python -m venv path``; where Debian ships venv's ensurepip apart, its package is
    installed first (``python3.X-venv``)."""
    made = subprocess.run(
        [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, check=False
    )
    if made.returncode == 0:
        return
    debian.install(f"python{sys.version_info.major}.{sys.version_info.minor}-venv")
    shutil.rmtree(path, ignore_errors=True)
    run(sys.executable, "-m", "venv", path)


def cached_dependencies(wanted: list[str]) -> Path:
    """The cache's virtualenv holding ``wanted`` (created on first use)."""
    root = cache_dir() / "venvs"
    root.mkdir(parents=True, exist_ok=True)
    venv = root / cache_key(wanted)
    marker = venv / ".complete"
    with file_lock(root / f"{venv.name}.lock"):
        if not marker.is_file():
            shutil.rmtree(venv, ignore_errors=True)
            print(f"installing the dependencies into {venv} (once per dependency set)")
            new_virtualenv(venv)
            run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
            run(venv / "bin" / "python", "-m", "pip", "install", "-q", *wanted)
            marker.write_text("\n".join(wanted) + "\n")
    return venv


def rewrite_paths(venv: Path, source: Path) -> None:
    """Point the copy's scripts and configuration at itself. Files are replaced, never edited
    in place: they are hard links into the cache."""
    old, new = str(source).encode(), str(venv).encode()
    candidates = [venv / "pyvenv.cfg", *(p for p in (venv / "bin").iterdir() if p.is_file())]
    for path in candidates:
        if path.is_symlink():
            continue
        content = path.read_bytes()
        if old not in content:
            continue
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(content.replace(old, new))
        shutil.copymode(path, temporary)
        os.replace(temporary, path)


def create(venv: Path) -> None:
    venv = venv.absolute()
    source = cached_dependencies(requirements())
    shutil.rmtree(venv, ignore_errors=True)
    try:  # hard links when the cache is on the same filesystem, else a copy
        subprocess.run(["cp", "-al", str(source), str(venv)], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        shutil.rmtree(venv, ignore_errors=True)
        run("cp", "-a", source, venv)
    (venv / ".complete").unlink(missing_ok=True)
    rewrite_paths(venv, source)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", REPO)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    create(Path(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
