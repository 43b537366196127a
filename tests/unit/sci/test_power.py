"""Power models: the TDP curve, CCF's linear model and the memory/storage/network coefficients."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonaware.sci.power import (
    LinearPowerModel,
    TdpPowerModel,
    cpu_energy_kwh,
    memory_energy_kwh,
    network_energy_kwh,
    storage_energy_kwh,
    tdp_coefficient,
)

fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
hours = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False)


@pytest.mark.parametrize(
    ("utilisation", "factor"), [(0.0, 0.12), (0.10, 0.32), (0.50, 0.75), (1.0, 1.02)]
)
def test_tdp_curve_passes_through_the_teads_points(utilisation: float, factor: float) -> None:
    assert tdp_coefficient(utilisation) == pytest.approx(factor)


def test_tdp_curve_interpolates_linearly_between_points() -> None:
    assert tdp_coefficient(0.30) == pytest.approx((0.32 + 0.75) / 2)
    assert tdp_coefficient(0.05) == pytest.approx((0.12 + 0.32) / 2)
    # The eShop app server's measured 18.3922 % sits on the 10-50 % segment.
    assert tdp_coefficient(0.183922) == pytest.approx(0.32 + 0.083922 / 0.4 * 0.43)


def test_tdp_curve_clips_out_of_range_utilisation() -> None:
    assert tdp_coefficient(-0.5) == pytest.approx(0.12)
    assert tdp_coefficient(1.7) == pytest.approx(1.02)


def test_linear_model_is_ccf_formula() -> None:
    model = LinearPowerModel(0.74, 3.5, "ccf-linear(aws)")
    # W = vCPUs x (minW + u x (maxW - minW))
    assert model.watts(4, 0.5) == pytest.approx(4 * (0.74 + 0.5 * (3.5 - 0.74)))
    assert cpu_energy_kwh(model, 4, 0.5, 2.0) == pytest.approx(4 * 2.12 * 2.0 / 1000)


def test_tdp_model_attributes_the_reserved_share() -> None:
    model = TdpPowerModel(tdp_watts=200, machine_vcpus=8, label="tdp")
    assert model.watts(2, 1.0) == pytest.approx(200 * 2 / 8 * 1.02)


def test_memory_storage_network_coefficients_are_ccf() -> None:
    assert memory_energy_kwh(10, 1) == pytest.approx(0.00392)  # 0.392 W/GB
    assert storage_energy_kwh(1, 0, 1) == pytest.approx(0.0012)  # SSD 1.2 Wh/TB-h
    assert storage_energy_kwh(0, 1, 1) == pytest.approx(0.00065)  # HDD 0.65 Wh/TB-h
    assert network_energy_kwh(15.46) == pytest.approx(0.01546)  # 0.001 kWh/GB


@given(low=fractions, high=fractions, vcpus=st.integers(1, 64), duration=hours)
def test_energy_is_monotone_in_utilisation(
    low: float, high: float, vcpus: int, duration: float
) -> None:
    low, high = sorted((low, high))
    for model in (
        LinearPowerModel(0.74, 3.5, "linear"),
        TdpPowerModel(tdp_watts=150, machine_vcpus=64, label="tdp"),
    ):
        assert cpu_energy_kwh(model, vcpus, low, duration) <= cpu_energy_kwh(
            model, vcpus, high, duration
        )


@given(u=fractions, short=hours, long=hours)
def test_energy_is_monotone_in_duration_at_fixed_utilisation(
    u: float, short: float, long: float
) -> None:
    short, long = sorted((short, long))
    for model in (LinearPowerModel(0.71, 4.26, "l"), TdpPowerModel(205, 16, "t")):
        assert cpu_energy_kwh(model, 2, u, short) <= cpu_energy_kwh(model, 2, u, long)


@given(min_w=st.floats(0, 10), spread=st.floats(0, 10), vcpus=st.integers(1, 96), duration=hours)
def test_zero_utilisation_draws_idle_power_only(
    min_w: float, spread: float, vcpus: int, duration: float
) -> None:
    linear = LinearPowerModel(min_w, min_w + spread, "l")
    assert cpu_energy_kwh(linear, vcpus, 0.0, duration) == pytest.approx(
        vcpus * min_w * duration / 1000
    )
    tdp = TdpPowerModel(100.0, 96, "t")
    assert cpu_energy_kwh(tdp, vcpus, 0.0, duration) == pytest.approx(
        100.0 * vcpus / 96 * 0.12 * duration / 1000
    )
