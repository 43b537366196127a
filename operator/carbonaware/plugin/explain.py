"""``explain NAME``: the plan of one job, the forecast over its window drawn in the
terminal, why this window, and which intensity sources were used. Pure: the forecast is
passed in (the command fetches it with the operator's provider settings)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console

from carbonaware.api import display, labels
from carbonaware.api.intensity import IntensityPoint
from carbonaware.plugin.plan import (
    PlanRow,
    clock,
    relative,
    row_of_carbonawarejob,
    row_of_plain_job,
)

BAR_WIDTH = 40
MAX_LINES = 96


def why(body: dict[str, Any]) -> str | None:
    """The message of the condition that says why the job is where it is."""
    conditions = (body.get("status") or {}).get("conditions") or []
    for type_ in ("Failed", "Complete", "Released", "Held"):
        for condition in conditions:
            if condition.get("type") == type_ and condition.get("status") == "True":
                return f"{condition.get('reason')}: {condition.get('message')}"
    events_reason = ((body.get("metadata") or {}).get("annotations") or {}).get(labels.REASON)
    return events_reason


def window_of(body: dict[str, Any], row: PlanRow) -> tuple[datetime | None, timedelta]:
    """The planned run window: its start and the expected run length."""
    schedule = (body.get("spec") or {}).get("schedule") or {}
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    seconds = schedule.get("expectedDurationSeconds") or annotations.get(
        labels.EXPECTED_DURATION_SECONDS
    )
    length = timedelta(seconds=int(seconds)) if seconds else timedelta(hours=1)
    return row.planned_start or row.release_time, length


def bars(
    points: Sequence[IntensityPoint], start: datetime | None, length: timedelta, now: datetime
) -> list[str]:
    """One line per period: time, a bar scaled to the highest value, the value; the periods
    the planned window overlaps marked."""
    if not points:
        return []
    shown = list(points)[:MAX_LINES]
    top = max(p.intensity for p in shown) or 1.0
    lines = []
    for point in shown:
        filled = round(BAR_WIDTH * point.intensity / top)
        in_window = start is not None and point.end > start and point.start < start + length
        mark = " < planned" if in_window else ""
        if point.start <= now < point.end:
            mark += " < now"
        bar = ("#" if in_window else "=") * filled
        lines.append(f"{point.start:%a %H:%M}  {bar:<{BAR_WIDTH}} {point.intensity:>4.0f}{mark}")
    return lines


def render_explain(
    body: dict[str, Any],
    points: Sequence[IntensityPoint],
    forecast_problem: str | None,
    now: datetime,
    console: Console,
) -> None:
    kind = body.get("kind") or "CarbonAwareJob"
    row = row_of_carbonawarejob(body) if kind == "CarbonAwareJob" else row_of_plain_job(body)
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    schedule = (body.get("spec") or {}).get("schedule") or {}
    annotations = meta.get("annotations") or {}
    console.print(f"{kind} {meta.get('namespace')}/{meta.get('name')}", style="bold")
    if row is None:
        state = status.get("state") or annotations.get(labels.STATE) or "finished"
        console.print(f"State: {state} (not held or running: nothing planned)")
        if (reason := why(body)) is not None:
            console.print(f"Why: {reason}", markup=False)
        return
    policy = schedule.get("policy") or annotations.get(labels.POLICY) or "Forecast"
    start, length = window_of(body, row)
    console.print(f"State: {row.state}" + (f" ({row.reason})" if row.reason else ""))
    console.print(f"Region: {row.region or '-'}   Policy: {policy}   "
                  f"Expected run: {display.duration(length)}")  # fmt: skip
    label = "Planned start" if row.state == "Held" else "Released"
    console.print(f"{label}: {clock(start)} ({relative(start, now)})   "
                  f"Latest start: {clock(row.latest_start)}")  # fmt: skip
    saving = row.saving_percent
    console.print(
        f"Expected {display.duration(length)} window mean: "
        f"{display.intensity(row.expected_window_mean) or '-'}   Intensity now: "
        f"{display.intensity(row.intensity_now) or '-'}"
        + (f"   Expected saving: {saving:.0f}%" if saving is not None else "")
    )
    if (reason := why(body)) is not None:
        console.print(f"Why: {reason}", markup=False)
    operator_source = (status.get("intensity") or {}).get("source")
    forecast_sources = sorted({p.source for p in points})
    console.print(
        f"Sources: the operator's plan used {operator_source or 'no recorded source'}; the "
        f"forecast below is from {', '.join(forecast_sources) or 'no source'}, fetched now."
    )
    if forecast_problem:
        console.print(f"Forecast unavailable: {forecast_problem}", markup=False)
    lines = bars(points, start, length, now)
    if lines:
        console.print("Forecast (gCO2e/kWh; # = planned window):")
        for line in lines:
            console.print(line, markup=False, highlight=False)
