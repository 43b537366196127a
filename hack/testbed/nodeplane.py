"""The part of LocalPlane that runs the real worker node (``LocalPlane(real_node=True)``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import nodeup
from .addons import addon_objects
from .common import LocalPlaneError, log, poll
from .images import NodeImages
from .process import Component
from .realnode import (
    CADVISOR_CONTAINERD_SOCKET,
    REAL_NODE_LABEL,
    RealNodeLayout,
    link_cadvisor_socket,
    pod_placement,
    unlink_cadvisor_socket,
)
from .supervisor import Supervisor


class RealNodeMixin(Supervisor):
    """Start, stop and describe the real node; LocalPlane supplies the process plumbing."""

    REAL_NODE_LABEL = REAL_NODE_LABEL

    real_node: bool
    node_layout: RealNodeLayout | None
    node_images: NodeImages | None
    timings: dict[str, float]
    workdir: Path
    _components: dict[str, Component]

    # ----- what tests use

    @property
    def real_node_name(self) -> str:
        return self._layout().name

    @property
    def real_node_ip(self) -> str:
        """The node's non-loopback host address: pods reach services on the host there."""
        return self._layout().ip

    @property
    def images(self) -> NodeImages:
        if self.node_images is None:
            raise LocalPlaneError("the real node's images are not built: call ensure_built()")
        return self.node_images

    @staticmethod
    def real_node_placement() -> dict[str, Any]:
        """nodeSelector and tolerations that put a pod on the real node."""
        return pod_placement()

    def import_images(self) -> float:
        """Import into the running node's containerd the images it lacks; seconds spent."""
        return nodeup.import_images(self._layout(), self.images)

    def _layout(self) -> RealNodeLayout:
        if self.node_layout is None:
            raise LocalPlaneError(f"the plane in {self.workdir} has no real node")
        return self.node_layout

    # ----- start

    def _prepare_real_node(self) -> None:
        nodeup.claim_host(self.workdir)
        self.node_layout = nodeup.new_layout(self.workdir)
        nodeup.reset_node_directory(self.node_layout)

    def _start_real_node(
        self, remaining: Callable[[], float], mark: Callable[[str], None], alive: Sequence[str]
    ) -> None:
        layout, images = self._layout(), self.images
        started = time.monotonic()
        nodeup.record_host(layout)
        nodeup.prepare_node(layout, self.pki, self.server, images)
        argv = nodeup.node_component_argv(layout, self.pki)
        names = list(alive)

        def check_alive() -> None:
            self._check_alive(names)

        self._launch("containerd", argv["containerd"])
        names.append("containerd")
        poll(
            lambda: nodeup.containerd_ready(layout),
            timeout=remaining(),
            what=f"containerd (log: {self.log_path('containerd')})",
            on_wait=check_alive,
        )
        if not link_cadvisor_socket(layout):
            log(
                f"{CADVISOR_CONTAINERD_SOCKET} exists (another containerd?): the kubelet's "
                "cAdvisor metrics may lack pod labels"
            )
        self.timings["real_node_images_import_s"] = nodeup.import_images(layout, images)
        mark("real_node_images_imported_at_s")
        kubelet_launched = time.monotonic()
        for name in ("kubelet", "kube-proxy", "metrics-server", "coredns"):
            self._launch(name, argv[name])
            names.append(name)
        self.apply("\n".join(json.dumps(o) for o in addon_objects(layout, self.pki)))
        poll(
            lambda: nodeup.node_ready(self.api, layout.name),
            timeout=remaining(),
            what=f"the real node {layout.name} to be Ready (log: {self.log_path('kubelet')})",
            on_wait=check_alive,
        )
        self.timings["real_node_ready_after_kubelet_s"] = time.monotonic() - kubelet_launched
        mark("real_node_ready_at_s")
        poll(
            lambda: nodeup.http_ok(f"http://127.0.0.1:{layout.ports['coredns-ready']}/ready"),
            timeout=remaining(),
            what=f"CoreDNS to be ready (log: {self.log_path('coredns')})",
            on_wait=check_alive,
        )
        poll(
            lambda: nodeup.api_service_available(self.api),
            timeout=remaining(),
            what=f"metrics.k8s.io to be Available (log: {self.log_path('metrics-server')})",
            on_wait=check_alive,
            interval=1,
        )
        mark("metrics_api_available_at_s")
        self.timings["real_node_start_s"] = time.monotonic() - started

    # ----- stop

    def _stop_real_node(self, grace: float) -> None:
        """Called with the controllers and scheduler stopped, the API server still up."""
        layout = self.node_layout
        if layout is None:
            return
        kubelet = self._components.get("kubelet")
        apiserver = self._components.get("kube-apiserver")
        if kubelet is not None and kubelet.alive() and apiserver is not None and apiserver.alive():
            nodeup.drain(self.api, layout, timeout=30)
        self._terminate(nodeup.NODE_STOP_ORDER, grace)
        containerd = self._components.get("containerd")
        if containerd is not None and containerd.alive():
            nodeup.remove_leftover_containers(layout)
        nodeup.kube_proxy_cleanup(layout)
        unlink_cadvisor_socket(layout)
        self._terminate(["containerd"], grace)
        nodeup.stop_shims(layout)
        nodeup.restore_host(layout)
        nodeup.release_host(self.workdir)
        log(f"stopped the real node {layout.name} and restored the host")
