#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, for the integration tests and the demo.

It runs etcd, kube-apiserver (TLS, RBAC, service-account tokens), kube-controller-manager,
kube-scheduler and kwok, which plays the kubelet for a few fake nodes: pods bound to them
go Running, and pods owned by a Job finish on their own after a short delay. Nothing runs
in containers, so the plane starts in seconds on a laptop or a CI machine without Docker.

Command line::

    python hack/localplane.py build                 # build the binaries once (cached)
    python hack/localplane.py up [--workdir DIR]    # start detached, print `export ...`
    python hack/localplane.py env [--workdir DIR]   # print the `export ...` lines again
    python hack/localplane.py status [--workdir DIR]
    python hack/localplane.py down [--workdir DIR]

Python::

    plane = LocalPlane(workdir=Path("/tmp/plane"))
    plane.ensure_built()
    plane.start()        # returns once /readyz is ok, the kwok nodes are Ready and the
                         # default ServiceAccount exists
    plane.kubectl("get", "nodes")
    plane.restart_apiserver()
    plane.stop()

Every start begins with an empty etcd (a fresh cluster) on new free loopback ports, so
several planes can run side by side; the workdir keeps the PKI, the kubeconfigs, the PIDs
(state.json) and one log file per component (logs/).

Binaries are built from pinned sources with the Go toolchain and cached under
``$CARBONAWARE_CACHE_DIR`` (default ``${XDG_CACHE_HOME:-~/.cache}/carbon-aware-operator``),
one directory per version, so a pin change builds again and an unchanged pin never does.
etcd comes from Debian (``apt-get install etcd-server``). Standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

# The sibling scripts in hack/ are modules too, whether this file runs as a script or is
# imported by path from the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import debian

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_TOOLS_MODULE = REPO_ROOT / "hack" / "k8s"

# Pins. kwok and Helm are plain Go modules; Kubernetes is pinned in hack/k8s/go.mod.
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
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
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
# Pod annotations read by the pod stages below. The delay is a Go duration ("2s", "10m")
# or an RFC 3339 time; the key is the one kwok's own stage files use.
POD_COMPLETE_DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"
# When present, the pod ends Failed with this exit code (e.g. "3") instead of Succeeded.
POD_EXIT_CODE_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/exit-code"
DEFAULT_POD_COMPLETE_DELAY_MS = 2000

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


@dataclasses.dataclass(frozen=True)
class KwokNode:
    """A fake node with the labels and capacity a cloud node of that type would carry."""

    name: str
    instance_type: str
    region: str
    zone: str
    cpu: str
    memory: str
    pods: str = "110"

    def manifest(self, kubernetes_version: str) -> dict[str, Any]:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {
                    KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": self.instance_type,
                    "topology.kubernetes.io/region": self.region,
                    "topology.kubernetes.io/zone": self.zone,
                },
            },
            "spec": {"providerID": f"kwok://{self.name}"},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": kubernetes_version,
                    "kubeProxyVersion": kubernetes_version,
                    "containerRuntimeVersion": f"kwok://{KWOK_VERSION}",
                    "kernelVersion": "6.1.0",
                    "osImage": "Debian GNU/Linux 12 (bookworm)",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            },
        }


# London (GB grid) and Frankfurt (DE grid): the two regions the shipped traces cover.
DEFAULT_NODES: tuple[KwokNode, ...] = (
    KwokNode(
        name="kwok-aws-eu-west-2a",
        instance_type="m5.xlarge",
        region="eu-west-2",
        zone="eu-west-2a",
        cpu="4",
        memory="16Gi",
    ),
    KwokNode(
        name="kwok-gcp-europe-west3-a",
        instance_type="n2-standard-4",
        region="europe-west3",
        zone="europe-west3-a",
        cpu="4",
        memory="16Gi",
    ),
)


# kwok Stage configuration (kwok.x-k8s.io/v1alpha1): nodes become Ready and keep a
# heartbeat; pods on kwok nodes go Running; Job pods (and any pod with the delay
# annotation) end Succeeded after the delay, or Failed when the exit-code annotation is set;
# deleted pods go away at once.
_STAGES_TEMPLATE = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      addresses:
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 20000
    jitterDurationMilliseconds: 25000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
  immediateNextStage: true
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: @POD_IP@
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete-job
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      @SUCCEEDED_STATUS@
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete-annotated
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'NotIn'
      values: ['Job']
    - key: '.metadata.annotations["@DELAY_ANNOTATION@"]'
      operator: 'Exists'
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'DoesNotExist'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      @SUCCEEDED_STATUS@
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["@EXIT_CODE_ANNOTATION@"]'
      operator: 'Exists'
  delay:
    durationMilliseconds: @DEFAULT_DELAY_MS@
    durationFrom:
      expressionFrom: '.metadata.annotations["@DELAY_ANNOTATION@"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      {{ $exitCode := index .metadata.annotations "@EXIT_CODE_ANNOTATION@" }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: {{ $exitCode }}
            finishedAt: {{ $now | Quote }}
            reason: Error
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: Failed
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers:
      empty: true
    delete: true
"""

# kwok's PodIPWith hands out an address from --cidr per pod.
_POD_IP = (
    '{{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) '
    '( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}'
)

_SUCCEEDED_STATUS = """{{ $now := Now }}
      {{ $started := or .status.startTime $now }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: Succeeded"""


def kwok_stages_yaml(default_delay_ms: int = DEFAULT_POD_COMPLETE_DELAY_MS) -> str:
    """The kwok Stage documents the plane runs with."""
    return (
        _STAGES_TEMPLATE.replace("@SUCCEEDED_STATUS@", _SUCCEEDED_STATUS)
        .replace("@POD_IP@", _POD_IP)
        .replace("@DEFAULT_DELAY_MS@", str(default_delay_ms))
        .replace("@DELAY_ANNOTATION@", POD_COMPLETE_DELAY_ANNOTATION)
        .replace("@EXIT_CODE_ANNOTATION@", POD_EXIT_CODE_ANNOTATION)
        .lstrip()
    )


# --------------------------------------------------------------------------- building


def _log(message: str) -> None:
    print(f"[localplane] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where built binaries live: $CARBONAWARE_CACHE_DIR or the XDG cache directory."""
    explicit = os.environ.get("CARBONAWARE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "carbon-aware-operator"


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
def _build_lock() -> Iterator[None]:
    """One build at a time per cache directory, across processes."""
    lock_path = cache_dir() / "bin" / ".build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install_built(staging: Path, target_dir: Path, names: Sequence[str]) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        built = staging / name
        if not built.is_file():
            raise LocalPlaneError(f"build produced no {name} in {staging}")
        os.replace(built, target_dir / name)
    shutil.rmtree(staging, ignore_errors=True)


def _run_go(argv: list[str], env: Mapping[str, str], cwd: Path, what: str) -> None:
    """Run one Go build, printing the elapsed time every 30 s so it never looks hung."""
    _log(f"building {what}: {' '.join(argv)}")
    started = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        process = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=stderr, stderr=stderr)
        while True:
            try:
                returncode = process.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                _log(f"  still building {what.split(' (')[0]}: {time.monotonic() - started:.0f} s")
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
    _run_go(
        [go, "build", "-trimpath", f"-ldflags={' '.join(ldflags)}", "-o", f"{staging}/"]
        + [f"k8s.io/kubernetes/cmd/{name}" for name in KUBERNETES_COMMANDS],
        env,
        KUBERNETES_TOOLS_MODULE,
        f"Kubernetes {version} (kube-apiserver, kube-controller-manager, kube-scheduler, "
        "kubectl, kubelet, kube-proxy)",
    )
    _install_built(staging, target, KUBERNETES_COMMANDS)
    return time.monotonic() - started


def _go_install(module_path: str, version: str, ldflags: str, target: Path, name: str) -> float:
    go, env = go_build_environment()
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env["GOBIN"] = str(staging)
    started = time.monotonic()
    _run_go(
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


def ensure_built() -> tuple[Binaries, dict[str, float]]:
    """Build or find every binary; return them and the build seconds of those built now."""
    timings: dict[str, float] = {}
    with _build_lock():
        for name, build in (
            ("kubernetes", build_kubernetes),
            ("kwok", build_kwok),
            ("helm", build_helm),
        ):
            seconds = build()
            if seconds is not None:
                timings[name] = seconds
                _log(f"built {name} in {seconds:.1f} s")
    ensure_etcd()
    ensure_openssl()
    return binaries(), timings


# --------------------------------------------------------------------------- PKI


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise LocalPlaneError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


def _new_key(pki: Path, name: str, algorithm: str = "EC") -> None:
    options = ["ec_paramgen_curve:P-256"] if algorithm == "EC" else ["rsa_keygen_bits:2048"]
    _openssl(
        "genpkey",
        "-algorithm",
        algorithm,
        *[arg for option in options for arg in ("-pkeyopt", option)],
        "-out",
        f"{name}.key",
        cwd=pki,
    )
    os.chmod(pki / f"{name}.key", 0o600)


def _new_ca(pki: Path, name: str, common_name: str) -> None:
    _new_key(pki, name)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{name}.key",
        "-subj",
        f"/CN={common_name}",
        "-days",
        "3650",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )


def _new_cert(
    pki: Path,
    name: str,
    *,
    ca: str,
    subject: str,
    usage: str,
    alt_names: Sequence[str] = (),
) -> None:
    _new_key(pki, name)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    extensions = [
        "[v3]",
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usage}",
    ]
    if alt_names:
        extensions.append("subjectAltName=" + ",".join(alt_names))
    (pki / f"{name}.ext").write_text("\n".join(extensions) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-set_serial",
        "0x" + secrets.token_hex(16),
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-extensions",
        "v3",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


# Client identities: (file name, subject). The controller-manager and scheduler use the
# identities the default RBAC bootstrap policy grants; kwok plays every kubelet, so it is
# an administrator like the admin user.
_CLIENTS = (
    ("admin", "/O=system:masters/CN=carbonaware-admin"),
    ("kube-controller-manager", "/CN=system:kube-controller-manager"),
    ("kube-scheduler", "/CN=system:kube-scheduler"),
    ("kwok", "/O=system:masters/CN=kwok-controller"),
)


def create_pki(pki: Path) -> None:
    """A CA, the API server's serving cert, client certs, front-proxy and SA keys."""
    ensure_openssl()
    pki.mkdir(parents=True, exist_ok=True)
    _new_ca(pki, "ca", "carbonaware-localplane-ca")
    _new_ca(pki, "front-proxy-ca", "carbonaware-localplane-front-proxy-ca")
    apiserver_names = [
        "IP:127.0.0.1",
        "DNS:localhost",
        f"IP:{KUBERNETES_SERVICE_IP}",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    jobs: list[Callable[[], None]] = [
        functools.partial(
            _new_cert,
            pki,
            "apiserver",
            ca="ca",
            subject="/CN=kube-apiserver",
            usage="serverAuth",
            alt_names=apiserver_names,
        ),
        functools.partial(
            _new_cert,
            pki,
            "front-proxy-client",
            ca="front-proxy-ca",
            subject="/CN=front-proxy-client",
            usage="clientAuth",
        ),
        functools.partial(_new_service_account_key, pki),
    ]
    jobs += [
        functools.partial(_new_cert, pki, name, ca="ca", subject=subject, usage="clientAuth")
        for name, subject in _CLIENTS
    ]
    # Each job is a few openssl processes; running them side by side halves the wait.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()


def _new_service_account_key(pki: Path) -> None:
    _new_key(pki, "service-account", algorithm="RSA")
    _openssl(
        "pkey", "-in", "service-account.key", "-pubout", "-out", "service-account.pub", cwd=pki
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Path, client: str, user: str) -> None:
    """A self-contained kubeconfig (certificates embedded) for one client identity."""
    path.write_text(
        "\n".join(
            [
                "apiVersion: v1",
                "kind: Config",
                "clusters:",
                "- name: localplane",
                "  cluster:",
                f"    server: {server}",
                f"    certificate-authority-data: {_b64(pki / 'ca.crt')}",
                "users:",
                f"- name: {user}",
                "  user:",
                f"    client-certificate-data: {_b64(pki / f'{client}.crt')}",
                f"    client-key-data: {_b64(pki / f'{client}.key')}",
                "contexts:",
                "- name: localplane",
                "  context:",
                "    cluster: localplane",
                f"    user: {user}",
                "    namespace: default",
                "current-context: localplane",
                "",
            ]
        )
    )
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------- processes


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _process_start_ticks(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_ERROR_LINE = re.compile(r'^[EF]\d{4} |[Ee]rror:|"level":"ERROR"|^unknown flag|panic:')


def _log_excerpt(path: Path, errors: int = 8, tail: int = 12) -> str:
    """The error lines and the last lines of a component's latest run, for messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    latest = text.rsplit("\n==== ", 1)[-1].splitlines()[1:]
    error_lines = [line for line in latest if _ERROR_LINE.search(line)][-errors:]
    last_lines = [line for line in latest[-tail:] if line not in error_lines]
    parts = []
    if error_lines:
        parts += ["errors:", *error_lines]
    parts += ["last lines:", *last_lines]
    return "\n".join(line[:400] for line in parts)


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


@dataclasses.dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    pid: int = 0
    start_ticks: int = 0
    process: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.pid == 0:
            return False
        if self.process is not None and self.process.poll() is not None:
            return False
        return _process_start_ticks(self.pid) == self.start_ticks

    def exit_description(self) -> str:
        if self.process is not None and self.process.returncode is not None:
            return f"exited with code {self.process.returncode}"
        return "is no longer running"


def _exited(component: _Component) -> bool | None:
    return True if not component.alive() else None


_RUNNING_PLANES: list[LocalPlane] = []


@atexit.register
def _stop_attached_planes() -> None:
    for plane in list(_RUNNING_PLANES):
        with contextlib.suppress(LocalPlaneError):
            plane.stop()


class LocalPlane:
    """One local control plane living in `workdir` (state, PKI, etcd data, logs)."""

    KWOK_NODE_ANNOTATION = KWOK_NODE_ANNOTATION
    POD_COMPLETE_DELAY_ANNOTATION = POD_COMPLETE_DELAY_ANNOTATION
    POD_EXIT_CODE_ANNOTATION = POD_EXIT_CODE_ANNOTATION
    DEFAULT_POD_COMPLETE_DELAY_MS = DEFAULT_POD_COMPLETE_DELAY_MS

    def __init__(
        self,
        workdir: Path | str,
        *,
        nodes: Sequence[KwokNode] | None = None,
        pod_complete_delay_ms: int = DEFAULT_POD_COMPLETE_DELAY_MS,
    ) -> None:
        """`nodes` defaults to those of the plane last started here, else DEFAULT_NODES."""
        self.workdir = Path(workdir).resolve()
        self.nodes = DEFAULT_NODES if nodes is None else tuple(nodes)
        self._nodes_given = nodes is not None
        self.pod_complete_delay_ms = pod_complete_delay_ms
        self.timings: dict[str, float] = {}
        self._components: dict[str, _Component] = {}
        self._server: str | None = None
        self._ports: dict[str, int] = {}
        self._binaries: Binaries | None = None
        self._load_state()

    @classmethod
    def from_env(cls) -> LocalPlane:
        """The plane in $CARBONAWARE_LOCALPLANE_DIR (default: <cache>/localplane)."""
        return cls(default_workdir())

    # ----- paths and identity

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate in system:masters)."""
        return self.workdir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def server(self) -> str:
        """The API server URL, https://127.0.0.1:PORT."""
        if self._server is None:
            raise LocalPlaneError(f"the plane in {self.workdir} has not been started")
        return self._server

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = binaries()
        return self._binaries

    @property
    def node_names(self) -> list[str]:
        return [node.name for node in self.nodes]

    def ensure_built(self) -> dict[str, float]:
        """Build missing binaries; return build seconds of those built now."""
        self._binaries, timings = ensure_built()
        return timings

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl, helm and Kubernetes clients here."""
        path = os.pathsep.join(
            [*(str(d) for d in self.binaries.path_dirs), os.environ.get("PATH", "")]
        )
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": path, **CLIENT_ENVIRONMENT}

    # ----- state

    def _state_path(self) -> Path:
        return self.workdir / STATE_FILE

    def _save_state(self) -> None:
        state = {
            "server": self._server,
            "ports": self._ports,
            "nodes": [dataclasses.asdict(node) for node in self.nodes],
            "components": {
                name: {
                    "argv": c.argv,
                    "log": str(c.log),
                    "pid": c.pid,
                    "start_ticks": c.start_ticks,
                }
                for name, c in self._components.items()
            },
        }
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self._state_path())

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return
        self._server = state.get("server")
        self._ports = dict(state.get("ports", {}))
        if state.get("nodes") and not self._nodes_given:
            self.nodes = tuple(KwokNode(**node) for node in state["nodes"])
        for name, c in state.get("components", {}).items():
            self._components[name] = _Component(
                name=name,
                argv=list(c["argv"]),
                log=Path(c["log"]),
                pid=int(c["pid"]),
                start_ticks=int(c["start_ticks"]),
            )

    # ----- processes

    def pids(self) -> dict[str, int]:
        """PID of each component that is alive."""
        return {name: c.pid for name, c in self._components.items() if c.alive()}

    def is_running(self) -> bool:
        return any(c.alive() for c in self._components.values())

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each live component."""
        return {name: _rss_bytes(pid) for name, pid in self.pids().items()}

    def log_path(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def _launch(self, name: str, argv: list[str]) -> _Component:
        log = self.log_path(name)
        with log.open("ab") as log_file:
            log_file.write(f"\n==== {time.strftime('%F %T')} starting: {argv}\n".encode())
            log_file.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, **CLIENT_ENVIRONMENT},
                start_new_session=True,
            )
        ticks = _process_start_ticks(process.pid) or 0
        component = _Component(name, argv, log, process.pid, ticks, process)
        self._components[name] = component
        self._save_state()
        return component

    def _check_alive(self, names: Sequence[str]) -> None:
        for name in names:
            component = self._components[name]
            if not component.alive():
                raise LocalPlaneError(
                    f"{name} {component.exit_description()} while the plane was starting; "
                    f"see {component.log}\n{_log_excerpt(component.log)}"
                )

    def _terminate(self, names: Sequence[str], grace: float) -> None:
        """SIGTERM, then SIGKILL whatever is still running after `grace` seconds."""
        live = [self._components[n] for n in names if n in self._components]
        live = [c for c in live if c.alive()]
        for component in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(component.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in live:
            while component.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if component.alive():
                # kube-apiserver waits up to 60 s for open watch connections to close.
                _log(
                    f"{component.name} (pid {component.pid}) still running {grace:.0f} s "
                    "after SIGTERM; sending SIGKILL"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(component.pid, signal.SIGKILL)
            if component.process is not None:
                component.process.wait(timeout=10)
            else:
                poll(
                    functools.partial(_exited, component),
                    timeout=10,
                    what=f"{component.name} (pid {component.pid}) to exit",
                    interval=0.05,
                )

    # ----- HTTP

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def api(
        self, method: str, path: str, body: Any = None, *, timeout: float = 10
    ) -> tuple[int, Any]:
        """One request to the API server as the admin user: (status, decoded JSON or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, context=self._ssl_context(), timeout=timeout
            ) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def _api_ready(self) -> bool | None:
        try:
            status, _ = self.api("GET", "/readyz", timeout=2)
        except (OSError, ssl.SSLError):
            return None
        return True if status == 200 else None

    @staticmethod
    def _https_healthy(port: int, path: str = "/healthz") -> bool | None:
        # The controller-manager and scheduler serve health with a self-signed cert.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=context, timeout=2
            ) as response:
                return True if response.status == 200 else None
        except (OSError, ssl.SSLError):
            return None

    def _etcd_healthy(self) -> bool | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self._ports['etcd-client']}/health", timeout=2
            ) as response:
                return True if json.loads(response.read()).get("health") == "true" else None
        except (OSError, ValueError):
            return None

    # ----- start / stop

    def _argv(self, binaries: Binaries) -> dict[str, list[str]]:
        ports, pki, work = self._ports, self.pki, self.workdir
        etcd_client = f"http://127.0.0.1:{ports['etcd-client']}"
        etcd_peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return {
            "etcd": [
                str(binaries.etcd),
                "--name=localplane",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls={etcd_client}",
                f"--advertise-client-urls={etcd_client}",
                f"--listen-peer-urls={etcd_peer}",
                f"--initial-advertise-peer-urls={etcd_peer}",
                f"--initial-cluster=localplane={etcd_peer}",
                "--initial-cluster-state=new",
                # The API server's watch cache needs progress notifications from etcd.
                "--experimental-watch-progress-notify-interval=5s",
                # Bounds the in-memory raft log (default 100000 entries).
                "--snapshot-count=5000",
                "--logger=zap",
                "--log-outputs=stderr",
            ],
            "kube-apiserver": [
                str(binaries.kube_apiserver),
                f"--etcd-servers={etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['kube-apiserver']}",
                # There is no kube-proxy or real endpoint for the kubernetes Service.
                "--endpoint-reconciler-type=none",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--feature-gates={APISERVER_FEATURE_GATES}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'service-account.pub'}",
                f"--service-account-signing-key-file={pki / 'service-account.key'}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--v=1",
            ],
            "kube-controller-manager": [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={work / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kube-controller-manager']}",
                f"--cert-dir={work / 'kube-controller-manager'}",
                "--leader-elect=false",
                # Every default controller: job, namespace, serviceaccount(-token),
                # garbagecollector, nodelifecycle, ...
                "--controllers=*",
                "--use-service-account-credentials=true",
                # Each controller has its own client identity; the default 20 QPS makes
                # setting them all up take seconds.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                f"--feature-gates={CLIENT_FEATURE_GATES}",
                f"--service-account-private-key-file={pki / 'service-account.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--v=1",
            ],
            "kube-scheduler": [
                str(binaries.kube_scheduler),
                f"--kubeconfig={work / 'kube-scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={work / 'kube-scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={work / 'kube-scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports['kube-scheduler']}",
                f"--cert-dir={work / 'kube-scheduler'}",
                "--leader-elect=false",
                f"--feature-gates={CLIENT_FEATURE_GATES}",
                "--v=1",
            ],
            "kwok": [
                str(binaries.kwok),
                f"--kubeconfig={work / 'kwok.kubeconfig'}",
                f"--config={work / 'kwok-stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector="
                f"{KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
                f"--cidr={POD_CIDR}",
            ],
        }

    def start(self, *, timeout: float = 120, detach: bool = False) -> None:
        """Start every component and wait until the plane can run pods.

        Returns when /readyz is ok, all kwok nodes are Ready, the scheduler and
        controller-manager answer /healthz and the default ServiceAccount exists.
        Without `detach`, the plane is stopped when this Python process exits.
        `timings` then holds seconds since the call (``*_at_s``) and durations (``*_s``).
        """
        if self.is_running():
            raise LocalPlaneError(
                f"a plane is already running in {self.workdir} (pids {self.pids()}); stop it first"
            )
        bins = self.binaries
        started = time.monotonic()
        self.timings = {}
        self._reset_workdir()
        names = ["etcd-client", "etcd-peer", "kube-apiserver"]
        names += ["kube-controller-manager", "kube-scheduler"]
        self._ports = dict(zip(names, _free_ports(len(names)), strict=True))
        self._server = f"https://127.0.0.1:{self._ports['kube-apiserver']}"
        argv = self._argv(bins)
        if not detach:
            _RUNNING_PLANES.append(self)
        try:
            self._start_components(argv, timeout, started)
        except BaseException:
            self.stop()
            raise

    def _reset_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for stale in ("etcd", "kube-controller-manager", "kube-scheduler"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.logs.mkdir(exist_ok=True)
        self._components = {}

    def _pki_complete(self) -> bool:
        """A previous start in this workdir left a full PKI (it does not depend on ports)."""
        names = ["ca", "apiserver", "front-proxy-ca", "front-proxy-client"]
        names += [client for client, _ in _CLIENTS]
        files = [self.pki / f"{name}.{ext}" for name in names for ext in ("key", "crt")]
        files += [self.pki / "service-account.key", self.pki / "service-account.pub"]
        return all(path.is_file() for path in files)

    def _write_configuration(self) -> None:
        """PKI (kept from an earlier start in this workdir), kubeconfigs, kwok stages."""
        if not self._pki_complete():
            shutil.rmtree(self.pki, ignore_errors=True)
            create_pki(self.pki)
        write_kubeconfig(
            self.kubeconfig, server=self.server, pki=self.pki, client="admin", user="admin"
        )
        for client in ("kube-controller-manager", "kube-scheduler", "kwok"):
            write_kubeconfig(
                self.workdir / f"{client}.kubeconfig",
                server=self.server,
                pki=self.pki,
                client=client,
                user=client,
            )
        (self.workdir / "kwok-stages.yaml").write_text(kwok_stages_yaml(self.pod_complete_delay_ms))

    def _start_components(self, argv: dict[str, list[str]], timeout: float, t0: float) -> None:
        deadline = t0 + timeout

        def remaining() -> float:
            return max(deadline - time.monotonic(), 0.1)

        def mark(name: str) -> None:
            self.timings[name] = time.monotonic() - t0

        # etcd needs no certificates: it boots while the PKI is made.
        self._launch("etcd", argv["etcd"])
        self._write_configuration()
        mark("pki_ready_at_s")
        poll(
            self._etcd_healthy,
            timeout=remaining(),
            what=f"etcd /health (log: {self.log_path('etcd')})",
            on_wait=lambda: self._check_alive(["etcd"]),
        )
        mark("etcd_ready_at_s")

        apiserver_launched = time.monotonic()
        self._launch("kube-apiserver", argv["kube-apiserver"])
        poll(
            self._api_ready,
            timeout=remaining(),
            what=f"kube-apiserver /readyz (log: {self.log_path('kube-apiserver')})",
            on_wait=lambda: self._check_alive(["etcd", "kube-apiserver"]),
        )
        self.timings["apiserver_ready_after_launch_s"] = time.monotonic() - apiserver_launched
        mark("apiserver_ready_at_s")

        clients = ["kube-controller-manager", "kube-scheduler", "kwok"]
        for name in clients:
            self._launch(name, argv[name])
        for node in self.nodes:
            self._create_node(node)
        everything = ["etcd", "kube-apiserver", *clients]

        def check_alive() -> None:
            self._check_alive(everything)

        for name in ("kube-controller-manager", "kube-scheduler"):
            poll(
                functools.partial(self._https_healthy, self._ports[name]),
                timeout=remaining(),
                what=f"{name} /healthz (log: {self.log_path(name)})",
                on_wait=check_alive,
            )
            mark(f"{name}_healthy_at_s")
        poll(
            self._nodes_ready,
            timeout=remaining(),
            what=f"kwok nodes {self.node_names} to be Ready (log: {self.log_path('kwok')})",
            on_wait=check_alive,
        )
        mark("nodes_ready_at_s")
        poll(
            lambda: self._service_account_exists("default"),
            timeout=remaining(),
            what=f"the default ServiceAccount (log: {self.log_path('kube-controller-manager')})",
            on_wait=check_alive,
        )
        mark("plane_ready_s")

    def _create_node(self, node: KwokNode) -> None:
        status, body = self.api("POST", "/api/v1/nodes", node.manifest(kubernetes_version()))
        if status not in (201, 409):
            raise LocalPlaneError(f"creating node {node.name} failed ({status}): {body}")

    def _nodes_ready(self) -> bool | None:
        status, body = self.api("GET", "/api/v1/nodes")
        if status != 200:
            return None
        ready = set()
        for item in body.get("items", []):
            for condition in item.get("status", {}).get("conditions", []):
                if condition.get("type") == "Ready" and condition.get("status") == "True":
                    ready.add(item["metadata"]["name"])
        return True if ready >= set(self.node_names) else None

    def _service_account_exists(self, namespace: str) -> bool | None:
        status, _ = self.api("GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
        return True if status == 200 else None

    def stop(self, *, grace: float = 10) -> None:
        """Stop every component (API clients first, etcd last) and wait for them to exit."""
        for group in (STOP_ORDER[:3], STOP_ORDER[3:4], STOP_ORDER[4:]):
            self._terminate(group, grace)
        if self in _RUNNING_PLANES:
            _RUNNING_PLANES.remove(self)
        if self._state_path().exists():
            self._save_state()

    def stop_apiserver(self, *, grace: float = 2) -> None:
        """Stop only the API server (its clients keep running and retry)."""
        self._terminate(["kube-apiserver"], grace)

    def start_apiserver(self, *, timeout: float = 60) -> None:
        """Start the API server again with the same flags and port; wait for /readyz."""
        previous = self._components.get("kube-apiserver")
        if previous is None:
            raise LocalPlaneError("the API server was never started in this plane")
        if previous.alive():
            raise LocalPlaneError(f"the API server is still running (pid {previous.pid})")
        started = time.monotonic()
        self._launch("kube-apiserver", previous.argv)
        poll(
            self._api_ready,
            timeout=timeout,
            what=f"kube-apiserver /readyz after restart (log: {self.log_path('kube-apiserver')})",
            on_wait=lambda: self._check_alive(["etcd", "kube-apiserver"]),
        )
        self.timings["apiserver_restart_ready_s"] = time.monotonic() - started

    def restart_apiserver(self, *, timeout: float = 60) -> None:
        """Stop the API server process and start it again (same flags, same port)."""
        self.stop_apiserver()
        self.start_apiserver(timeout=timeout)

    def __enter__(self) -> LocalPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- conveniences for tests and the demo

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this plane as the admin user."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **CLIENT_ENVIRONMENT},
        )
        if check and result.returncode != 0:
            raise KubectlError(args, result.returncode, result.stdout, result.stderr)
        return result

    def kubectl_json(self, *args: str, timeout: float = 120) -> Any:
        """kubectl ... -o json, decoded."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: Mapping[str, Any] | str, *, namespace: str | None = None) -> None:
        """kubectl apply a manifest given as a dict or YAML/JSON text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        extra = [f"--namespace={namespace}"] if namespace else []
        self.kubectl("apply", *extra, "-f", "-", input=text)

    def create_namespace(self, prefix: str = "test", *, timeout: float = 30) -> str:
        """A new namespace with a unique name, ready for pods (default SA exists)."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        status, body = self.api(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        if status != 201:
            raise LocalPlaneError(f"creating namespace {name} failed ({status}): {body}")
        poll(
            lambda: self._service_account_exists(name),
            timeout=timeout,
            what=f"the default ServiceAccount in {name}",
        )
        return name

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace without waiting for its contents to go."""
        status, body = self.api("DELETE", f"/api/v1/namespaces/{name}")
        if status not in (200, 202, 404):
            raise LocalPlaneError(f"deleting namespace {name} failed ({status}): {body}")


# --------------------------------------------------------------------------- CLI


def default_workdir() -> Path:
    explicit = os.environ.get("CARBONAWARE_LOCALPLANE_DIR")
    return Path(explicit).expanduser() if explicit else cache_dir() / "localplane"


def _print_env(plane: LocalPlane) -> None:
    env = plane.env()
    dirs = os.pathsep.join(str(d) for d in plane.binaries.path_dirs)
    print(f"export KUBECONFIG={env['KUBECONFIG']}")
    print(f'export PATH="{dirs}{os.pathsep}$PATH"')
    for name, value in CLIENT_ENVIRONMENT.items():
        print(f"export {name}={value}")


def _command_build(_: argparse.Namespace) -> int:
    started = time.monotonic()
    found, timings = ensure_built()
    for field in dataclasses.fields(found):
        print(f"{field.name:24} {getattr(found, field.name)}")
    for name, seconds in timings.items():
        print(f"build time {name}: {seconds:.1f} s")
    print(f"total: {time.monotonic() - started:.1f} s")
    return 0


def _command_up(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    if plane.is_running():
        _log(f"already running in {plane.workdir}")
    else:
        plane.ensure_built()
        plane.start(detach=True, timeout=args.timeout)
        _log(
            f"up in {plane.timings['plane_ready_s']:.1f} s (API server ready "
            f"{plane.timings['apiserver_ready_after_launch_s']:.1f} s after its launch); "
            f"server {plane.server}; logs in {plane.logs}"
        )
    _print_env(plane)
    return 0


def _command_down(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    was_running = plane.is_running()
    plane.stop()
    _log(f"stopped the plane in {plane.workdir}" if was_running else "nothing was running")
    return 0


def _command_env(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    if not plane.is_running():
        _log(f"no plane is running in {plane.workdir}")
        return 1
    _print_env(plane)
    return 0


def _command_status(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    if not plane._components:
        print(f"no plane has been started in {plane.workdir}")
        return 1
    pids, rss = plane.pids(), plane.rss_bytes()
    print(f"workdir  {plane.workdir}")
    print(f"server   {plane.server}")
    for name in reversed(STOP_ORDER):
        if name in pids:
            print(f"{name:24} pid {pids[name]:>7}  rss {rss[name] / 2**20:7.1f} MiB")
        else:
            print(f"{name:24} not running (log: {plane.log_path(name)})")
    print(f"{'total':24} {'':11}  rss {sum(rss.values()) / 2**20:7.1f} MiB")
    ready = bool(pids.get("kube-apiserver")) and plane._api_ready() is not None
    print(f"readyz   {'ok' if ready else 'not ready'}")
    return 0 if ready and len(pids) == len(STOP_ORDER) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localplane", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build the Kubernetes, kwok and Helm binaries (cached)")
    for name, help_text in (
        ("up", "start a plane in the background and print `export` lines"),
        ("down", "stop the plane"),
        ("env", "print `export KUBECONFIG=... PATH=...` for the running plane"),
        ("status", "show components, PIDs and memory"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--workdir", type=Path, default=default_workdir())
        if name == "up":
            sub.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "build": _command_build,
        "up": _command_up,
        "down": _command_down,
        "env": _command_env,
        "status": _command_status,
    }
    try:
        return handlers[args.command](args)
    except LocalPlaneError as error:
        _log(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
