"""Names shared by every part of the test bed: errors, network constants, logging, polling."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
# The operator's CRDs (crds/), which a plane serves once they are Established.
CRD_NAMES = (
    "carbonawarejobs.carbonaware.io",
    "servertargets.carbonaware.io",
    "carbonawarecronjobs.carbonaware.io",
    "carbonawarepolicies.carbonaware.io",
)

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Debian's etcd 3.4.23 predates the etcd fix the API server needs for streaming lists
# (RequestWatchProgress). With the WatchList gate on, kube-apiserver turns every watch
# from resourceVersion ""/"0" into a streaming list and then fails it, so informers retry
# with back-off and lag by seconds. So the server runs without WatchList and Go clients
# don't ask for it (client-go reads its feature gates from the environment).
APISERVER_FEATURE_GATES = "WatchList=false,WatchListClient=false"
CLIENT_FEATURE_GATES = "WatchListClient=false"
CLIENT_ENVIRONMENT = {"KUBE_FEATURE_WatchListClient": "false"}

STATE_FILE = "state.json"
# Stop order: clients of the API first, storage last.
STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")

T = TypeVar("T")


class LocalPlaneError(RuntimeError):
    """The local plane could not be built, started, stopped or queried."""


class KubectlError(LocalPlaneError):
    """kubectl exited non-zero; the message carries its stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip() or stdout.strip()}"
        )


# --------------------------------------------------------------------------- nodes


def log(message: str) -> None:
    print(f"[localplane] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_dir() -> Path:
    """Where built binaries live: $CARBONAWARE_CACHE_DIR or the XDG cache directory."""
    explicit = os.environ.get("CARBONAWARE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "carbon-aware-operator"


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    on_wait: Callable[[], None] | None = None,
) -> T:
    """Call `check` until it returns something other than None, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if on_wait is not None:
            on_wait()
        if time.monotonic() >= deadline:
            raise LocalPlaneError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
