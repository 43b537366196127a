"""Running the operator: ``carbonaware run`` ends up here."""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, cast

import kopf

import carbonaware.handlers  # noqa: F401 - registers the handlers
from carbonaware.config import OperatorSettings
from carbonaware.handlers.admission import register_webhook
from carbonaware.handlers.peering import PeeringConfig


def default_identity() -> str:
    """Pod name (or host name) plus PID: unique per replica, stable in logs."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}-{os.getpid()}"


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(*, verbose: bool) -> None:
    """Timestamped lines (UTC, milliseconds); our transitions at INFO, kopf's per-object
    lines and asyncssh's per-connection lines only when verbose.

    kopf logs every handler call on every object at INFO ("Handler ... succeeded."), and its
    webhook server every admission request: with thousands of jobs that is nearly the whole log
    and a measurable share of the operator's CPU at creation (bench/scale.py). asyncssh logs
    every connection and channel at INFO (one probe of a ServerTarget is several lines). Our
    own loggers record each transition; kopf's and asyncssh's warnings and errors still show.
    """
    # kopf takes a format string as well as its LogFormat presets.
    kopf.configure(verbose=verbose, log_format=cast(Any, LOG_FORMAT))
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.formatter.converter = time.gmtime
            handler.formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
            handler.formatter.default_msec_format = "%s.%03dZ"
    logging.getLogger("carbonaware").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # aiohttp (kopf's webhook server) logs every admission request at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if verbose else logging.WARNING)


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
    if settings.webhook_port:
        register_webhook()
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
