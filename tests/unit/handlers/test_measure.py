"""Measuring a run: which machine figures win, and the intensity a run is priced at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from carbonaware.api.intensity import IntensityPoint
from carbonaware.api.servertarget import Hardware
from carbonaware.handlers import measure
from carbonaware.sci import InstanceFigures
from carbonaware.sci.power import CurvePowerModel, LinearPowerModel

URL = "http://boavizta.test"
T0 = datetime(2024, 6, 12, 18, 0, tzinfo=UTC)
SERVER = InstanceFigures(
    name="server(8 cores, 64 GiB)", cloud="", vcpus=16, memory_gib=64, host_vcpus=16,
    min_watts=10.0, max_watts=20.0, embodied_kg=1500.0, source="boavizta-server",
    lifespan_years=6.0, curve=((0.0, 160.0), (1.0, 320.0)),
)  # fmt: skip


class FakeCatalog:
    def __init__(self) -> None:
        self.asked: list[tuple[int, float]] = []

    async def server(self, vcpus: int, memory_gib: float) -> InstanceFigures:
        self.asked.append((vcpus, memory_gib))
        return SERVER


def _ctx(boavizta_url: str | None, points: list[IntensityPoint] | None = None) -> Any:
    async def forecast(region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        return points or []

    settings = SimpleNamespace(boavizta_url=boavizta_url, pue=1.0)
    return SimpleNamespace(settings=settings, provider=SimpleNamespace(forecast=forecast))


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> FakeCatalog:
    fake = FakeCatalog()
    monkeypatch.setitem(measure._BOAVIZTA, URL, fake)  # type: ignore[arg-type]
    return fake


async def test_a_described_server_keeps_its_own_figures(catalog: FakeCatalog) -> None:
    hardware = Hardware.model_validate(
        {"vcpus": 16, "minWatts": 80, "maxWatts": 320, "embodiedKgCO2e": 1200}
    )
    machine = await measure.server_machine(_ctx(URL), hardware, 16, "box")
    assert machine.embodied_source == "hardware"
    assert isinstance(machine.power, LinearPowerModel)
    assert catalog.asked == []


async def test_boaviztapi_fills_what_the_hardware_block_leaves_out(catalog: FakeCatalog) -> None:
    hardware = Hardware.model_validate({"vcpus": 16, "memoryGiB": 64, "tdpWatts": 150})
    machine = await measure.server_machine(_ctx(URL), hardware, 16, "box")
    assert catalog.asked == [(16, 64.0)]
    assert machine.power.label == "tdp-curve(hardware)"  # its own watts stay
    assert machine.embodied_kg == 1500.0  # BoaviztAPI's, instead of the default server
    assert machine.embodied_source == "boavizta-server"
    assert machine.lifespan_years == 6.0
    bare = await measure.server_machine(_ctx(URL), None, 16, "box")
    assert isinstance(bare.power, CurvePowerModel)


async def test_without_boaviztapi_the_defaults_stand(catalog: FakeCatalog) -> None:
    machine = await measure.server_machine(_ctx(None), None, 4, "box")
    assert machine.embodied_source == "ccf-default"
    assert catalog.asked == []


async def test_a_run_is_priced_on_the_reported_slots_and_names_them() -> None:
    points = [
        IntensityPoint(T0, T0 + timedelta(minutes=30), 187.0, "ukci", False),
        IntensityPoint(T0 + timedelta(minutes=30), T0 + timedelta(hours=1), 201.0, "ukci", True),
    ]
    ctx = _ctx(None, points)
    found = await measure.run_intensity_over(ctx, "GB", T0, T0 + timedelta(minutes=20))
    assert found is not None
    assert (found.mean, found.kind, found.source) == (187.0, "actual", "ukci")
    mixed = await measure.run_intensity_over(ctx, "GB", T0, T0 + timedelta(hours=1))
    assert mixed is not None
    assert mixed.kind == "mixed"
    assert mixed.mean == pytest.approx(194.0)
