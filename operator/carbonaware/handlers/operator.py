"""Running the operator: ``carbonaware run`` ends up here."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import kopf

import carbonaware.handlers  # noqa: F401 - registers the handlers
from carbonaware.config import OperatorSettings
from carbonaware.handlers.peering import PeeringConfig


def default_identity() -> str:
    """Pod name (or host name) plus PID: unique per replica, stable in logs."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}-{os.getpid()}"


def run_operator(
    *,
    settings: OperatorSettings,
    namespaces: list[str],
    peering: str | None,
    priority: int,
    liveness_endpoint: str | None,
    verbose: bool,
    memo: Any = None,
) -> None:
    """Run kopf in this thread until SIGINT/SIGTERM."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("carbonaware").setLevel(logging.DEBUG if verbose else logging.INFO)
    identity = default_identity()
    memo = memo if memo is not None else kopf.Memo()
    memo.settings = settings
    if peering:
        memo.peering = PeeringConfig(
            name=peering,
            identity=identity,
            priority=priority,
            namespace=namespaces[0] if len(namespaces) == 1 else None,
        )
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        identity=identity,  # type: ignore[arg-type]
        liveness_endpoint=liveness_endpoint,
        memo=memo,
    )
