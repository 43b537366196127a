"""The energy reader's queries and units against a mocked Prometheus (real one: integration)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from carbonaware.metricsource.energy import PrometheusEnergyReader
from carbonaware.metricsource.prometheus import PrometheusCpuReader
from carbonaware.providers.http import HttpOptions

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
END = START + timedelta(minutes=10)


def _answer(values: list[float]) -> dict[str, Any]:
    result = [{"metric": {}, "value": [END.timestamp(), str(v)]} for v in values]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def _reader(series: dict[str, float], queries: list[str]) -> PrometheusEnergyReader:
    """Answers a query with the value of the first metric name in ``series`` it mentions."""

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        queries.append(query)
        for needle, value in series.items():
            if needle in query:
                return httpx.Response(200, json=_answer([value]))
        return httpx.Response(200, json=_answer([]))

    options = HttpOptions(retries=0, transport=httpx.MockTransport(handler))
    return PrometheusEnergyReader(PrometheusCpuReader("http://prom.test", options=options))


async def test_kepler_010_zones_become_cpu_and_memory_kwh() -> None:
    queries: list[str] = []
    reader = _reader({'zone="package"': 7200.0, 'zone="dram"': 360.0, "DCGM": 70.0}, queries)
    energy = await reader.pod_energy("team", "train-x", START, END)
    assert energy.source == "kepler"
    assert energy.cpu_kwh == pytest.approx(7200 / 3.6e6)
    assert energy.memory_kwh == pytest.approx(360 / 3.6e6)
    assert energy.gpu_kwh == pytest.approx(70 * 600 / 3.6e6)  # mean watts x 10 minutes
    package = next(q for q in queries if 'zone="package"' in q)
    assert package == (
        "max(sum by (state) (increase(kepler_pod_cpu_joules_total"
        '{pod_name="train-x",pod_namespace="team",zone="package"}[600000ms])))'
    )
    dcgm = next(q for q in queries if "DCGM" in q)
    assert dcgm == (
        'sum(avg_over_time(DCGM_FI_DEV_POWER_USAGE{namespace="team",pod="train-x"}[600000ms]))'
    )


async def test_kepler_before_010_is_read_when_the_new_names_are_absent() -> None:
    queries: list[str] = []
    series = {"kepler_container_package": 3600.0, "kepler_container_dram": 36.0}
    energy = await _reader(series, queries).pod_energy("team", "etl", START, END)
    assert energy.source == "kepler-0.7"
    assert energy.cpu_kwh == pytest.approx(0.001)
    assert energy.memory_kwh == pytest.approx(0.00001)
    assert energy.gpu_kwh is None
    legacy = next(q for q in queries if "kepler_container_package" in q)
    assert legacy == (
        "sum(increase(kepler_container_package_joules_total"
        '{container_namespace="team",pod_name="etl"}[600000ms]))'
    )


async def test_no_meters_means_an_empty_reading() -> None:
    energy = await _reader({}, []).pod_energy("team", "etl", START, END)
    assert energy.empty
