"""Start-up wiring of the metrics: provider request counting and the metrics port."""

from __future__ import annotations

import socket

import kopf
import pytest

from carbonaware.handlers.startup import provider_request_hooks, serve_metrics
from carbonaware.metrics import Metrics


def requests(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["provider"], sample.labels["outcome"]): sample.value
        for family in metrics.provider_requests.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_http_attempts_count_once_and_stale_answers_count_too() -> None:
    metrics = Metrics()
    on_request, on_fetch = provider_request_hooks(metrics)
    # One fetch of an HTTP provider: a failed attempt, a retry that worked.
    on_request("ukci", "unavailable")
    on_request("ukci", "ok")
    on_fetch("ukci", "ok")  # the same fetch, seen by the cache: not counted twice
    on_fetch("ukci", "stale")  # later, the upstream down: a remembered value served
    assert requests(metrics) == {
        ("ukci", "unavailable"): 1,
        ("ukci", "ok"): 1,
        ("ukci", "stale"): 1,
    }


def test_local_sources_count_their_fetches() -> None:
    metrics = Metrics()
    _, on_fetch = provider_request_hooks(metrics)
    on_fetch("trace", "ok")
    on_fetch("static", "unknown_region")
    assert requests(metrics) == {("trace", "ok"): 1, ("static", "unknown_region"): 1}


def test_port_zero_serves_nothing_and_a_taken_port_is_a_permanent_error() -> None:
    metrics = Metrics()
    serve_metrics(metrics, 0)  # no server, no error
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(kopf.PermanentError, match=f"port {port}"):
            serve_metrics(metrics, port)


def test_a_deleted_target_loses_its_reachability_series() -> None:
    metrics = Metrics()
    metrics.target_reachable.labels("ns", "gone").set(0)
    metrics.target_reachable.labels("ns", "kept").set(1)
    metrics.forget_target("ns", "gone")
    metrics.forget_target("ns", "never-probed")  # no-op
    samples = {
        sample.labels["target"]: sample.value
        for family in metrics.target_reachable.collect()
        for sample in family.samples
    }
    assert samples == {"kept": 1}
