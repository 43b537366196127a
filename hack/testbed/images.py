"""Container images for the real worker node, built without a registry and cached by hash.

- pause: Kubernetes' own ``build/pause/linux/pause.c`` compiled statically (the sandbox image);
- busybox: Debian's static busybox, the workload of test Jobs;
- python: a Debian bookworm root file system (python3, venv, pip) made by mmdebstrap,
  standing in for the Dockerfile's ``python:3.11-slim`` through its ``PYTHON_IMAGE`` argument;
- operator: the project's Dockerfile built unchanged by buildah on that base.

Each image is an OCI archive under ``cache_dir()/images`` whose name carries a hash of its
inputs, so an unchanged input never builds again. ``ctr images import`` loads them into the
node's containerd; pods use them with ``imagePullPolicy: Never``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .build import kubernetes_version, run_with_progress
from .common import REPO_ROOT, LocalPlaneError, cache_dir, log

PAUSE_VERSION = "3.10.2"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
# What goes into the operator image: the Dockerfile's build context after .dockerignore.
OPERATOR_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "LICENSE")
BUSYBOX = Path("/bin/busybox")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclasses.dataclass(frozen=True)
class Image:
    """One image: its reference inside containerd and the OCI archive that holds it."""

    name: str
    archive: Path


@dataclasses.dataclass(frozen=True)
class NodeImages:
    pause: Image
    busybox: Image
    python: Image
    operator: Image

    def all(self) -> list[Image]:
        return [self.pause, self.busybox, self.python, self.operator]


def images_dir() -> Path:
    return cache_dir() / "images"


def _digest(parts: Iterable[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def _tree_bytes(root: Path) -> Iterable[bytes]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path):
            yield str(path.relative_to(root)).encode()
            yield path.read_bytes()


# --------------------------------------------------------------------------- OCI archives


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def write_oci_archive(
    target: Path, name: str, layer: Path, config: Mapping[str, Any], history: str
) -> None:
    """An OCI image layout archive with one uncompressed layer, named for `ctr import`."""
    layer_digest = "sha256:" + _file_sha256(layer)
    blobs: dict[str, bytes] = {}
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": history}],
    }
    config_descriptor = _blob(blobs, json.dumps(image_config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_descriptor},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.stat().st_size,
            }
        ],
    }
    manifest_descriptor = _blob(blobs, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_descriptor,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name,
                },
            }
        ],
    }
    partial = target.with_suffix(".partial")
    with tarfile.open(partial, "w") as archive:
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(archive, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            _add_bytes(archive, f"blobs/sha256/{digest.split(':')[1]}", data)
        archive.add(layer, arcname=f"blobs/sha256/{layer_digest.split(':')[1]}")
    os.replace(partial, target)


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    archive.addfile(info, io.BytesIO(data))


def _add_directory(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


# --------------------------------------------------------------------------- the images


def _pause_source() -> Path:
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    source = (
        Path(gomodcache) / f"k8s.io/kubernetes@{kubernetes_version()}/build/pause/linux/pause.c"
    )
    if not source.is_file():
        raise LocalPlaneError(f"{source} is missing: build the plane first (it fetches it)")
    return source


def pause_image() -> Image:
    source = _pause_source()
    digest = _digest([source.read_bytes(), PAUSE_VERSION.encode()])
    return Image(f"localhost/carbonaware/pause:{PAUSE_VERSION}-{digest}", _archive("pause", digest))


def build_pause(image: Image) -> None:
    source = _pause_source()
    work = _scratch("pause")
    run_with_progress(
        [
            *("gcc", "-Os", "-static", "-Wall", "-Werror", f"-DVERSION=v{PAUSE_VERSION}"),
            *("-o", str(work / "pause"), str(source)),
        ],
        os.environ,
        work,
        "the pause program",
    )
    layer = work / "layer.tar"
    with tarfile.open(layer, "w") as archive:
        archive.add(work / "pause", arcname="pause")
    write_oci_archive(
        image.archive,
        image.name,
        layer,
        {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "gcc -static pause.c",
    )
    shutil.rmtree(work)


def busybox_image() -> Image:
    if not BUSYBOX.is_file():
        raise LocalPlaneError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    digest = _digest([BUSYBOX.read_bytes()])
    return Image(f"localhost/carbonaware/busybox:{digest}", _archive("busybox", digest))


def build_busybox(image: Image) -> None:
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    work = _scratch("busybox")
    layer = work / "layer.tar"
    with tarfile.open(layer, "w") as archive:
        for directory in ("bin", "tmp", "etc"):
            _add_directory(archive, directory)
        archive.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                archive.addfile(link)
    write_oci_archive(
        image.archive,
        image.name,
        layer,
        {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "Debian busybox-static",
    )
    shutil.rmtree(work)


def python_image() -> Image:
    """Debian bookworm with python3, venv and pip: the Dockerfile's PYTHON_IMAGE."""
    recipe = [DEBIAN_SUITE, DEBIAN_MIRROR, "minbase", *BASE_PACKAGES]
    digest = _digest(part.encode() for part in recipe)
    name = f"localhost/carbonaware/python:3.11-{DEBIAN_SUITE}-{digest}"
    return Image(name, _archive("python", digest))


def build_python(image: Image) -> None:
    work = _scratch("python")
    rootfs = work / "rootfs.tar"
    run_with_progress(
        [
            *("mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"),
            *("--quiet", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR),
        ],
        os.environ,
        work,
        f"the python base image (Debian {DEBIAN_SUITE} root file system)",
    )
    write_oci_archive(
        image.archive,
        image.name,
        rootfs,
        {
            "Cmd": ["python3"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        f"mmdebstrap --variant=minbase {DEBIAN_SUITE} " + " ".join(BASE_PACKAGES),
    )
    shutil.rmtree(work)


def operator_image(python: Image) -> Image:
    """The operator image: the Dockerfile, unchanged, on the `python` base."""
    parts: list[bytes] = [python.name.encode()]
    for name in OPERATOR_INPUTS:
        parts += [name.encode(), (REPO_ROOT / name).read_bytes()]
    parts += list(_tree_bytes(REPO_ROOT / "operator"))
    digest = _digest(parts)
    return Image(f"localhost/carbon-aware-operator:{digest}", _archive("operator", digest))


def build_operator(image: Image, python: Image) -> None:
    """buildah bud of the Dockerfile with PYTHON_IMAGE set to `python`."""
    work = _scratch("operator")
    storage = [
        "buildah",
        f"--root={work / 'storage'}",
        f"--runroot={work / 'run'}",
        "--storage-driver=vfs",
    ]
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    run_with_progress(
        [*storage, "pull", "--quiet", f"oci-archive:{python.archive}"], env, work, "python import"
    )
    python_id = subprocess.run(
        [*storage, "images", "--quiet"], env=env, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    run_with_progress([*storage, "tag", python_id, python.name], env, work, "python tag")
    run_with_progress(
        [
            *(*storage, "bud", "--isolation=chroot", "--network=host", "--pull=never"),
            *(f"--build-arg=PYTHON_IMAGE={python.name}", f"--tag={image.name}"),
            # pip inside the build needs the host's CA bundle; it is not baked into the image.
            f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            *("--file", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT)),
        ],
        env,
        work,
        "the operator image (buildah bud of the Dockerfile)",
    )
    partial = work / "operator.oci.tar"
    run_with_progress(
        [*storage, "push", image.name, f"oci-archive:{partial}:{image.name}"],
        env,
        work,
        "operator image export",
    )
    os.replace(partial, image.archive)
    _remove_tree(work)
    # Each source change makes a new operator image: keep only the newest archive.
    for stale in images_dir().glob("operator-*.oci.tar"):
        if stale != image.archive:
            stale.unlink(missing_ok=True)


def _archive(kind: str, digest: str) -> Path:
    images_dir().mkdir(parents=True, exist_ok=True)
    return images_dir() / f"{kind}-{digest}.oci.tar"


def _scratch(kind: str) -> Path:
    work = images_dir() / f".{kind}.partial-{os.getpid()}"
    _remove_tree(work)
    work.mkdir(parents=True)
    return work


def _remove_tree(path: Path) -> None:
    # buildah's vfs storage leaves read-only directories behind.
    if path.exists():
        subprocess.run(["chmod", "-R", "u+rwX", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def ensure_images() -> tuple[NodeImages, dict[str, float]]:
    """Build the missing images; return them and the seconds spent on each one built now."""
    timings: dict[str, float] = {}
    pause, busybox, python = pause_image(), busybox_image(), python_image()
    operator = operator_image(python)
    steps: list[tuple[str, Image, Callable[[], None]]] = [
        ("pause", pause, lambda: build_pause(pause)),
        ("busybox", busybox, lambda: build_busybox(busybox)),
        ("python", python, lambda: build_python(python)),
        ("operator", operator, lambda: build_operator(operator, python)),
    ]
    for kind, image, build in steps:
        if image.archive.is_file():
            continue
        started = time.monotonic()
        build()
        timings[kind] = time.monotonic() - started
        log(f"built the {kind} image in {timings[kind]:.1f} s: {image.name}")
    return NodeImages(pause, busybox, python, operator), timings
