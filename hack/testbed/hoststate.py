"""Host state a real worker node changes outside its directory, recorded and put back.

The kubelet, kube-proxy, containerd and the CNI plugins touch: sysctls, iptables chains
(``KUBE-*``, ``CNI-*``; IPv4 and IPv6), the CNI bridge, mounts and network namespaces,
``/kubepods`` cgroups and a few directories under /var. ``snapshot()`` records what is there
before the node starts; ``restore()`` removes what the node added and sets the sysctls back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)
# Directories the kubelet and libcni create at fixed paths whatever their configuration.
HOST_DIRECTORIES = (
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/opt/cni",
    "/etc/cni",
    # containerd 1.6 shims put their sockets under /run/containerd/s whatever the state dir.
    "/run/containerd",
    "/run/netns",
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "kubepods"


@dataclasses.dataclass
class HostState:
    """What the host looked like: sysctl values, directories and chains that existed."""

    sysctls: dict[str, str]
    directories: list[str]
    chains: list[str]
    links: list[str]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> HostState:
        return cls(**json.loads(path.read_text()))


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def chains() -> list[str]:
    """`tool/table/chain` for every KUBE-* and CNI-* chain on the host."""
    found: list[str] = []
    for tool in IPTABLES:
        if shutil.which(f"{tool}-save") is None:
            continue
        for table in TABLES:
            result = subprocess.run(
                [f"{tool}-save", "-t", table], capture_output=True, text=True, check=False
            )
            for line in result.stdout.splitlines():
                match = re.match(r"^:(\S+)", line)
                if match and match.group(1).startswith(CHAIN_PREFIXES):
                    found.append(f"{tool}/{table}/{match.group(1)}")
    return found


def links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def snapshot() -> HostState:
    sysctls = {name: value for name in SYSCTLS if (value := _read_sysctl(name)) is not None}
    directories = [path for path in HOST_DIRECTORIES if os.path.lexists(path)]
    return HostState(sysctls, directories, chains(), links())


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(root: Path) -> None:
    for _ in range(3):
        points = mounts_under(root)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def cgroup_directories() -> list[Path]:
    """Every kubepods cgroup directory, in each v1 hierarchy (and the v2 root)."""
    found = []
    if CGROUP_ROOT.is_dir():
        for hierarchy in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
            candidate = hierarchy / CGROUP_NAME
            if candidate.is_dir():
                found.append(candidate)
    return found


def remove_cgroups() -> None:
    """rmdir each kubepods tree bottom-up (cgroup directories can only be rmdir-ed)."""
    for top in cgroup_directories():
        for directory in sorted(
            (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def remove_chains(keep: Iterable[str]) -> None:
    """Delete the KUBE-*/CNI-* chains the node added, and every rule that jumps to them."""
    kept = set(keep)
    added = [chain for chain in chains() if chain not in kept]
    by_table: dict[tuple[str, str], list[str]] = {}
    for entry in added:
        tool, table, chain = entry.split("/")
        by_table.setdefault((tool, table), []).append(chain)
    for (tool, table), names in by_table.items():
        dump = subprocess.run(
            [f"{tool}-save", "-t", table], capture_output=True, text=True, check=False
        ).stdout
        for line in dump.splitlines():
            # Rules in chains we keep that jump into a chain we remove.
            match = re.match(r"^-A (\S+) (.*)$", line)
            if match and match.group(1) not in names:
                target = re.search(r"-j (\S+)", match.group(2))
                if target and target.group(1) in names:
                    rule = ["-t", table, "-D", match.group(1), *_split_rule(match.group(2))]
                    subprocess.run([tool, *rule], capture_output=True, check=False)
        for name in names:
            subprocess.run([tool, "-t", table, "-F", name], capture_output=True, check=False)
        for name in names:
            subprocess.run([tool, "-t", table, "-X", name], capture_output=True, check=False)


def _split_rule(text: str) -> list[str]:
    return shlex.split(text)


def restore(before: HostState, *, bridge: str) -> None:
    """Undo what a real node changed on the host, given the state recorded before it."""
    if bridge not in before.links and Path("/sys/class/net", bridge).exists():
        subprocess.run(["ip", "link", "delete", bridge], capture_output=True, check=False)
    remove_chains(before.chains)
    remove_cgroups()
    for path in HOST_DIRECTORIES:
        if path not in before.directories and os.path.lexists(path):
            shutil.rmtree(path, ignore_errors=True)
    for name, value in before.sysctls.items():
        if _read_sysctl(name) != value:
            with contextlib.suppress(OSError):
                Path("/proc/sys", name).write_text(value)


def differences(before: HostState, root: Path, bridge: str) -> list[str]:
    """What is still changed compared with `before`; empty when the host is clean."""
    after = snapshot()
    problems = []
    for name, value in before.sysctls.items():
        if after.sysctls.get(name) != value:
            problems.append(f"sysctl {name}: {value} before, {after.sysctls.get(name)} now")
    problems += [f"directory {d}" for d in after.directories if d not in before.directories]
    problems += [f"chain {c}" for c in after.chains if c not in before.chains]
    problems += [f"link {n}" for n in after.links if n not in before.links]
    if bridge in after.links and bridge not in before.links:
        problems.append(f"bridge {bridge}")
    problems += [f"mount {m}" for m in mounts_under(root)]
    problems += [f"cgroup {c}" for c in cgroup_directories()]
    return problems
