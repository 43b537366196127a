"""Text forms of a simulation result: summary rows, plain text, JSON, the decisions CSV.

Pure formatting shared by ``carbonaware simulate`` and ``bench/scheduling.py``; the callers do
the writing. Data attribution follows the licences of the shipped traces
(``carbonaware/data/traces/README.md``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from carbonaware import data
from carbonaware.scheduling.simulate import SimulationResult, iso_utc

UNIT = "gCO2e/kWh"


@dataclass(frozen=True, slots=True)
class BuiltinTrace:
    """A trace shipped with the package, its column names and whom to credit."""

    key: str
    path: Path
    time_column: str
    actual_column: str
    forecast_column: str | None
    index_column: str | None
    attribution: str


BUILTIN_TRACES: dict[str, BuiltinTrace] = {
    "gb-2024": BuiltinTrace(
        key="gb-2024",
        path=data.GB_2024,
        time_column="Datetime (UTC)",
        actual_column="Actual Carbon Intensity (gCO2/kWh)",
        forecast_column="Forecast Carbon Intensity (gCO2/kWh)",
        index_column="Index",
        attribution="GB 2024 data: Carbon Intensity API, NESO (CC BY 4.0)",
    ),
    "de-2023": BuiltinTrace(
        key="de-2023",
        path=data.DE_2023,
        time_column="Datetime (UTC)",
        actual_column="Carbon Intensity gCO₂eq/kWh (LCA)",
        forecast_column=None,
        index_column=None,
        attribution="DE 2023 data: Electricity Maps (ODbL)",
    ),
}


def attribution_for(path: Path) -> str | None:
    """The credit line for a shipped trace file, None for other files."""
    for trace in BUILTIN_TRACES.values():
        if path.name == trace.path.name:
            return trace.attribution
    return None


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f} %"


def _grams(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def summary_rows(result: SimulationResult) -> list[tuple[str, str]]:
    """(label, value) rows in the order the CLI prints them."""
    settings = result.settings
    hours = result.mean_delay.total_seconds() / 3600
    threshold = ""
    if settings.max_intensity is not None:
        threshold += f", max intensity {settings.max_intensity:g}"
    if settings.max_index is not None:
        threshold += f", max index {settings.max_index.api_name}"
    forecast = settings.forecast.value
    if forecast == "column":
        forecast += ", corrected" if settings.correct_forecast else ", as published"
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


def render_plain(
    result: SimulationResult, *, trace_name: str, attribution: str | None, wall_seconds: float
) -> str:
    """The summary as aligned text lines, for pipes and logs."""
    rows = [("trace", trace_name), *summary_rows(result), ("wall time", f"{wall_seconds:.2f} s")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label.ljust(width)}  {value}" for label, value in rows]
    if attribution:
        lines.append(attribution)
    return "\n".join(lines)


def render_json(
    result: SimulationResult, *, trace_name: str, attribution: str | None, wall_seconds: float
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


def decisions_csv(result: SimulationResult) -> str:
    """``arrival,latest_start,start`` per job (ISO 8601 UTC), enough to recompute every
    figure from the trace alone."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
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
