"""Measuring a finished run: energy or CPU used, the machine it ran on, the intensity, SCI.

The I/O lives here (pods, nodes, Prometheus, the provider, BoaviztAPI); the arithmetic is
``carbonaware.sci``. Energy comes from the cluster's meters (Kepler, DCGM) when the
configured Prometheus has them; otherwise CPU comes from Prometheus, else from metrics.k8s.io
samples taken while the run was going, and goes through a power model; only when nothing
was measured is it bounded by the run's reservation (``energySource: reservation``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import FunctionalUnit as SpecFunctionalUnit
from carbonaware.api.intensity import IntensityPoint
from carbonaware.api.servertarget import Hardware
from carbonaware.errors import CarbonAwareError, MetricSourceError, ProviderError
from carbonaware.handlers.context import OperatorContext
from carbonaware.handlers.work import optional_time
from carbonaware.machinedata.boavizta import BoaviztaCatalog
from carbonaware.metricsource.energy import PrometheusEnergyReader
from carbonaware.metricsource.podmetrics import parse_cpu_quantity
from carbonaware.metricsource.prometheus import PrometheusCpuReader
from carbonaware.metricsource.reading import CpuReading
from carbonaware.sci.estimate import (
    FunctionalUnit,
    MeasuredEnergy,
    RunIntensity,
    RunUsage,
    SciEstimate,
    estimate_run,
    run_intensity,
)
from carbonaware.sci.machines import (
    MachineProfile,
    find_instance_type,
    machine_for_instance_type,
    machine_from_figures,
    machine_from_hardware,
    machine_from_server_hardware,
    provider_from_provider_id,
    pue_for_provider,
)

logger = logging.getLogger(__name__)

SOURCE_RESERVATION = "reservation"
SETTLE_SECONDS = 15.0
GIB = 1024**3


@dataclass(frozen=True)
class RunMeasurement:
    estimate: SciEstimate
    run_mean: float | None
    cpu_source: str


def memory_gib(quantity: str) -> float:
    """A Kubernetes memory quantity (``512Mi``, ``2G``, ``1073741824``) in GiB."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
             "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3}  # fmt: skip
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * units[suffix] / GIB
    return float(quantity) / GIB


def pod_requests(pod: dict[str, Any]) -> tuple[float, float]:
    """(vCPUs, GiB) the pod's containers request; limits stand in for missing requests."""
    cpus = 0.0
    memory = 0.0
    for container in pod.get("spec", {}).get("containers", []):
        resources = container.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        if "cpu" in wanted:
            cpus += parse_cpu_quantity(str(wanted["cpu"]))
        if "memory" in wanted:
            memory += memory_gib(str(wanted["memory"]))
    return cpus, memory


def pod_run_window(pod: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """When the pod's containers ran: earliest start to latest finish."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for state in pod.get("status", {}).get("containerStatuses") or []:
        terminated = (state.get("state") or {}).get("terminated") or {}
        start, end = (
            optional_time(terminated.get("startedAt")),
            optional_time(terminated.get("finishedAt")),
        )
        if start and end:
            starts.append(start)
            ends.append(end)
    if not starts:
        return None
    return min(starts), max(ends)


_BOAVIZTA: dict[str, BoaviztaCatalog] = {}


async def boavizta_machine(
    ctx: OperatorContext, instance_type: str, provider: str | None
) -> MachineProfile | None:
    """BoaviztAPI's profile of the type, when ``boavizta_url`` is set and it knows the type."""
    url = ctx.settings.boavizta_url
    if not url:
        return None
    catalog = _BOAVIZTA.setdefault(url, BoaviztaCatalog(url))
    row = find_instance_type(instance_type, provider)
    cloud = provider or (row.provider if row is not None else "aws")
    figures = await catalog.figures(cloud, row.name if row is not None else instance_type)
    return machine_from_figures(figures) if figures is not None else None


async def server_machine(
    ctx: OperatorContext, hardware: Hardware | None, vcpus: int, name: str
) -> MachineProfile:
    """A ServerTarget's machine: its ``hardware`` figures; what it leaves out (watts,
    embodied emissions, lifespan) from BoaviztAPI's model of such a server when configured,
    else the documented defaults."""
    stated = (
        machine_from_server_hardware(hardware, name=name)
        if hardware is not None
        else machine_from_hardware(vcpus=vcpus, name=name)
    )
    url = ctx.settings.boavizta_url
    described = (
        hardware is not None
        and hardware.embodied_kg_c_o2e is not None
        and (hardware.tdp_watts is not None or hardware.max_watts is not None)
    )
    if not url or described:
        return stated
    catalog = _BOAVIZTA.setdefault(url, BoaviztaCatalog(url))
    figures = await catalog.server(stated.vcpus, stated.memory_gib)
    if figures is None:
        return stated
    modelled = machine_from_figures(figures)
    own_watts = hardware is not None and (
        hardware.tdp_watts is not None or hardware.max_watts is not None
    )
    own_embodied = hardware is not None and hardware.embodied_kg_c_o2e is not None
    return replace(
        stated,
        power=stated.power if own_watts else modelled.power,
        embodied_kg=stated.embodied_kg if own_embodied else modelled.embodied_kg,
        lifespan_years=(
            stated.lifespan_years
            if hardware is not None and "lifespan_years" in hardware.model_fields_set
            else modelled.lifespan_years
        ),
        embodied_source=stated.embodied_source if own_embodied else modelled.embodied_source,
    )


async def machine_of(ctx: OperatorContext, node_name: str | None) -> tuple[MachineProfile, float]:
    """The node's machine profile and PUE (cloud provider's, else the configured one).

    BoaviztAPI first when configured, then the instance tables, then the per-vCPU default."""
    node = await ctx.kube.get_node(node_name) if node_name else None
    node_labels = (node or {}).get("metadata", {}).get("labels") or {}
    instance_type = node_labels.get("node.kubernetes.io/instance-type")
    provider = provider_from_provider_id((node or {}).get("spec", {}).get("providerID"))
    capacity = (node or {}).get("status", {}).get("capacity") or {}
    vcpus = int(parse_cpu_quantity(str(capacity["cpu"]))) if "cpu" in capacity else None
    memory = memory_gib(str(capacity["memory"])) if "memory" in capacity else None
    machine = await boavizta_machine(ctx, instance_type, provider) if instance_type else None
    if machine is None:
        machine = machine_for_instance_type(
            instance_type, provider=provider, vcpus=vcpus or 1, memory_gib=memory
        )
    return machine, pue_for_provider(machine.provider or provider, ctx.settings.pue)


async def run_intensity_over(
    ctx: OperatorContext, region: str, start: datetime, end: datetime
) -> RunIntensity | None:
    """I over ``[start, end)``: the provider chain's points for those slots (reported actuals
    where the provider has them, forecasts only for slots without one), their sources and
    whether any was a forecast."""
    try:
        points = await ctx.provider.forecast(region, start - timedelta(hours=1), end)
    except ProviderError as exc:
        logger.warning("no intensity for %s over the run: %s", region, exc)
        return None
    return run_intensity(points, start, end)


async def intensity_over(
    ctx: OperatorContext, region: str, start: datetime, end: datetime
) -> tuple[float | None, list[IntensityPoint]]:
    try:
        points = await ctx.provider.forecast(region, start - timedelta(hours=1), end)
    except ProviderError as exc:
        logger.warning("no intensity for %s over the run: %s", region, exc)
        return None, []
    found = run_intensity(points, start, end)
    return (found.mean if found else None), points


async def measured_energy(
    ctx: OperatorContext, pod: dict[str, Any], start: datetime, end: datetime
) -> MeasuredEnergy | None:
    """The pod's metered energy (Kepler, DCGM) from the configured Prometheus, if it has any."""
    if not ctx.settings.prometheus_url:
        return None
    meta = pod.get("metadata", {})
    try:
        async with PrometheusCpuReader(ctx.settings.prometheus_url) as reader:
            energy = await PrometheusEnergyReader(reader).pod_energy(
                str(meta.get("namespace")), str(meta.get("name")), start, end
            )
    except MetricSourceError as exc:
        logger.warning("energy of %s/%s: %s", meta.get("namespace"), meta.get("name"), exc)
        return None
    if energy.empty:
        return None
    return MeasuredEnergy(energy.cpu_kwh, energy.memory_kwh, energy.gpu_kwh, energy.source)


async def settled(reader: PrometheusCpuReader, end: datetime) -> None:
    """Wait (briefly) until Prometheus has scraped after the run ended, so the window's last
    interval is not missing from its counters; carry on regardless after the timeout."""
    try:
        await reader.wait_for_samples(
            "up", end + timedelta(seconds=1), timeout_seconds=SETTLE_SECONDS, poll_seconds=0.5
        )
    except MetricSourceError as exc:
        logger.info("reading the run's window without a later scrape: %s", exc)


def containers_finished(pod: dict[str, Any]) -> dict[str, datetime]:
    """When each of the pod's containers that ended did (by container name)."""
    found: dict[str, datetime] = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        with contextlib.suppress(ValueError):
            if (ended := optional_time(terminated.get("finishedAt"))) and status.get("name"):
                found[str(status["name"])] = ended
    return found


def logged(meta: dict[str, Any], reading: CpuReading) -> CpuReading:
    logger.info(
        "CPU of %s/%s: %.3f core-s, %s",
        meta.get("namespace"), meta.get("name"), reading.core_seconds, reading.detail,
    )  # fmt: skip
    return reading


async def cpu_reading(
    ctx: OperatorContext, pod: dict[str, Any], start: datetime, end: datetime, reserved: float
) -> CpuReading:
    meta = pod.get("metadata", {})
    if ctx.settings.prometheus_url:
        try:
            async with PrometheusCpuReader(ctx.settings.prometheus_url) as reader:
                await settled(reader, end)
                reading = await reader.run_reading(
                    start,
                    end,
                    namespace=meta.get("namespace"),
                    pod=meta.get("name"),
                    node_labels={"node": pod.get("spec", {}).get("nodeName", "")},
                    reserved_vcpus=reserved or None,
                    finished=containers_finished(pod),
                )
            return logged(meta, reading)
        except MetricSourceError as exc:
            logger.warning(
                "CPU of %s/%s from Prometheus: %s", meta.get("namespace"), meta.get("name"), exc
            )
    samples = ctx.usage.reading(meta.get("namespace", ""), meta.get("name", ""), start, end)
    if samples is not None:
        return logged(meta, samples)
    # No measurement: bound the usage by the reservation (or one vCPU) for the whole run.
    bound = (reserved or 1.0) * max((end - start).total_seconds(), 0.0)
    return CpuReading(
        bound, SOURCE_RESERVATION, "no CPU metrics: reserved vCPUs fully busy (upper bound)"
    )


async def measure_pods(
    ctx: OperatorContext,
    pods: list[dict[str, Any]],
    *,
    region: str,
    created: datetime,
    functional_unit: SpecFunctionalUnit,
    fallback_window: tuple[datetime, datetime] | None,
) -> RunMeasurement | None:
    """SCI of a Job's run: the sum over its pods, each on its own node's profile."""
    totals: dict[str, float] = {}
    gpu_kwh: float | None = None
    first_start: datetime | None = None
    last_end: datetime | None = None
    methods: set[str] = set()
    sources: set[str] = set()
    energy_sources: set[str] = set()
    intensity_sources: set[str] = set()
    for pod in pods:
        window = pod_run_window(pod) or fallback_window
        if window is None:
            continue
        start, end = window
        first_start = min(first_start or start, start)
        last_end = max(last_end or end, end)
        reserved, memory = pod_requests(pod)
        try:
            reading = await cpu_reading(ctx, pod, start, end, reserved)
            machine, pue = await machine_of(ctx, pod.get("spec", {}).get("nodeName"))
        except CarbonAwareError as exc:
            logger.warning("cannot measure pod %s: %s", pod.get("metadata", {}).get("name"), exc)
            continue
        intensity = await run_intensity_over(ctx, region, start, end)
        if intensity is None:
            continue
        measured = await measured_energy(ctx, pod, start, end)
        duration = end - start
        avoided_intensity, _ = await intensity_over(ctx, region, created, created + duration)
        usage = RunUsage(
            duration.total_seconds(),
            reading.core_seconds,
            reserved,
            memory,
            cpu_measured=reading.source != SOURCE_RESERVATION,
        )
        estimate = estimate_run(
            usage,
            machine,
            intensity,
            FunctionalUnit(functional_unit.name, float(functional_unit.quantity)),
            avoided_intensity=avoided_intensity,
            pue=pue,
            measured=measured,
        )
        for field in ("energy_kwh", "operational_grams", "embodied_grams", "total_grams",
                      "cpu_core_seconds", "cpu_kwh", "memory_kwh"):  # fmt: skip
            totals[field] = totals.get(field, 0.0) + float(getattr(estimate, field))
        if estimate.avoided_grams is not None:
            totals["avoided_grams"] = totals.get("avoided_grams", 0.0) + estimate.avoided_grams
        if estimate.gpu_kwh is not None:
            gpu_kwh = (gpu_kwh or 0.0) + estimate.gpu_kwh
        methods.add(estimate.method)
        sources.add(reading.source)
        energy_sources.add(estimate.energy_source)
        intensity_sources.update(intensity.sources)
    if not totals or first_start is None or last_end is None:
        return None
    run_mean, _ = await intensity_over(ctx, region, first_start, last_end)
    combined = SciEstimate(
        energy_kwh=totals["energy_kwh"],
        cpu_kwh=totals["cpu_kwh"],
        memory_kwh=totals["memory_kwh"],
        gpu_kwh=gpu_kwh,
        energy_source=_weakest(energy_sources),
        intensity_source="|".join(sorted(intensity_sources)),
        operational_grams=totals["operational_grams"],
        embodied_grams=totals["embodied_grams"],
        total_grams=totals["total_grams"],
        per_unit_grams=totals["total_grams"] / functional_unit.quantity,
        functional_unit=f"{functional_unit.quantity:g} {functional_unit.name}",
        avoided_grams=totals.get("avoided_grams"),
        method=";".join(sorted(methods)) + f";cpu={'|'.join(sorted(sources))}",
        cpu_core_seconds=totals["cpu_core_seconds"],
        intensity_g_per_kwh=run_mean or 0.0,
    )
    return RunMeasurement(combined, run_mean, "|".join(sorted(sources)))


def _weakest(energy_sources: set[str]) -> str:
    """One energySource for a Job's pods: the least direct any of them had."""
    for kind in ("reservation", "modelled", "measured"):
        if kind in energy_sources:
            return kind
    return "modelled"


def sci_annotations(measurement: RunMeasurement) -> dict[str, str]:
    estimate = measurement.estimate
    values = {
        labels.SCI_GRAMS: estimate.total_grams,
        labels.SCI_PER_UNIT_GRAMS: estimate.per_unit_grams,
        labels.ENERGY_KWH: estimate.energy_kwh,
        labels.OPERATIONAL_GRAMS: estimate.operational_grams,
        labels.EMBODIED_GRAMS: estimate.embodied_grams,
        labels.CPU_KWH: estimate.cpu_kwh,
        labels.MEMORY_KWH: estimate.memory_kwh,
        labels.GPU_KWH: estimate.gpu_kwh,
        labels.CPU_CORE_SECONDS: estimate.cpu_core_seconds,
        labels.AVOIDED_GRAMS: estimate.avoided_grams,
        labels.INTENSITY_RUN_MEAN: measurement.run_mean,
    }
    found = {key: f"{value:.6g}" for key, value in values.items() if value is not None}
    found[labels.ENERGY_SOURCE] = estimate.energy_source
    if estimate.intensity_source:
        found[labels.INTENSITY_SOURCE] = estimate.intensity_source
    return found


def record_metrics(ctx: OperatorContext, namespace: str, estimate: SciEstimate) -> None:
    ctx.metrics.emitted_grams.labels(namespace).inc(estimate.total_grams)
    ctx.metrics.energy_kwh.labels(namespace).inc(estimate.energy_kwh)
    ctx.metrics.run_sci.labels(namespace).observe(estimate.per_unit_grams)
    # Emitted and counterfactual are counted separately, so that their difference (avoided)
    # keeps its sign: a run that holding made dirtier counts against the savings. A run
    # without a counterfactual estimate counts as having avoided nothing.
    avoided = estimate.avoided_grams or 0.0
    ctx.metrics.counterfactual_grams.labels(namespace).inc(max(estimate.total_grams + avoided, 0.0))
