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


def configure_logging(*, verbose: bool) -> None:
    """Plain log lines; our transitions at INFO, kopf's per-object lines only when verbose.

    kopf logs every handler call on every object at INFO ("Handler ... succeeded."): with
    thousands of jobs that is nearly the whole log and a measurable share of the operator's
    CPU at creation (bench/scale.py). Our own loggers record each transition; kopf's
    warnings and errors (handler failures, retries) still show.
    """
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("carbonaware").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)


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
    configure_logging(verbose=verbose)
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
