"""Building the test bed's programs from pinned sources, with progress every 30 s.

Binaries are built with the Go toolchain and cached under ``cache_dir()/bin``, one
directory per version, so a pin change builds again and an unchanged pin never does.
etcd and openssl come from Debian.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import debian

from .common import REPO_ROOT, LocalPlaneError, cache_dir, file_lock, log

KUBERNETES_TOOLS_MODULE = REPO_ROOT / "hack" / "k8s"

# Pins. kwok and Helm are plain Go modules; Kubernetes is pinned in hack/k8s/go.mod.
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# Add-ons of the real worker node. metrics-server v0.9.1 needs a newer Go than the pin.
METRICS_SERVER_VERSION = "v0.9.0"
COREDNS_VERSION = "v1.15.0"
# Kubernetes minor of the client-go Helm is built with (its release Makefile stamps it).
HELM_KUBERNETES_MINOR = "37"
# Go release the pins are built with. A different local Go fetches this one through
# GOTOOLCHAIN: Go 1.27's encoding/json rewrite breaks kube-apiserver's /openapi.
GO_MINOR = 26
GO_TOOLCHAIN = "go1.26.8"

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)

# kwok manages only nodes carrying this annotation (it is kwok's documented convention).


def kubernetes_version() -> str:
    """The k8s.io/kubernetes version pinned in hack/k8s/go.mod (e.g. "v1.36.2")."""
    go_mod = (KUBERNETES_TOOLS_MODULE / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", go_mod, re.MULTILINE)
    if match is None:
        raise LocalPlaneError(f"no k8s.io/kubernetes requirement in {KUBERNETES_TOOLS_MODULE}")
    return match.group(1)


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Paths of every program the plane runs."""

    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path
    etcd: Path

    @property
    def path_dirs(self) -> list[Path]:
        """Directories to put on PATH so `kubectl` and `helm` resolve to these builds."""
        dirs: list[Path] = []
        for binary in (self.kubectl, self.helm, self.kwok):
            if binary.parent not in dirs:
                dirs.append(binary.parent)
        return dirs


def kubernetes_bin_dir() -> Path:
    return cache_dir() / "bin" / f"kubernetes-{kubernetes_version()}"


def kwok_bin_dir() -> Path:
    return cache_dir() / "bin" / f"kwok-{KWOK_VERSION}"


def helm_bin_dir() -> Path:
    return cache_dir() / "bin" / f"helm-{HELM_VERSION}"


def find_etcd() -> Path | None:
    found = shutil.which("etcd")
    return Path(found) if found else None


def binaries(*, require: bool = True) -> Binaries:
    """The binary paths for the current pins; with `require`, fail if any is missing."""
    k8s_dir = kubernetes_bin_dir()
    etcd = find_etcd()
    result = Binaries(
        kube_apiserver=k8s_dir / "kube-apiserver",
        kube_controller_manager=k8s_dir / "kube-controller-manager",
        kube_scheduler=k8s_dir / "kube-scheduler",
        kubectl=k8s_dir / "kubectl",
        kwok=kwok_bin_dir() / "kwok",
        helm=helm_bin_dir() / "helm",
        etcd=etcd or Path("etcd"),
    )
    if require:
        missing = [
            str(path)
            for path in dataclasses.astuple(result)
            if isinstance(path, Path) and not (path.is_file() and os.access(path, os.X_OK))
        ]
        if missing:
            raise LocalPlaneError(
                "missing binaries (run `python hack/localplane.py build`): " + ", ".join(missing)
            )
    return result


def _go_version(go: str) -> tuple[int, int]:
    env = dict(os.environ, GOTOOLCHAIN="local")
    out = subprocess.run(
        [go, "env", "GOVERSION"], env=env, cwd="/", capture_output=True, text=True, check=True
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if match is None:
        raise LocalPlaneError(f"cannot parse Go version {out!r}")
    return int(match.group(1)), int(match.group(2))


def go_build_environment() -> tuple[str, dict[str, str]]:
    """The `go` executable and the environment to build the pins with (Go 1.26)."""
    go = shutil.which("go")
    if go is None:
        raise LocalPlaneError("`go` not found on PATH; Go 1.26 is needed to build the plane")
    env = dict(os.environ)
    if "GOTOOLCHAIN" not in os.environ and _go_version(go) != (1, GO_MINOR):
        env["GOTOOLCHAIN"] = GO_TOOLCHAIN
    return go, env


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time per cache directory, across processes."""
    with file_lock(cache_dir() / "bin" / ".build.lock"):
        yield


def _install_built(staging: Path, target_dir: Path, names: Sequence[str]) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        built = staging / name
        if not built.is_file():
            raise LocalPlaneError(f"build produced no {name} in {staging}")
        os.replace(built, target_dir / name)
    shutil.rmtree(staging, ignore_errors=True)


def run_with_progress(argv: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    """Run one build step, printing the elapsed time every 30 s so it never looks hung."""
    log(f"building {what}: {' '.join(argv)}")
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(
            argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
        )
        while True:
            try:
                returncode = process.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                log(f"  still building {what.split(' (')[0]}: {time.monotonic() - started:.0f} s")
        stderr.seek(0)
        output = stderr.read()
    if returncode != 0:
        raise LocalPlaneError(f"building {what} failed ({returncode}):\n{output[-6000:]}")


def build_kubernetes() -> float | None:
    """Build the four Kubernetes binaries; return the seconds spent, or None if cached."""
    target = kubernetes_bin_dir()
    if all((target / name).is_file() for name in KUBERNETES_COMMANDS):
        return None
    go, env = go_build_environment()
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # The same version stamp the Kubernetes release build sets (hack/lib/version.sh), so
    # clients such as Helm see a real server version instead of v0.0.0-master.
    ldflags = ["-s", "-w"] + [
        f"-X k8s.io/{package}.{key}={value}"
        for package in ("client-go/pkg/version", "component-base/version")
        for key, value in stamp.items()
    ]
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    started = time.monotonic()
    run_with_progress(
        [go, "build", "-trimpath", f"-ldflags={' '.join(ldflags)}", "-o", f"{staging}/"]
        + [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS],
        env,
        KUBERNETES_TOOLS_MODULE,
        f"Kubernetes {version} (kube-apiserver, kube-controller-manager, kube-scheduler, "
        "kubectl, kubelet, kube-proxy)",
    )
    _install_built(staging, target, KUBERNETES_COMMANDS)
    return time.monotonic() - started


def _go_install(
    module_path: str,
    version: str,
    ldflags: str,
    target: Path,
    name: str,
    extra_env: Mapping[str, str] | None = None,
) -> float:
    go, env = go_build_environment()
    env.update(extra_env or {})
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env["GOBIN"] = str(staging)
    started = time.monotonic()
    run_with_progress(
        [go, "install", "-trimpath", f"-ldflags={ldflags}", f"{module_path}@{version}"],
        env,
        staging,
        f"{name} {version}",
    )
    _install_built(staging, target, [name])
    return time.monotonic() - started


def build_kwok() -> float | None:
    """Build kwok; return the seconds spent, or None if cached."""
    if (kwok_bin_dir() / "kwok").is_file():
        return None
    return _go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, "-s -w", kwok_bin_dir(), "kwok")


def build_helm() -> float | None:
    """Build Helm 3; return the seconds spent, or None if cached."""
    if (helm_bin_dir() / "helm").is_file():
        return None
    # The version stamps Helm's release Makefile sets.
    ldflags = " ".join(
        [
            "-s -w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_KUBERNETES_MINOR}",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_KUBERNETES_MINOR}",
        ]
    )
    return _go_install("helm.sh/helm/v3/cmd/helm", HELM_VERSION, ldflags, helm_bin_dir(), "helm")


def _install(binary: str) -> None:
    try:
        debian.ensure(binary)
    except debian.InstallError as exc:
        raise LocalPlaneError(str(exc)) from exc


def ensure_etcd() -> Path:
    """etcd from PATH, installing Debian's etcd-server package if there is none."""
    found = find_etcd()
    if found is None:
        _install("etcd")
        found = find_etcd()
    if found is None:
        raise LocalPlaneError("etcd-server is installed but no `etcd` is on PATH")
    return found


def ensure_openssl() -> Path:
    found = shutil.which("openssl")
    if found is None:
        _install("openssl")
        found = shutil.which("openssl")
    if found is None:
        raise LocalPlaneError("openssl is installed but not on PATH")
    return Path(found)


def metrics_server_bin_dir() -> Path:
    return cache_dir() / "bin" / f"metrics-server-{METRICS_SERVER_VERSION}"


def coredns_bin_dir() -> Path:
    return cache_dir() / "bin" / f"coredns-{COREDNS_VERSION}"


def build_metrics_server() -> float | None:
    """Build metrics-server (the real node's metrics.k8s.io); seconds spent, or None."""
    if (metrics_server_bin_dir() / "metrics-server").is_file():
        return None
    return _go_install(
        "sigs.k8s.io/metrics-server/cmd/metrics-server",
        METRICS_SERVER_VERSION,
        "-s -w",
        metrics_server_bin_dir(),
        "metrics-server",
        {"CGO_ENABLED": "0"},
    )


def build_coredns() -> float | None:
    """Build CoreDNS (cluster DNS for pods on the real node); seconds spent, or None."""
    if (coredns_bin_dir() / "coredns").is_file():
        return None
    return _go_install(
        "github.com/coredns/coredns",
        COREDNS_VERSION,
        "-s -w",
        coredns_bin_dir(),
        "coredns",
        {"CGO_ENABLED": "0"},
    )


def ensure_node_addons_built() -> dict[str, float]:
    """Build metrics-server and CoreDNS if missing; build seconds of those built now."""
    timings: dict[str, float] = {}
    with build_lock():
        for name, build in (("metrics-server", build_metrics_server), ("coredns", build_coredns)):
            seconds = build()
            if seconds is not None:
                timings[name] = seconds
                log(f"built {name} in {seconds:.1f} s")
    return timings


def ensure_built() -> tuple[Binaries, dict[str, float]]:
    """Build or find every binary; return them and the build seconds of those built now."""
    timings: dict[str, float] = {}
    with build_lock():
        for name, build in (
            ("kubernetes", build_kubernetes),
            ("kwok", build_kwok),
            ("helm", build_helm),
        ):
            seconds = build()
            if seconds is not None:
                timings[name] = seconds
                log(f"built {name} in {seconds:.1f} s")
    ensure_etcd()
    ensure_openssl()
    return binaries(), timings


# --------------------------------------------------------------------------- PKI
