"""The Prometheus CPU reader against a mocked Prometheus HTTP API (real one: integration)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from carbonaware.errors import MetricSourceError
from carbonaware.metricsource import (
    SOURCE_PROMETHEUS_CONTAINER,
    SOURCE_PROMETHEUS_NODE_SHARE,
    PrometheusCpuReader,
)
from carbonaware.metricsource.prometheus import (
    container_total,
    escape_label_value,
    range_duration,
)
from carbonaware.providers.http import HttpOptions

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)


def _vector(*values: float) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [END.timestamp(), str(v)]} for v in values],
        },
    }


def _matrix(*series: tuple[dict[str, str], list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": labels, "values": [[t, str(v)] for t, v in points]}
                for labels, points in series
            ],
        },
    }


Answer = Callable[[str], dict[str, Any]]


def _reader(answer: Answer, queries: list[httpx.Request], retries: int = 0) -> PrometheusCpuReader:
    def handler(request: httpx.Request) -> httpx.Response:
        queries.append(request)
        return httpx.Response(200, json=answer(request.url.params["query"]))

    options = HttpOptions(retries=retries, transport=httpx.MockTransport(handler))
    return PrometheusCpuReader("http://prometheus.test:9090", options=options)


def test_helpers() -> None:
    assert escape_label_value('a"b\\c') == 'a\\"b\\\\c'
    assert range_duration(START, END) == "600000ms"
    assert range_duration(START, START) == "1ms"


async def test_container_usage_is_preferred_when_present() -> None:
    queries: list[httpx.Request] = []
    t0 = START.timestamp()
    # Two containers; the second ended at its last sample, the first 5 s after its last one.
    main = [(t0 + 10, 5.0), (t0 + 20, 10.0), (t0 + 30, 15.0)]
    sidecar = [(t0 + 12, 1.0), (t0 + 22, 1.5)]

    def answer(query: str) -> dict[str, Any]:
        assert query.startswith("container_cpu_usage_seconds_total{")
        return _matrix(({"container": "main"}, main), ({"container": "sidecar"}, sidecar))

    finished = {"main": START + timedelta(seconds=35), "sidecar": START + timedelta(seconds=22)}
    async with _reader(answer, queries) as reader:
        reading = await reader.run_reading(
            START,
            END,
            namespace="ml",
            pod='train"1',
            node_labels={"instance": "n1:9100"},
            finished=finished,
        )
    # main: 15 + 0.5 core x 5 s after its last sample; sidecar: its last value.
    assert reading.core_seconds == pytest.approx(15.0 + 2.5 + 1.5)
    assert reading.source == SOURCE_PROMETHEUS_CONTAINER
    assert "last 5.0 s extrapolated" in reading.detail
    assert len(queries) == 1
    params = queries[0].url.params
    assert params["query"] == (
        "container_cpu_usage_seconds_total"
        '{namespace="ml",pod="train\\"1",container!="",container!="POD"}[600000ms]'
    )
    assert float(params["time"]) == pytest.approx(END.timestamp())
    assert queries[0].url.path == "/api/v1/query"


async def test_falls_back_to_the_node_share_without_container_series() -> None:
    queries: list[httpx.Request] = []

    def answer(query: str) -> dict[str, Any]:
        if query.startswith("container_cpu"):
            return _matrix()
        if query.startswith("sum(increase(node_cpu_seconds_total"):
            return _vector(1200.0)
        if query.startswith("count(count by (cpu)"):
            return _vector(8)
        raise AssertionError(query)

    async with _reader(answer, queries) as reader:
        reading = await reader.run_reading(
            START,
            END,
            namespace="ml",
            pod="p",
            node_labels={"instance": "n1:9100"},
            reserved_vcpus=2,
        )
    assert reading.source == SOURCE_PROMETHEUS_NODE_SHARE
    assert reading.core_seconds == pytest.approx(1200.0 * 2 / 8)
    node_query = queries[1].url.params["query"]
    assert node_query == (
        'sum(increase(node_cpu_seconds_total{instance="n1:9100",mode!~"idle|iowait|steal"}'
        "[600000ms]))"
    )
    assert queries[2].url.params["query"] == (
        'count(count by (cpu) (node_cpu_seconds_total{instance="n1:9100",mode="idle"}))'
    )


async def test_node_share_is_capped_at_the_whole_node() -> None:
    def answer(query: str) -> dict[str, Any]:
        return _vector(100.0) if query.startswith("sum") else _vector(2)

    async with _reader(answer, []) as reader:
        reading = await reader.run_reading(
            START, END, node_labels={"node": "w1"}, reserved_vcpus=16
        )
    assert reading.core_seconds == pytest.approx(100.0)


async def test_missing_node_metrics_is_an_error_naming_the_node() -> None:
    def answer(query: str) -> dict[str, Any]:
        return _matrix() if query.startswith("container_cpu") else _vector()

    async with _reader(answer, []) as reader:
        with pytest.raises(MetricSourceError, match="no node_cpu_seconds_total"):
            await reader.run_reading(START, END, node_labels={"instance": "gone:9100"})
        with pytest.raises(MetricSourceError, match="no node to fall back to"):
            await reader.run_reading(START, END, namespace="ml", pod="p")


async def test_http_and_query_failures_become_metric_source_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "bad" in request.url.params["query"]:
            return httpx.Response(
                400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}
            )
        return httpx.Response(503, text="overloaded")

    options = HttpOptions(retries=0, transport=httpx.MockTransport(handler))
    async with PrometheusCpuReader("http://p.test", options=options) as reader:
        with pytest.raises(MetricSourceError, match=r"prometheus: .*HTTP 503"):
            await reader.scalar_query("up")
        with pytest.raises(MetricSourceError, match="HTTP 400"):
            await reader.scalar_query("bad{")


async def test_matrix_answers_are_rejected() -> None:
    def answer(_query: str) -> dict[str, Any]:
        return {"status": "success", "data": {"resultType": "matrix", "result": []}}

    async with _reader(answer, []) as reader:
        with pytest.raises(MetricSourceError, match="did not return a vector"):
            await reader.instant_query("up[5m]")


async def test_wait_for_samples_polls_until_a_scrape_after_the_moment() -> None:
    latest = [END.timestamp() - 2, END.timestamp() - 1, END.timestamp() + 0.5]
    slept: list[float] = []
    now = [START]

    def answer(query: str) -> dict[str, Any]:
        assert query == 'max(timestamp(node_cpu_seconds_total{instance="n"}))'
        return _vector(latest.pop(0))

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += timedelta(seconds=seconds)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer(request.url.params["query"]))

    options = HttpOptions(retries=0, transport=httpx.MockTransport(handler))
    reader = PrometheusCpuReader(
        "http://p.test", options=options, clock=lambda: now[0], sleep=sleep
    )
    async with reader:
        await reader.wait_for_samples(
            'node_cpu_seconds_total{instance="n"}', END, timeout_seconds=10, poll_seconds=0.5
        )
        assert slept == [0.5, 0.5]
        latest[:] = [END.timestamp() - 1] * 100
        with pytest.raises(MetricSourceError, match="within 2s"):
            await reader.wait_for_samples(
                'node_cpu_seconds_total{instance="n"}', END, timeout_seconds=2, poll_seconds=0.5
            )


def test_a_containers_tail_is_extrapolated_at_its_rate_within_bounds() -> None:
    # 0.25 core, then 0.5 core over the last 15 s; gaps of 10 and 15 s
    samples = [(100.0, 10.0), (110.0, 12.5), (125.0, 20.0)]
    # Ended 6 s after the last sample: 3 core-seconds more, at its latest rate.
    assert container_total(samples, 95.0, 131.0, 200.0) == (pytest.approx(23.0), 6.0)
    # Not known to have ended: at most the longest gap between samples, never past the run.
    assert container_total(samples, 95.0, None, 200.0) == (pytest.approx(27.5), 15.0)
    assert container_total(samples, 95.0, None, 130.0) == (pytest.approx(22.5), 5.0)
    # Ended at (or before) its last sample: its last value as it is.
    assert container_total(samples, 95.0, 125.0, 200.0) == (20.0, 0.0)
    # One sample: the rate since the run started.
    assert container_total([(110.0, 5.0)], 100.0, 114.0, 200.0) == (pytest.approx(7.0), 4.0)
    # A counter that went down (a reset) is never extrapolated downwards.
    assert container_total([(100.0, 9.0), (110.0, 3.0)], 95.0, 120.0, 200.0) == (3.0, 10.0)
