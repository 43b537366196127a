"""The per-run estimate: E, I, M, R, avoided grams, and the intensity mean over a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carbonaware.api.intensity import IntensityPoint
from carbonaware.api.jobstatus import SciStatus
from carbonaware.api.servertarget import Hardware
from carbonaware.errors import SpecError
from carbonaware.sci import (
    FunctionalUnit,
    LinearPowerModel,
    MachineProfile,
    MeasuredEnergy,
    RunUsage,
    TdpPowerModel,
    embodied_grams,
    estimate_run,
    find_instance_type,
    machine_for_instance_type,
    machine_from_hardware,
    machine_from_server_hardware,
    provider_from_provider_id,
    pue_for_provider,
    run_intensity,
    time_weighted_mean,
)
from carbonaware.sci.coefficients import embodied_kg_per_vcpu

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _machine(
    power: LinearPowerModel | TdpPowerModel | None = None, embodied_kg: float = 1000.0
) -> MachineProfile:
    return MachineProfile(
        name="test",
        vcpus=8,
        power=power or LinearPowerModel(1.0, 5.0, "linear(test)"),
        memory_gib=32,
        embodied_kg=embodied_kg,
        embodied_vcpus=64,
    )


def test_estimate_of_an_m5_xlarge_run_by_hand() -> None:
    machine = machine_for_instance_type("m5.xlarge")
    row = find_instance_type("m5.xlarge")
    assert row is not None
    usage = RunUsage(duration_seconds=1800, cpu_core_seconds=1800, reserved_vcpus=2, memory_gib=4)
    result = estimate_run(usage, machine, 200.0, FunctionalUnit("run", 1), None, pue=1.135)
    # u = 1800 / (2 x 1800) = 0.5; the row's Skylake watts per vCPU (CCF's AWS use
    # coefficients, 0.6130..4.1042); 0.5 h.
    assert (row.watts.min_watts, row.watts.max_watts) == (0.613, 4.1042)
    cpu_kwh = 2 * (0.613 + 0.5 * (4.1042 - 0.613)) * 0.5 / 1000
    memory_kwh = 4 * 0.392 * 0.5 / 1000
    energy = (cpu_kwh + memory_kwh) * 1.135
    embodied = 1610.79 * 1000 * (0.5 / 35040) * (2 / 96)
    assert result.cpu_kwh == pytest.approx(cpu_kwh)
    assert result.memory_kwh == pytest.approx(memory_kwh)
    assert result.energy_kwh == pytest.approx(energy)
    assert result.operational_grams == pytest.approx(energy * 200)
    assert result.embodied_grams == pytest.approx(embodied)
    assert result.total_grams == pytest.approx(energy * 200 + embodied)
    assert result.method == "ccf-linear(aws:Skylake);memory=ccf;pue=1.135;embodied=ccf"
    assert result.energy_source == "modelled"
    assert result.functional_unit == "1 run"
    assert result.cpu_core_seconds == 1800
    assert result.avoided_grams is None


def test_avoided_grams_compares_with_the_window_at_creation() -> None:
    usage = RunUsage(3600, 3600, 1)
    machine = _machine()
    cleaner = estimate_run(usage, machine, 100.0, FunctionalUnit(), avoided_intensity=300.0)
    assert cleaner.avoided_grams == pytest.approx(cleaner.energy_kwh * 200.0)
    dirtier = estimate_run(usage, machine, 300.0, FunctionalUnit(), avoided_intensity=100.0)
    assert dirtier.avoided_grams is not None
    assert dirtier.avoided_grams < 0


def test_avoided_grams_is_zero_when_the_intensities_differ_by_float_noise_only() -> None:
    usage, machine = RunUsage(3600, 3600, 1), _machine()
    mean = (0.1 + 0.2) * 1000.0  # 300.00000000000006
    same = estimate_run(usage, machine, 300.0, FunctionalUnit(), avoided_intensity=mean)
    assert same.avoided_grams == 0.0
    apart = estimate_run(usage, machine, 300.0, FunctionalUnit(), avoided_intensity=300.01)
    assert apart.avoided_grams == pytest.approx(same.energy_kwh * 0.01)


def test_status_mapping_uses_crd_field_names() -> None:
    result = estimate_run(RunUsage(60, 30, 1), _machine(), 100.0, FunctionalUnit("users", 500))
    status = result.to_status()
    assert set(status) == {
        "energyKWh",
        "operationalGrams",
        "embodiedGrams",
        "totalGrams",
        "perUnitGrams",
        "functionalUnit",
        "avoidedGrams",
        "method",
        "cpuCoreSeconds",
        "cpuKWh",
        "memoryKWh",
        "gpuKWh",
        "energySource",
        "intensitySource",
    }
    assert status["functionalUnit"] == "500 users"


def test_energy_follows_the_cpu_used_not_the_request() -> None:
    # A pod requesting 100m that keeps 4 cores busy for an hour on an m5.xlarge (4 vCPUs).
    machine = machine_for_instance_type("m5.xlarge")
    usage = RunUsage(duration_seconds=3600, cpu_core_seconds=4 * 3600, reserved_vcpus=0.1)
    assert usage.charged_vcpus(machine.vcpus) == 4
    assert usage.utilisation(machine.vcpus) == 1.0
    result = estimate_run(usage, machine, 100.0, FunctionalUnit())
    # 4 vCPUs at full load: 4 x 4.1042 W for an hour, about 16.4 Wh; capped at the request
    # it would have been 0.1 x 4.1042 W = 0.41 Wh.
    assert result.cpu_kwh == pytest.approx(4 * 4.1042 / 1000)
    assert result.energy_kwh > 40 * 0.1 * 4.1042 / 1000 * 0.99
    # M is shared by the vCPUs actually used, too.
    assert result.embodied_grams == pytest.approx(1610.79e3 * (1 / 35040) * (4 / 96))


def test_used_cpu_is_bounded_by_the_machine_and_the_request_is_a_floor() -> None:
    usage = RunUsage(duration_seconds=100, cpu_core_seconds=5000, reserved_vcpus=2)
    machine = _machine()  # 8 vCPUs
    assert usage.charged_vcpus(machine.vcpus) == 8  # 50 cores measured: noise, bounded
    bounded = estimate_run(usage, machine, 100.0, FunctionalUnit())
    whole = estimate_run(RunUsage(100, 800, 2), machine, 100.0, FunctionalUnit())
    assert bounded.energy_kwh == pytest.approx(whole.energy_kwh)
    idle = RunUsage(duration_seconds=100, cpu_core_seconds=10, reserved_vcpus=2)
    assert idle.charged_vcpus(machine.vcpus) == 2  # the reservation still draws idle power
    assert idle.utilisation(machine.vcpus) == pytest.approx(0.05)


def test_a_run_without_a_reservation_is_charged_for_what_it_used() -> None:
    usage = RunUsage(duration_seconds=100, cpu_core_seconds=150, reserved_vcpus=0)
    assert usage.charged_vcpus() == pytest.approx(1.5)
    assert usage.utilisation() == pytest.approx(1.0)


def test_without_a_measurement_the_reservation_is_an_upper_bound_and_says_so() -> None:
    usage = RunUsage(3600, 2 * 3600, 2, cpu_measured=False)
    result = estimate_run(usage, _machine(), 100.0, FunctionalUnit())
    assert result.energy_source == "reservation"
    assert "cpu=reservation-upper-bound" in result.method


def test_measured_energy_replaces_the_model_and_is_named() -> None:
    usage = RunUsage(3600, 3600, 1, memory_gib=4)
    measured = MeasuredEnergy(cpu_kwh=0.02, memory_kwh=0.001, gpu_kwh=0.1, source="kepler")
    result = estimate_run(usage, _machine(), 100.0, FunctionalUnit(), pue=1.5, measured=measured)
    assert result.energy_source == "measured"
    assert (result.cpu_kwh, result.memory_kwh, result.gpu_kwh) == (0.02, 0.001, 0.1)
    assert result.energy_kwh == pytest.approx((0.02 + 0.001 + 0.1) * 1.5)
    assert result.method.startswith("cpu-energy=kepler;memory-energy=kepler;gpu-energy=dcgm")
    # Memory not metered: the request is modelled beside the measured CPU.
    cpu_only = estimate_run(
        usage, _machine(), 100.0, FunctionalUnit(), measured=MeasuredEnergy(cpu_kwh=0.02)
    )
    assert cpu_only.memory_kwh == pytest.approx(4 * 0.392 / 1000)
    assert "memory=ccf" in cpu_only.method


def test_run_intensity_names_its_sources_and_whether_it_is_actual() -> None:
    end = T0 + timedelta(minutes=60)
    actual = [_point(0, 30, 100.0), _point(30, 60, 200.0)]
    found = run_intensity(actual, T0, end)
    assert found is not None
    assert (found.mean, found.kind, found.source) == (150.0, "actual", "test")
    assert found.method == "intensity=actual(test)"
    mixed = [actual[0], IntensityPoint(T0 + timedelta(minutes=30), end, 300.0, "ukci", True)]
    found = run_intensity(mixed, T0, end)
    assert found is not None
    assert (found.kind, found.source, found.forecast_seconds) == ("mixed", "test|ukci", 1800.0)
    trace = [IntensityPoint(T0, end, 80.0, "trace", False)]
    replayed = run_intensity(trace, T0, end)
    assert replayed is not None
    assert replayed.method == "intensity=replayed-trace-actual(trace)"
    static = run_intensity([IntensityPoint(T0, end, 80.0, "static", True)], T0, end)
    assert static is not None
    assert static.method == "intensity=static(static)"
    assert run_intensity(actual, end, end + timedelta(hours=1)) is None
    result = estimate_run(RunUsage(60, 60, 1), _machine(), replayed, FunctionalUnit())
    assert result.intensity_source == "trace"
    assert result.method.endswith("intensity=replayed-trace-actual(trace)")


def test_pue_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="PUE"):
        estimate_run(RunUsage(1, 1, 1), _machine(), 1.0, FunctionalUnit(), pue=0.9)


usage_strategy = st.builds(
    RunUsage,
    duration_seconds=st.floats(1, 86400),
    cpu_core_seconds=st.floats(0, 1e6),
    reserved_vcpus=st.floats(0.1, 64),
    memory_gib=st.floats(0, 256),
)
models = st.sampled_from(
    [LinearPowerModel(0.74, 3.5, "l"), TdpPowerModel(tdp_watts=205, machine_vcpus=64, label="t")]
)


@given(
    usage=usage_strategy,
    model=models,
    intensity=st.floats(0, 1000),
    quantity=st.floats(0.001, 1e6),
    pue=st.floats(1, 2),
)
def test_total_is_operational_plus_embodied_and_per_unit_divides_by_r(
    usage: RunUsage,
    model: LinearPowerModel | TdpPowerModel,
    intensity: float,
    quantity: float,
    pue: float,
) -> None:
    result = estimate_run(usage, _machine(model), intensity, FunctionalUnit("x", quantity), pue=pue)
    assert result.total_grams == pytest.approx(result.operational_grams + result.embodied_grams)
    assert result.per_unit_grams == pytest.approx(result.total_grams / quantity)
    assert result.operational_grams == pytest.approx(result.energy_kwh * intensity)


@given(
    duration=st.floats(1, 86400),
    reserved=st.floats(0.1, 32),
    low=st.floats(0, 1e5),
    high=st.floats(0, 1e5),
    model=models,
)
def test_energy_is_monotone_in_cpu_used(
    duration: float, reserved: float, low: float, high: float, model: LinearPowerModel
) -> None:
    low, high = sorted((low, high))
    machine = _machine(model)
    less = estimate_run(RunUsage(duration, low, reserved), machine, 1.0, FunctionalUnit())
    more = estimate_run(RunUsage(duration, high, reserved), machine, 1.0, FunctionalUnit())
    assert less.energy_kwh <= more.energy_kwh * (1 + 1e-12)


@given(
    core_seconds=st.floats(0, 1e5),
    reserved=st.floats(0.1, 32),
    short=st.floats(1, 86400),
    long=st.floats(1, 86400),
    model=models,
)
def test_energy_is_monotone_in_duration_for_the_same_work(
    core_seconds: float, reserved: float, short: float, long: float, model: LinearPowerModel
) -> None:
    short, long = sorted((short, long))
    machine = _machine(model)
    quick = estimate_run(RunUsage(short, core_seconds, reserved), machine, 1.0, FunctionalUnit())
    slow = estimate_run(RunUsage(long, core_seconds, reserved), machine, 1.0, FunctionalUnit())
    assert quick.energy_kwh <= slow.energy_kwh * (1 + 1e-12)


@given(duration=st.floats(1, 86400), reserved=st.floats(0.1, 32))
def test_zero_cpu_gives_idle_power_only(duration: float, reserved: float) -> None:
    result = estimate_run(
        RunUsage(duration, 0.0, reserved), _machine(), 1.0, FunctionalUnit(), pue=1.0
    )
    # min watts 1.0 per vCPU for the reserved vCPUs, nothing above idle.
    assert result.energy_kwh == pytest.approx(reserved * 1.0 * duration / 3600 / 1000)


@given(
    te=st.floats(1, 10000),
    hours=st.floats(0.01, 1000),
    factor=st.floats(0.01, 100),
    rr=st.floats(0.1, 16),
    total=st.floats(16, 256),
)
def test_embodied_scales_linearly_with_time_and_resources_reserved(
    te: float, hours: float, factor: float, rr: float, total: float
) -> None:
    base = embodied_grams(te, hours, 35040, rr, total)
    assert embodied_grams(te, hours * factor, 35040, rr, total) == pytest.approx(base * factor)
    assert embodied_grams(te, hours, 35040, rr * factor, total) == pytest.approx(base * factor)
    assert base == pytest.approx(te * 1000 * hours / 35040 * rr / total)


def test_machine_from_hardware_linear_is_per_vcpu_of_whole_machine() -> None:
    machine = machine_from_hardware(
        vcpus=16, min_watts=80, max_watts=320, memory_gib=64, embodied_kg=1500, lifespan_years=5
    )
    assert isinstance(machine.power, LinearPowerModel)
    assert machine.power.min_watts_per_vcpu == 5.0
    assert machine.power.max_watts_per_vcpu == 20.0
    assert machine.embodied_vcpus == 16
    assert machine.embodied_source == "hardware"
    result = estimate_run(RunUsage(3600, 3600 * 16, 16), machine, 0.0, FunctionalUnit())
    assert result.energy_kwh == pytest.approx(0.320)  # the whole machine at full load, 1 h
    assert result.embodied_grams == pytest.approx(1500e3 / (5 * 8760))


def test_machine_from_hardware_tdp_and_defaults() -> None:
    machine = machine_from_hardware(vcpus=4, tdp_watts=65, memory_gib=32)
    assert isinstance(machine.power, TdpPowerModel)
    assert machine.embodied_kg == pytest.approx(1000 + 16 * 533 / 384)
    assert machine.embodied_source == "ccf-default"
    assert machine.lifespan_years == 4
    with pytest.raises(SpecError, match="minWatts"):
        machine_from_hardware(vcpus=4, min_watts=10)


def test_instance_lookup_accepts_kubernetes_azure_labels() -> None:
    machine = machine_for_instance_type("Standard_D2_v2")
    assert machine.name == "D2 v2"
    assert machine.embodied_kg == 1205.52
    assert machine.embodied_vcpus == 16


def test_unknown_instance_type_needs_the_node_size() -> None:
    with pytest.raises(SpecError, match="vCPU"):
        machine_for_instance_type("x9.huge")
    machine = machine_for_instance_type("x9.huge", provider="gcp", vcpus=8, memory_gib=64)
    assert machine.power.label == "ccf-linear(gcp;unknown-type=x9.huge)"
    per_vcpu = embodied_kg_per_vcpu("gcp")
    assert machine.embodied_source == f"default-per-vcpu(gcp:{per_vcpu:.2f}kg)"
    assert machine.embodied_vcpus == 8
    assert machine.embodied_kg == pytest.approx(8 * per_vcpu)


def test_an_unknown_vm_is_charged_per_vcpu_not_for_a_whole_server() -> None:
    # A 2-vCPU VM of a type nobody knows, reserved whole for an hour.
    machine = machine_for_instance_type("zz9.large", provider="aws", vcpus=2, memory_gib=8)
    result = estimate_run(RunUsage(3600, 0, 2), machine, 0.0, FunctionalUnit())
    per_vcpu = embodied_kg_per_vcpu("aws")
    assert 5 < per_vcpu < 60  # kg per vCPU: TE of a host over its vCPUs, median of the table
    assert result.embodied_grams == pytest.approx(2 * per_vcpu * 1000 / 35040)
    # The whole-default-server model would have charged 1,000 kg over the VM's 2 vCPUs.
    whole_server = 1000e3 / 35040
    assert result.embodied_grams < whole_server / 10


def test_provider_and_pue_helpers() -> None:
    assert provider_from_provider_id("aws:///eu-west-2a/i-0abc") == "aws"
    assert provider_from_provider_id("gce://project/zone/node") == "gcp"
    assert provider_from_provider_id("kind://docker/kind/node") is None
    assert pue_for_provider("gcp") == 1.1
    assert pue_for_provider(None, on_premises_pue=1.4) == 1.4


def _point(start_min: int, end_min: int, value: float) -> IntensityPoint:
    return IntensityPoint(
        start=T0 + timedelta(minutes=start_min),
        end=T0 + timedelta(minutes=end_min),
        intensity=value,
        source="test",
        is_forecast=False,
    )


def test_time_weighted_mean_weights_by_overlap() -> None:
    points = [_point(0, 30, 100.0), _point(30, 60, 200.0), _point(60, 90, 400.0)]
    # 20 min at 100, 30 min at 200, 10 min at 400
    mean = time_weighted_mean(points, T0 + timedelta(minutes=10), T0 + timedelta(minutes=70))
    assert mean == pytest.approx((20 * 100 + 30 * 200 + 10 * 400) / 60)


def test_time_weighted_mean_ignores_gaps_and_handles_edges() -> None:
    points = [_point(0, 30, 100.0), _point(60, 90, 300.0)]
    assert time_weighted_mean(points, T0, T0 + timedelta(minutes=90)) == pytest.approx(200.0)
    assert (
        time_weighted_mean(points, T0 + timedelta(minutes=35), T0 + timedelta(minutes=40)) is None
    )
    instant = T0 + timedelta(minutes=61)
    assert time_weighted_mean(points, instant, instant) == 300.0
    assert time_weighted_mean([], T0, T0 + timedelta(hours=1)) is None


def test_status_mapping_validates_against_the_crd_model() -> None:
    result = estimate_run(
        RunUsage(60, 30, 1), _machine(), 100.0, FunctionalUnit("users", 500), 120.0
    )
    status = SciStatus.model_validate(result.to_status())
    assert status.energy_k_wh == result.energy_kwh
    assert status.per_unit_grams == result.per_unit_grams
    assert status.avoided_grams == result.avoided_grams


def test_machine_from_a_servertarget_hardware_block() -> None:
    hardware = Hardware.model_validate(
        {"vcpus": 8, "tdpWatts": 95, "memoryGiB": 64, "embodiedKgCO2e": 1200, "lifespanYears": 6}
    )
    machine = machine_from_server_hardware(hardware, name="build-box")
    assert machine.name == "build-box"
    assert machine.power == TdpPowerModel(95, 8, "tdp-curve(hardware)")
    assert (machine.embodied_kg, machine.lifespan_years, machine.memory_gib) == (1200, 6, 64)
