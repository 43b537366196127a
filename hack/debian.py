"""Debian packages the tests and the demo run for real, installed with apt-get when missing.

``python hack/debian.py`` installs all of them at once (the test command does this first);
the other scripts call :func:`ensure` for the one they need. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

LOCK = Path("/tmp/carbonaware-apt.lock")

# binary -> Debian package that provides it
PACKAGES = {
    "etcd": "etcd-server",
    "openssl": "openssl",
    "/usr/sbin/sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    # The real worker node: container runtime, CNI plugins, kube-proxy's iptables.
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "conntrack": "conntrack",
    # Images without a registry: a Debian root file system, the Dockerfile built as is,
    # the pause program compiled from Kubernetes' own source.
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "gcc": "gcc",
    "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev",
    # The test workload image: one static busybox.
    "/bin/busybox": "busybox-static",
}


class InstallError(RuntimeError):
    """apt-get could not install a package (or would need root)."""


class NeedsRootError(InstallError):
    """A package is missing and installing it needs root (or passwordless sudo)."""


def present(binary: str) -> bool:
    return Path(binary).exists() if binary.startswith("/") else shutil.which(binary) is not None


def install(*packages: str) -> None:
    """``apt-get install`` (as root, or through passwordless sudo); ``apt-get update`` and
    one retry if the first attempt fails (a fresh machine's package lists may be stale)."""
    if not packages:
        return
    if os.geteuid() == 0:
        apt = ["apt-get"]
    elif shutil.which("sudo"):
        apt = ["sudo", "-n", "apt-get"]
    else:
        raise NeedsRootError(
            f"installing {' '.join(packages)} needs root: apt-get install {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = [*apt, "install", "-y", "--no-install-recommends", *packages]
    print(f"[debian] installing {' '.join(packages)}", file=sys.stderr, flush=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0:
            return
        subprocess.run([*apt, "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")


def ensure(*binaries: str) -> None:
    """Install the packages providing whichever of ``binaries`` are missing."""
    missing = [PACKAGES[b] for b in binaries if not present(b)]
    install(*dict.fromkeys(missing))
    still = [b for b in binaries if not present(b)]
    if still:
        raise InstallError(f"installed, but still not found: {', '.join(still)}")


def main() -> int:
    try:
        ensure(*PACKAGES)
    except InstallError as exc:
        print(f"[debian] {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
