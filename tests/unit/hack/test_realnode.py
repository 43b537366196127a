"""The real node's pure parts: OCI archives, configuration files, socket paths, host state."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType

HACK = Path(__file__).resolve().parents[3] / "hack"


def _localplane() -> ModuleType:
    loaded = sys.modules.get("localplane")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("localplane", HACK / "localplane.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["localplane"] = module
    spec.loader.exec_module(module)
    return module


_localplane()
from testbed import hoststate, images, realnode  # noqa: E402

PORTS = {
    "kubelet": 10250,
    "kubelet-healthz": 10248,
    "kube-proxy-healthz": 10256,
    "kube-proxy-metrics": 10249,
    "metrics-server": 4443,
    "coredns": 1053,
    "coredns-ready": 8181,
}


def layout(root: Path) -> realnode.RealNodeLayout:
    return realnode.RealNodeLayout(root=root, name="real-node", ip="192.0.2.2", ports=PORTS)


def test_oci_archive_holds_the_layer_its_config_names_and_the_image_name(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as archive:
        archive.add(__file__, arcname="bin/tool")
    target = tmp_path / "image.oci.tar"
    name = "localhost/carbonaware/tool:abc"
    images.write_oci_archive(target, name, layer, {"Entrypoint": ["/bin/tool"]}, "test")

    with tarfile.open(target) as archive:
        files = {member.name: archive.extractfile(member) for member in archive.getmembers()}
        blobs = {
            n.split("/")[-1]: f.read() for n, f in files.items() if f and n.startswith("blobs/")
        }
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
    (entry,) = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == name
    manifest = json.loads(blobs[entry["digest"].split(":")[1]])
    config = json.loads(blobs[manifest["config"]["digest"].split(":")[1]])
    (layer_entry,) = manifest["layers"]
    layer_digest = hashlib.sha256(layer.read_bytes()).hexdigest()
    # Uncompressed layer: its digest is its diff ID, and the blob is the layer itself.
    assert layer_entry["digest"] == config["rootfs"]["diff_ids"][0] == f"sha256:{layer_digest}"
    assert blobs[layer_digest] == layer.read_bytes()
    assert config["config"]["Entrypoint"] == ["/bin/tool"]
    # Every descriptor's digest is the sha256 of the blob it names.
    for digest, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == digest


def test_the_containerd_socket_stays_under_the_unix_path_limit(tmp_path: Path) -> None:
    short = layout(Path("/tmp/plane/node"))
    assert short.containerd_link is None
    assert short.containerd_socket == Path("/tmp/plane/node/containerd/containerd.sock")
    deep = layout(Path("/tmp") / ("d" * 90) / "node")
    assert deep.containerd_link is not None
    assert deep.containerd_socket.parent == deep.containerd_link
    assert len(f"{deep.containerd_socket}.ttrpc") <= realnode.SOCKET_PATH_LIMIT
    # One link per node directory, the same every time.
    assert layout(Path("/tmp") / ("d" * 90) / "node").containerd_link == deep.containerd_link


def test_node_configuration_keeps_the_node_apart_and_fits_this_machine(tmp_path: Path) -> None:
    node = layout(tmp_path / "node")
    realnode.write_node_configuration(node, tmp_path / "pki", "localhost/pause:1")
    kubelet = json.loads(node.path("kubelet-config.yaml").read_text())
    assert kubelet["registerWithTaints"] == [realnode.REAL_NODE_TAINT]
    assert kubelet["failCgroupV1"] is False
    assert kubelet["oomScoreAdj"] == 0
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{node.containerd_socket}"
    containerd = node.path("containerd", "config.toml").read_text()
    assert "restrict_oom_score_adj = true" in containerd
    assert 'sandbox_image = "localhost/pause:1"' in containerd
    assert str(node.root) in containerd
    cni = json.loads((node.cni_conf_dir / "10-carbonaware.conflist").read_text())
    bridge = cni["plugins"][0]
    assert bridge["bridge"] == realnode.BRIDGE
    assert bridge["ipam"]["dataDir"].startswith(str(node.root))
    placement = realnode.pod_placement()
    assert placement["nodeSelector"] == {realnode.REAL_NODE_LABEL: "true"}
    assert placement["tolerations"][0]["key"] == realnode.REAL_NODE_TAINT["key"]


def test_host_state_differences_name_what_was_added(tmp_path: Path) -> None:
    before = hoststate.HostState(
        sysctls={"vm/overcommit_memory": "0"}, directories=[], chains=[], links=["lo"]
    )
    saved = tmp_path / "state.json"
    before.save(saved)
    assert hoststate.HostState.load(saved) == before
    now = hoststate.snapshot()
    problems = hoststate.differences(before, tmp_path / "node", "carbonaware0")
    later = hoststate.snapshot()
    # Whatever this machine has beyond the recorded state is reported, nothing else. Pods of
    # a real node running beside this test add and remove veth links meanwhile: a link
    # present before and after must be reported, and nothing that was in neither snapshot.
    reported = [p.removeprefix("link ") for p in problems if p.startswith("link ")]
    assert len(reported) == len(set(reported))
    stable = (set(now.links) & set(later.links)) - {"lo"}
    seen = (set(now.links) | set(later.links)) - {"lo"}
    assert stable <= set(reported) <= seen, (reported, now.links, later.links)
    if now.sysctls.get("vm/overcommit_memory") != "0":
        assert any(p.startswith("sysctl vm/overcommit_memory") for p in problems)
