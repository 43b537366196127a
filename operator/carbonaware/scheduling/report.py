"""Text forms of a simulation result: summary rows, plain text, JSON, the decisions CSV.

Pure formatting shared by ``carbonaware simulate`` and ``bench/scheduling.py``; the callers do
the writing. Every form takes the result of one region (:class:`SimulationResult`), of
several (:class:`RegionsResult`) or of interruptible work (:class:`InterruptibleResult`).
Data attribution follows the licences of the shipped traces
(``carbonaware/data/traces/README.md``); the shipped traces and the names ``--trace`` and
``--regions`` know them by are in :data:`BUILTIN_TRACES`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from carbonaware import data
from carbonaware.scheduling.interruptsim import InterruptibleResult
from carbonaware.scheduling.regions import RegionsResult
from carbonaware.scheduling.simulate import SimulationResult, iso_utc

AnyResult = SimulationResult | RegionsResult | InterruptibleResult

UNIT = "gCO2e/kWh"


@dataclass(frozen=True, slots=True)
class BuiltinTrace:
    """A trace shipped with the package, its column names and whom to credit.

    ``region`` is the grid's zone name, which ``--regions`` accepts as well as ``key``.
    """

    key: str
    region: str
    path: Path
    time_column: str
    actual_column: str
    forecast_column: str | None
    index_column: str | None
    attribution: str


BUILTIN_TRACES: dict[str, BuiltinTrace] = {
    "gb-2024": BuiltinTrace(
        key="gb-2024",
        region="GB",
        path=data.GB_2024,
        time_column="Datetime (UTC)",
        actual_column="Actual Carbon Intensity (gCO2/kWh)",
        forecast_column="Forecast Carbon Intensity (gCO2/kWh)",
        index_column="Index",
        attribution="GB 2024 data: Carbon Intensity API, NESO (CC BY 4.0)",
    ),
    "de-2023": BuiltinTrace(
        key="de-2023",
        region="DE",
        path=data.DE_2023,
        time_column="Datetime (UTC)",
        actual_column="Carbon Intensity gCO₂eq/kWh (LCA)",
        forecast_column=None,
        index_column=None,
        attribution="DE 2023 data: Electricity Maps (ODbL)",
    ),
    "pjm-2023": BuiltinTrace(
        key="pjm-2023",
        region="US-MIDA-PJM",
        path=data.PJM_2023,
        time_column="Datetime (UTC)",
        actual_column="Carbon Intensity gCO₂eq/kWh (LCA)",
        forecast_column=None,
        index_column=None,
        attribution="US-MIDA-PJM 2023 data: Electricity Maps (ODbL)",
    ),
    "in-we-2023": BuiltinTrace(
        key="in-we-2023",
        region="IN-WE",
        path=data.IN_WE_2023,
        time_column="Datetime (UTC)",
        actual_column="Carbon Intensity gCO₂eq/kWh (LCA)",
        forecast_column=None,
        index_column=None,
        attribution="IN-WE 2023 data: Electricity Maps (ODbL)",
    ),
}


def builtin_trace(name: str) -> BuiltinTrace | None:
    """The shipped trace called ``name`` (its key or its region, any case), if any."""
    wanted = name.strip().lower()
    for trace in BUILTIN_TRACES.values():
        if wanted in (trace.key, trace.region.lower()):
            return trace
    return None


@dataclass(frozen=True, slots=True)
class RegionSource:
    """One region of ``--regions``: its name, its trace file, and the shipped trace if any."""

    name: str
    path: Path
    builtin: BuiltinTrace | None


def parse_regions(text: str) -> list[RegionSource]:
    """``--regions``: comma-separated shipped names (``DE``, ``US-MIDA-PJM``, ``IN-WE``,
    ``GB``, or keys such as ``de-2023``) or ``NAME=FILE.csv``. Raises ValueError."""
    sources: list[RegionSource] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, equals, file = item.partition("=")
        if equals:
            if not name.strip() or not file.strip():
                raise ValueError(f"--regions: {item!r} must be NAME=FILE.csv")
            sources.append(RegionSource(name=name.strip(), path=Path(file.strip()), builtin=None))
            continue
        builtin = builtin_trace(item)
        if builtin is None:
            shipped = ", ".join(t.region for t in BUILTIN_TRACES.values())
            raise ValueError(
                f"--regions: unknown region {item!r}; shipped: {shipped}; "
                "for any other trace give NAME=FILE.csv"
            )
        sources.append(RegionSource(name=builtin.region, path=builtin.path, builtin=builtin))
    if not sources:
        raise ValueError("--regions needs at least one region")
    return sources


def attribution_for(path: Path) -> str | None:
    """The credit line for a shipped trace file, None for other files."""
    for trace in BUILTIN_TRACES.values():
        if path.name == trace.path.name:
            return trace.attribution
    return None


def attribution_for_all(paths: Sequence[Path]) -> str | None:
    """The credit lines of the shipped trace files among ``paths``, joined; None if none."""
    lines = [line for line in map(attribution_for, paths) if line is not None]
    return "; ".join(dict.fromkeys(lines)) or None


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f} %"


def _grams(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def summary_rows(result: AnyResult) -> list[tuple[str, str]]:
    """(label, value) rows in the order the CLI prints them."""
    if isinstance(result, RegionsResult):
        return _region_rows(result)
    if isinstance(result, InterruptibleResult):
        return _interruptible_rows(result)
    settings = result.settings
    hours = result.mean_delay.total_seconds() / 3600
    threshold = ""
    if settings.max_intensity is not None:
        threshold += f", max intensity {settings.max_intensity:g}"
    if settings.max_index is not None:
        threshold += f", max index {settings.max_index.api_name}"
    forecast = _forecast_text(settings.forecast.value, settings.correct_forecast)
    return [
        ("policy", f"{settings.policy.value}{threshold} (forecast: {forecast})"),
        (
            "jobs",
            f"{result.jobs} ({result.skipped} skipped: window crosses a gap in the trace)"
            if result.skipped
            else str(result.jobs),
        ),
        ("deadline misses", str(result.deadline_misses)),
        ("mean delay", f"{hours:.2f} h"),
        ("mean intensity immediate", f"{_grams(result.immediate_mean)} {UNIT}"),
        ("mean intensity policy", f"{_grams(result.policy_mean)} {UNIT}"),
        ("mean intensity one-shot", f"{_grams(result.one_shot_mean)} {UNIT}"),
        ("mean intensity oracle", f"{_grams(result.oracle_mean)} {UNIT}"),
        ("savings vs immediate", _percent(result.savings)),
        ("one-shot savings", _percent(result.one_shot_savings)),
        ("oracle savings", _percent(result.oracle_savings)),
        ("captured share", _percent(result.captured_share)),
        ("one-shot captured share", _percent(result.one_shot_captured_share)),
    ]


def _forecast_text(mode: str, corrected: bool) -> str:
    if mode == "column":
        return mode + (", corrected" if corrected else ", as published")
    return mode


def _region_rows(result: RegionsResult) -> list[tuple[str, str]]:
    settings = result.settings
    home = result.regions[0]
    forecasts = ", ".join(
        f"{name} {_forecast_text(mode.value, settings.correct_forecast)}"
        for name, mode in zip(result.regions, result.forecasts, strict=True)
    )
    placed = ", ".join(f"{name} {count}" for name, count in result.jobs_by_region.items())
    means = result.means
    return [
        ("regions", f"{', '.join(result.regions)} (baseline: {home} at once)"),
        ("policy", f"{settings.policy.value} (forecast: {forecasts})"),
        (
            "jobs",
            f"{result.jobs} ({result.skipped} skipped: window crosses a gap in a trace)"
            if result.skipped
            else str(result.jobs),
        ),
        ("jobs by region", placed),
        ("deadline misses", str(result.deadline_misses)),
        ("mean delay", f"{result.mean_delay.total_seconds() / 3600:.2f} h"),
        (f"mean intensity {home} at once", f"{_grams(means['immediate'])} {UNIT}"),
        ("mean intensity policy", f"{_grams(means['policy'])} {UNIT}"),
        ("mean intensity oracle", f"{_grams(means['oracle'])} {UNIT}"),
        (f"savings vs {home} at once", _percent(result.savings)),
        ("one-shot savings", _percent(result.saving_of("one_shot"))),
        (f"{home} alone, same policy", _percent(result.saving_of("first_region_policy"))),
        (f"{home} alone, oracle", _percent(result.saving_of("first_region_oracle"))),
        ("best region at once, oracle", _percent(result.saving_of("best_region_now"))),
        ("oracle savings (best region and start)", _percent(result.oracle_savings)),
        ("captured share", _percent(result.captured_share)),
    ]


def _interruptible_rows(result: InterruptibleResult) -> list[tuple[str, str]]:
    settings = result.settings
    rules = result.rules
    limit = "no limit" if rules.max_interruptions is None else str(rules.max_interruptions)
    interruptions = result.interruptions
    shortest = result.shortest_inner_segment
    means = result.means
    return [
        (
            "policy",
            f"{settings.policy.value}, interruptible: min run {_hours(rules.min_run)}, "
            f"max interruptions {limit}, resume overhead {_hours(rules.resume_overhead)} "
            f"(forecast: {_forecast_text(settings.forecast.value, settings.correct_forecast)})",
        ),
        (
            "jobs",
            f"{result.jobs} ({result.skipped} skipped: window crosses a gap in the trace)"
            if result.skipped
            else str(result.jobs),
        ),
        ("deadline misses", str(result.deadline_misses)),
        (
            "interruptions per job",
            f"mean {sum(interruptions) / len(interruptions):.2f}, max {max(interruptions)}"
            if interruptions
            else "n/a",
        ),
        ("shortest segment before a pause", _hours(shortest) if shortest is not None else "n/a"),
        ("mean finish delay", _hours(result.mean_finish_delay)),
        ("mean intensity immediate", f"{_grams(means['immediate'])} {UNIT}"),
        ("mean intensity policy", f"{_grams(means['policy'])} {UNIT} per hour of work"),
        ("mean intensity single-start oracle", f"{_grams(means['oracle_single'])} {UNIT}"),
        (
            "mean intensity interruptible oracle",
            f"{_grams(means['oracle_interruptible'])} {UNIT} per hour of work",
        ),
        ("savings vs immediate", _percent(result.savings)),
        ("single-start oracle savings", _percent(result.saving_of("oracle_single"))),
        ("interruptible oracle savings", _percent(result.saving_of("oracle_interruptible"))),
        ("captured share (interruptible oracle)", _percent(result.captured_share)),
    ]


def _hours(duration: timedelta) -> str:
    return f"{duration / timedelta(hours=1):.2f} h"


def render_plain(
    result: AnyResult, *, trace_name: str, attribution: str | None, wall_seconds: float
) -> str:
    """The summary as aligned text lines, for pipes and logs."""
    rows = [("trace", trace_name), *summary_rows(result), ("wall time", f"{wall_seconds:.2f} s")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if attribution:
        lines.append(attribution)
    return "\n".join(lines)


def render_json(
    result: AnyResult, *, trace_name: str, attribution: str | None, wall_seconds: float
) -> str:
    """One JSON object: the summary figures plus trace, attribution and wall time."""
    summary = result.summary()
    summary["trace"] = trace_name
    summary["attribution"] = attribution
    summary["wall_seconds"] = wall_seconds
    return json.dumps(json_safe(summary), sort_keys=True, allow_nan=False)


def json_safe(value: object) -> object:
    """Replace NaN floats (undefined shares) by None, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def decisions_csv(result: AnyResult) -> str:
    """``arrival,latest_start,start`` per job (ISO 8601 UTC), and ``region`` when several
    were simulated; for interruptible work ``arrival,latest_finish,segment_start,
    segment_end`` per run segment: enough to recompute every figure from the traces alone."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if isinstance(result, InterruptibleResult):
        writer.writerow(["arrival", "latest_finish", "segment_start", "segment_end"])
        for job in result.decisions:
            bounds = (iso_utc(job.arrival), iso_utc(job.latest_finish))
            for segment in job.segments:
                writer.writerow([*bounds, iso_utc(segment.start), iso_utc(segment.end)])
        return buffer.getvalue()
    if isinstance(result, RegionsResult):
        writer.writerow(["arrival", "latest_start", "start", "region"])
        for placed in result.decisions:
            times = (placed.arrival, placed.latest_start, placed.start)
            writer.writerow([*map(iso_utc, times), placed.region])
        return buffer.getvalue()
    writer.writerow(["arrival", "latest_start", "start"])
    for outcome in result.decisions:
        writer.writerow(
            [iso_utc(outcome.arrival), iso_utc(outcome.latest_start), iso_utc(outcome.start)]
        )
    return buffer.getvalue()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
