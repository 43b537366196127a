"""Shared fixtures for the integration tests: a real local Kubernetes control plane.

``local_plane`` (session scope) starts etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on loopback (see ``hack/localplane.py``) in a temporary directory
and stops them at the end of the session, also when tests fail. Two kwok nodes are Ready;
pods owned by a Job finish on their own ~2 s after they start running (the pod annotation
``LocalPlane.POD_COMPLETE_DELAY_ANNOTATION`` changes the delay, e.g. ``"10m"``, and
``LocalPlane.POD_EXIT_CODE_ANNOTATION`` makes them fail with that exit code).

Use it from any test module in this directory::

    def test_something(local_plane, namespace, monkeypatch):
        monkeypatch.setenv("KUBECONFIG", str(local_plane.kubeconfig))
        local_plane.apply(manifest, namespace=namespace)
        local_plane.kubectl_json("get", "jobs", "-n", namespace)

``namespace`` gives each test a fresh namespace (its default ServiceAccount exists) and
deletes it afterwards. ``crds`` (module scope) is ``local_plane`` with the operator's CRDs
applied and Established. The binaries are built (cached) before the first test runs, so a
cold build does not count against a test's timeout.

``real_node_plane`` (session scope) is a second plane with a real worker node beside its kwok
nodes: containerd, runc, the CNI bridge, a kubelet, kube-proxy, metrics-server and CoreDNS,
with the operator image (built from the Dockerfile), a busybox image and a Python image
imported (``real_node_plane.images``). Pods land on it only with
``real_node_plane.real_node_placement()`` (node selector and toleration);
``real_node_plane.real_node_ip`` is the host address pods reach services on the host at.
``real_node_namespace`` is a fresh namespace on it, ``real_node_crds`` the plane with the
CRDs applied. Every test that uses them has ``real_node`` in a fixture name, so the suite
can keep them together on one worker (one real node per host).
"""

from __future__ import annotations

import copy
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from .operatorproc import (
    BATCH_JOB_TEMPLATE,
    CRD_NAMES,
    CRDS,
    QUICK_JOB_TEMPLATE,
    REPO_ROOT,
    wait_for,
)
from .sshd import SshdServer, running_sshd
from .workload import GroupTimes, group_and_order


def load_localplane() -> ModuleType:
    """Import hack/localplane.py (a standalone script, not an installed package)."""
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


localplane = load_localplane()


_SHARED_TEMPLATES = {
    "BATCH_JOB_TEMPLATE": BATCH_JOB_TEMPLATE,
    "QUICK_JOB_TEMPLATE": QUICK_JOB_TEMPLATE,
}
_PRISTINE_TEMPLATES = copy.deepcopy(_SHARED_TEMPLATES)


@pytest.fixture(autouse=True)
def shared_templates_unchanged() -> Iterator[None]:
    """Fail the test that edits a shared Job template in place: every later test on the
    worker would run the edited Job (a 10-minute pod delay leaked this way once)."""
    yield
    for name, template in _SHARED_TEMPLATES.items():
        assert template == _PRISTINE_TEMPLATES[name], f"this test changed {name} in place"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups in its own hook
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    group_and_order(items)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(GroupTimes(), "carbonaware-group-times")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build or find the plane's binaries before any test that needs them starts."""
    if session.config.option.collectonly:
        return
    fixtures = [getattr(item, "fixturenames", ()) for item in session.items]
    if any("local_plane" in names for names in fixtures):
        localplane.ensure_built()
    if any(any("real_node" in name for name in names) for names in fixtures):
        localplane.ensure_built()
        localplane.ensure_node_built()


@pytest.fixture(scope="session")
def local_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running local control plane shared by the whole session."""
    plane = localplane.LocalPlane(tmp_path_factory.mktemp("localplane"))
    plane.ensure_built()
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def namespace(local_plane: Any) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name: str = local_plane.create_namespace("test")
    yield name
    local_plane.delete_namespace(name)


def established(plane: Any, name: str) -> bool:
    """Whether the CRD ``name`` is Established (a CRD just created has no conditions yet,
    which ``kubectl wait`` reports as an error instead of waiting)."""
    status = plane.kubectl_json("get", "crd", name).get("status") or {}
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def apply_crds(plane: Any) -> Any:
    """``plane`` with the operator's CRDs applied and Established."""
    plane.kubectl("apply", "-f", str(CRDS))
    for name in CRD_NAMES:
        wait_for(lambda n=name: established(plane, n), timeout=60, what=f"CRD {name} Established")  # type: ignore[misc]
    return plane


@pytest.fixture(scope="module")
def crds(local_plane: Any) -> Any:
    """``local_plane`` with the CarbonAwareJob and ServerTarget CRDs applied and Established."""
    return apply_crds(local_plane)


@pytest.fixture(scope="session")
def real_node_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A running plane with a real worker node, shared by the whole session."""
    plane = localplane.LocalPlane(tmp_path_factory.mktemp("realnode"), real_node=True)
    plane.ensure_built()
    try:
        plane.start(timeout=300)
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def real_node_namespace(real_node_plane: Any) -> Iterator[str]:
    """A fresh namespace on the real-node plane, deleted (without waiting) afterwards."""
    name: str = real_node_plane.create_namespace("real")
    yield name
    real_node_plane.delete_namespace(name)


@pytest.fixture
def real_node_crds(real_node_plane: Any) -> Any:
    """``real_node_plane`` with the operator's CRDs applied and Established."""
    return apply_crds(real_node_plane)


@pytest.fixture(scope="module")
def real_node_sshd(real_node_plane: Any) -> Iterator[SshdServer]:
    """sshd on the host address the real node's pods reach this machine at."""
    with running_sshd(real_node_plane.real_node_ip) as server:
        yield server


@pytest.fixture
def real_node_host_to_myself(real_node_plane: Any) -> Iterator[None]:
    """The host's real node, free for the test's own plane (one real node per host: its
    kube-proxy chains and kubepods cgroups are host-wide): the session's real-node plane is
    stopped for the test and started again afterwards."""
    real_node_plane.stop()
    try:
        yield
    finally:
        real_node_plane.start(timeout=300)
