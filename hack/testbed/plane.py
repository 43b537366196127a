"""LocalPlane: one control plane (etcd, API server, controllers, kwok) living in a workdir."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from .build import Binaries, binaries, ensure_built, kubernetes_version
from .common import (
    CLIENT_ENVIRONMENT,
    STATE_FILE,
    STOP_ORDER,
    LocalPlaneError,
    cache_dir,
    poll,
)
from .components import control_plane_argv, real_node_apiserver_flags
from .images import NodeImages
from .kwok import (
    DEFAULT_NODES,
    DEFAULT_POD_COMPLETE_DELAY_MS,
    KWOK_NODE_ANNOTATION,
    POD_COMPLETE_DELAY_ANNOTATION,
    POD_EXIT_CODE_ANNOTATION,
    KwokNode,
    kwok_stages_yaml,
)
from .nodeplane import RealNodeMixin
from .nodeup import ensure_node_built, ensure_node_pki
from .pki import CLIENTS, create_pki, write_kubeconfig
from .process import Component, free_ports
from .realnode import RealNodeLayout


def default_workdir() -> Path:
    explicit = os.environ.get("CARBONAWARE_LOCALPLANE_DIR")
    return Path(explicit).expanduser() if explicit else cache_dir() / "localplane"


_RUNNING_PLANES: list[LocalPlane] = []


@atexit.register
def _stop_attached_planes() -> None:
    for plane in list(_RUNNING_PLANES):
        with contextlib.suppress(LocalPlaneError):
            plane.stop()


class LocalPlane(RealNodeMixin):
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
        real_node: bool | None = None,
    ) -> None:
        """`nodes` defaults to those of the plane last started here, else DEFAULT_NODES.

        With `real_node`, a real worker node (containerd, kubelet, kube-proxy, metrics-server,
        CoreDNS) joins the kwok nodes; None means as the plane last started here did.
        """
        self.workdir = Path(workdir).resolve()
        self.nodes = DEFAULT_NODES if nodes is None else tuple(nodes)
        self._nodes_given = nodes is not None
        self.pod_complete_delay_ms = pod_complete_delay_ms
        self.timings: dict[str, float] = {}
        self._components: dict[str, Component] = {}
        self._server: str | None = None
        self._ports: dict[str, int] = {}
        self._binaries: Binaries | None = None
        self.real_node = bool(real_node)
        self.node_layout: RealNodeLayout | None = None
        self.node_images: NodeImages | None = None
        self._load_state(real_node_given=real_node is not None)

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
        if self.real_node:
            self.node_images, node_timings = ensure_node_built()
            timings.update(node_timings)
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
            "real_node": (
                None
                if self.node_layout is None
                else {**dataclasses.asdict(self.node_layout), "root": str(self.node_layout.root)}
            ),
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

    def _load_state(self, *, real_node_given: bool) -> None:
        try:
            state = json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return
        self._server = state.get("server")
        self._ports = dict(state.get("ports", {}))
        if state.get("nodes") and not self._nodes_given:
            self.nodes = tuple(KwokNode(**node) for node in state["nodes"])
        if state.get("real_node"):
            layout = dict(state["real_node"])
            self.node_layout = RealNodeLayout(**{**layout, "root": Path(layout["root"])})
            if not real_node_given:
                self.real_node = True
        for name, c in state.get("components", {}).items():
            self._components[name] = Component(
                name=name,
                argv=list(c["argv"]),
                log=Path(c["log"]),
                pid=int(c["pid"]),
                start_ticks=int(c["start_ticks"]),
            )

    # ----- start / stop

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
        if self.real_node:
            if self.node_images is None:
                self.ensure_built()
            self._prepare_real_node()
        else:
            self.node_layout = None
        names = ["etcd-client", "etcd-peer", "kube-apiserver"]
        names += ["kube-controller-manager", "kube-scheduler"]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        self._server = f"https://127.0.0.1:{self._ports['kube-apiserver']}"
        argv = control_plane_argv(bins, self._ports, self.pki, self.workdir)
        if self.node_layout is not None:
            argv["kube-apiserver"] += real_node_apiserver_flags(self.node_layout.ip, self.pki)
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
        names += [client for client, _ in CLIENTS]
        files = [self.pki / f"{name}.{ext}" for name in names for ext in ("key", "crt")]
        files += [self.pki / "service-account.key", self.pki / "service-account.pub"]
        if self.node_layout is not None:
            # The API server's certificate names the node's address.
            files.append(self.pki / f"address-{self.node_layout.ip}")
        return all(path.is_file() for path in files)

    def _write_configuration(self) -> None:
        """PKI (kept from an earlier start in this workdir), kubeconfigs, kwok stages."""
        if not self._pki_complete():
            shutil.rmtree(self.pki, ignore_errors=True)
            addresses = [] if self.node_layout is None else [self.node_layout.ip]
            create_pki(self.pki, addresses)
            for address in addresses:
                (self.pki / f"address-{address}").touch()
        if self.node_layout is not None:
            # The API server starts with its kubelet client certificate.
            ensure_node_pki(self.pki, self.node_layout)
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
        if self.node_layout is not None:
            self._start_real_node(remaining, mark, everything)
            mark("real_node_plane_ready_s")

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

    def stop(self, *, grace: float = 10) -> None:
        """Stop every component (API clients first, etcd last) and wait for them to exit."""
        # Controllers first, so nothing recreates the real node's pods while it drains.
        self._terminate(STOP_ORDER[:3], grace)
        self._stop_real_node(grace)
        for group in (STOP_ORDER[3:4], STOP_ORDER[4:]):
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
