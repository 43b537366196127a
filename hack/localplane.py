#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, for the integration tests and the demo.

It runs etcd, kube-apiserver (TLS, RBAC, service-account tokens), kube-controller-manager,
kube-scheduler and kwok, which plays the kubelet for a few fake nodes: pods bound to them
go Running, and pods owned by a Job finish on their own after a short delay. Nothing runs
in containers, so the plane starts in seconds on a laptop or a CI machine without Docker.

Command line::

    python hack/localplane.py build [--real-node]   # build the binaries once (cached)
    python hack/localplane.py up [--workdir DIR]    # start detached, print `export ...`
    python hack/localplane.py up --real-node        # ... with a real worker node (root)
    python hack/localplane.py env [--workdir DIR]   # print the `export ...` lines again
    python hack/localplane.py status [--workdir DIR]
    python hack/localplane.py down [--workdir DIR]

Python::

    plane = LocalPlane(workdir=Path("/tmp/plane"))   # real_node=True: a real worker node
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

This file is the stable entry point; the code lives in the package ``hack/testbed/``, one
module per concern (build, pki, kwok, components, process, client, plane, cli).
"""

from __future__ import annotations

import sys
from pathlib import Path

# hack/ holds the test bed package and its sibling scripts, whether this file runs as a
# script or is imported by path from the tests, the benchmarks and the demo.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import *  # noqa: F403 - this file is the package's stable entry point

if __name__ == "__main__":
    sys.exit(main())  # noqa: F405
