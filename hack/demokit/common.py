"""What every part of the demo shares: its settings, its output, its state file, and reading
the objects it watches. Standard library only (``make demo`` starts without the venv)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import localplane

HACK = Path(__file__).resolve().parents[1]
REPO_ROOT = HACK.parent

T = TypeVar("T")

VENV = REPO_ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
EXAMPLES = REPO_ROOT / "examples"
CRDS = REPO_ROOT / "crds"
NAMESPACE = "carbon-demo"
REGION = "GB"
TICK_SECONDS = 5
SSH_PROBE_SECONDS = 30
DEFAULT_METRICS_PORT = 9808
# How long the jobs may take to settle after they are applied (most take about a minute).
SETTLE_TIMEOUT_SECONDS = 240
# A Held job whose planned start is closer than this is still expected to move.
SOON_SECONDS = 90
STATE_FILE = "demo.json"
STARTED_ENV = "CARBONAWARE_DEMO_STARTED_AT"
ATTRIBUTION = "Carbon Intensity API, NESO (CC BY 4.0)"

# Applied together first; the SSH jobs follow once the ServerTarget is reachable.
CLUSTER_JOBS = (
    "forecast-24h-training",
    "forecast-60s-etl",
    "threshold-met-reindex",
    "threshold-low-backfill",
    "immediate-report",
)
PLAIN_JOB = "plain-nightly-backup"
# Runs in a real container on the real node (the others stay on kwok).
REAL_NODE_JOB = "immediate-report"
REAL_NODE_BURN_SECONDS = 30
SSH_FIRST = "ssh-compress-logs"
SSH_SECOND = "ssh-cleanup-archives"
SERVER_TARGET_FILE = EXAMPLES / "servertarget.yaml"


class DemoError(RuntimeError):
    """The demo could not be started or stopped; the message says what to do."""


# --------------------------------------------------------------------------- output


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def note(message: str) -> None:
    print(f"    {message}", flush=True)


def heading(title: str) -> None:
    print(f"\n--- {title} " + "-" * max(0, 86 - len(title)), flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns, like kubectl's tables."""
    rows = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- paths, state


def workdir() -> Path:
    explicit = os.environ.get("CARBONAWARE_DEMO_DIR")
    return Path(explicit).expanduser() if explicit else localplane.cache_dir() / "demo"


def metrics_port() -> int:
    return int(os.environ.get("CARBONAWARE_DEMO_METRICS_PORT") or DEFAULT_METRICS_PORT)


def load_state(work: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((work / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state


def save_state(work: Path, state: dict[str, Any]) -> None:
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, work / STATE_FILE)


# --------------------------------------------------------------------------- reading


def get_json(plane: Any, *args: str) -> Any:
    return plane.kubectl_json(*args, "-n", NAMESPACE)


def metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text: str = response.read().decode()
            return text
    except (OSError, urllib.error.URLError):
        return None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def hhmm(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(UTC)
    day = "" if local.date() == datetime.now(UTC).date() else " tomorrow"
    return f"{local:%H:%M} UTC{day}"
