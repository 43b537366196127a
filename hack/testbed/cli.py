"""The command line: build | up | env | status | down."""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .build import ensure_built
from .common import CLIENT_ENVIRONMENT, STOP_ORDER, LocalPlaneError, log
from .nodeup import ensure_node_built
from .plane import LocalPlane, default_workdir
from .realnode import NODE_COMPONENTS

DESCRIPTION = "A real Kubernetes control plane on loopback, for the integration tests and the demo."


def _print_env(plane: LocalPlane) -> None:
    env = plane.env()
    dirs = os.pathsep.join(str(d) for d in plane.binaries.path_dirs)
    print(f"export KUBECONFIG={env['KUBECONFIG']}")
    print(f'export PATH="{dirs}{os.pathsep}$PATH"')
    for name, value in CLIENT_ENVIRONMENT.items():
        print(f"export {name}={value}")


def _command_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    found, timings = ensure_built()
    for field in dataclasses.fields(found):
        print(f"{field.name:24} {getattr(found, field.name)}")
    if args.real_node:
        images, node_timings = ensure_node_built()
        timings.update(node_timings)
        for image in images.all():
            print(f"{'image':24} {image.name} ({image.archive})")
    for name, seconds in timings.items():
        print(f"build time {name}: {seconds:.1f} s")
    print(f"total: {time.monotonic() - started:.1f} s")
    return 0


def _command_up(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir, real_node=args.real_node)
    if plane.is_running():
        log(f"already running in {plane.workdir}")
    else:
        plane.ensure_built()
        plane.start(detach=True, timeout=args.timeout)
        log(
            f"up in {plane.timings['plane_ready_s']:.1f} s (API server ready "
            f"{plane.timings['apiserver_ready_after_launch_s']:.1f} s after its launch); "
            f"server {plane.server}; logs in {plane.logs}"
        )
        if plane.node_layout is not None:
            log(
                f"real node {plane.real_node_name} ({plane.real_node_ip}) Ready at "
                f"{plane.timings['real_node_ready_at_s']:.1f} s, metrics.k8s.io at "
                f"{plane.timings['metrics_api_available_at_s']:.1f} s"
            )
    _print_env(plane)
    return 0


def _command_down(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    was_running = plane.is_running()
    plane.stop()
    log(f"stopped the plane in {plane.workdir}" if was_running else "nothing was running")
    return 0


def _command_env(args: argparse.Namespace) -> int:
    plane = LocalPlane(args.workdir)
    if not plane.is_running():
        log(f"no plane is running in {plane.workdir}")
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
    names = [*reversed(STOP_ORDER)]
    if plane.node_layout is not None:
        names += list(NODE_COMPONENTS)
    for name in names:
        if name in pids:
            print(f"{name:24} pid {pids[name]:>7}  rss {rss[name] / 2**20:7.1f} MiB")
        else:
            print(f"{name:24} not running (log: {plane.log_path(name)})")
    print(f"{'total':24} {'':11}  rss {sum(rss.values()) / 2**20:7.1f} MiB")
    ready = bool(pids.get("kube-apiserver")) and plane._api_ready() is not None
    print(f"readyz   {'ok' if ready else 'not ready'}")
    return 0 if ready and len(pids) == len(names) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localplane", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the Kubernetes, kwok and Helm binaries")
    build.add_argument(
        "--real-node",
        action="store_true",
        help="also build metrics-server, CoreDNS and the real node's images (cached)",
    )
    for name, help_text in (
        ("up", "start a plane in the background and print `export` lines"),
        ("down", "stop the plane"),
        ("env", "print `export KUBECONFIG=... PATH=...` for the running plane"),
        ("status", "show components, PIDs and memory"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--workdir", type=Path, default=default_workdir())
        if name == "up":
            sub.add_argument("--timeout", type=float, default=300)
            sub.add_argument(
                "--real-node",
                action="store_true",
                help="add a real worker node (containerd, kubelet, kube-proxy, metrics-server)",
            )
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
        log(f"error: {error}")
        return 1
