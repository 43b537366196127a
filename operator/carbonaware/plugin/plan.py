"""What is waiting and running, until when, and what it should save: rows and tables.

Pure: objects in (CarbonAwareJobs and managed plain Jobs as the API returns them), rows out;
``now`` is an argument so the same inputs always print the same table (golden tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from carbonaware.api import display, labels
from carbonaware.api.conditions import JobState

ACTIVE = (
    JobState.HELD.value,
    JobState.RELEASED.value,
    JobState.RUNNING.value,
    JobState.PAUSED.value,
)


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PlanRow:
    """One held or running job as ``plan`` shows it."""

    kind: str  # CarbonAwareJob | Job
    namespace: str
    name: str
    state: str
    reason: str | None
    region: str | None
    planned_start: datetime | None
    release_time: datetime | None
    latest_start: datetime | None
    expected_window_mean: float | None
    intensity_now: float | None

    @property
    def saving_percent(self) -> float | None:
        """How much lower the planned window's mean is than the intensity now (operational
        emissions scale with intensity for the same energy)."""
        if self.expected_window_mean is None or not self.intensity_now:
            return None
        return 100.0 * (self.intensity_now - self.expected_window_mean) / self.intensity_now

    def to_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None

        saving = self.saving_percent
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "region": self.region,
            "plannedStartTime": when(self.planned_start),
            "releaseTime": when(self.release_time),
            "latestStartTime": when(self.latest_start),
            "expectedWindowMean": self.expected_window_mean,
            "intensityNow": self.intensity_now,
            "expectedSavingPercent": round(saving, 1) if saving is not None else None,
        }


def condition_reason(status: dict[str, Any], type_: str) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return str(condition.get("reason"))
    return None


def row_of_carbonawarejob(body: dict[str, Any]) -> PlanRow | None:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    state = status.get("state") or JobState.HELD.value
    if state not in ACTIVE:
        return None
    intensity = status.get("intensity") or {}
    held = state == JobState.HELD.value
    return PlanRow(
        kind="CarbonAwareJob",
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        state=state,
        reason=condition_reason(status, "Held" if held else "Released")
        if state != JobState.PAUSED.value
        else condition_reason(status, "Paused"),
        region=status.get("region") or (body.get("spec") or {}).get("region"),
        planned_start=parse_time(status.get("plannedStartTime")),
        release_time=parse_time(status.get("releaseTime")),
        latest_start=parse_time(status.get("latestStartTime")),
        expected_window_mean=number(intensity.get("plannedWindowMean")) if held else None,
        intensity_now=number(intensity.get("current" if held else "atRelease")),
    )


def row_of_plain_job(body: dict[str, Any]) -> PlanRow | None:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    state = annotations.get(labels.STATE) or JobState.HELD.value
    if state not in ACTIVE:
        return None
    finished = any(
        c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
        for c in (body.get("status") or {}).get("conditions") or []
    )
    if finished:
        return None
    released = parse_time(annotations.get(labels.RELEASE_TIME))
    active = (body.get("status") or {}).get("active")
    if released is not None and active and state != JobState.PAUSED.value:
        state = JobState.RUNNING.value
    return PlanRow(
        kind="Job",
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        state=state,
        reason=annotations.get(labels.REASON),
        region=annotations.get(labels.REGION),
        planned_start=parse_time(annotations.get(labels.PLANNED_START_TIME)),
        release_time=released,
        latest_start=parse_time(annotations.get(labels.LATEST_START_TIME)),
        expected_window_mean=None,
        intensity_now=number(annotations.get(labels.INTENSITY_AT_RELEASE)),
    )


def plan_rows(
    carbonawarejobs: Iterable[dict[str, Any]], jobs: Iterable[dict[str, Any]]
) -> list[PlanRow]:
    """Held and running work, soonest planned (or earliest released) first."""
    rows = [r for body in carbonawarejobs if (r := row_of_carbonawarejob(body)) is not None]
    rows += [r for body in jobs if (r := row_of_plain_job(body)) is not None]

    def order(row: PlanRow) -> tuple[int, str, str, str]:
        moment = row.planned_start or row.release_time
        return (0 if row.state != JobState.HELD.value else 1,
                moment.isoformat() if moment else "~", row.namespace, row.name)  # fmt: skip

    return sorted(rows, key=order)


def relative(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    if moment >= now:
        return display.relative_start(moment, now) or "-"
    return f"{display.duration(now - moment)} ago"


def clock(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def plan_table(rows: list[PlanRow], now: datetime) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAMESPACE", "NAME", "KIND", "STATE", "START", "LATEST START",
                   "EXPECTED", "NOW", "SAVING"):  # fmt: skip
        numeric = column in ("EXPECTED", "NOW", "SAVING")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        start = row.planned_start if row.state == JobState.HELD.value else row.release_time
        when = relative(start, now)
        if row.state == JobState.HELD.value and start is not None:
            when = f"{clock(start)} ({when})"
        elif start is not None:
            when = f"released {when}"
        saving = row.saving_percent
        table.add_row(
            row.namespace,
            row.name,
            "caj" if row.kind == "CarbonAwareJob" else "job",
            f"{row.state} ({row.reason})" if row.reason else row.state,
            when,
            clock(row.latest_start),
            display.intensity(row.expected_window_mean) or "-",
            display.intensity(row.intensity_now) or "-",
            f"{saving:.0f}%" if saving is not None else "-",
        )
    return table


def render_plan(rows: list[PlanRow], now: datetime, console: Console) -> None:
    if not rows:
        console.print("No held or running work.")
        return
    console.print(plan_table(rows, now))
    console.print(
        "EXPECTED: mean intensity forecast over the planned run window; NOW: intensity now "
        "(at release, once released); SAVING: how much lower EXPECTED is than NOW.",
        style="dim",
    )
