"""``carbonaware forecast``: the next hours of intensity for a region and the best window.

Builds a :class:`ForecastReport` from any provider (normally the configured chain) and
prints it as a rich table on a terminal or as plain tab-separated lines when piped. The
"best window" is the start, at or after now, of the ``duration``-long window with the
lowest time-weighted mean intensity over the forecast; it is for display and does not
replace the scheduling policy.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from rich.console import Console
from rich.table import Table

from carbonaware.api.durations import format_duration
from carbonaware.api.intensity import IntensityPoint
from carbonaware.config import OperatorSettings
from carbonaware.errors import CarbonAwareError, ConfigError
from carbonaware.providers.base import Clock, Provider, as_utc, floor_time, utc_now
from carbonaware.providers.chain import ProviderChain
from carbonaware.providers.factory import build_provider

DEFAULT_HORIZON = timedelta(hours=48)
_TIME = "%Y-%m-%d %H:%M"


@dataclass(frozen=True, slots=True)
class Window:
    """A candidate run window and its time-weighted mean intensity."""

    start: datetime
    end: datetime
    mean_intensity: float


@dataclass(frozen=True, slots=True)
class ForecastReport:
    region: str
    provider: str
    generated_at: datetime
    duration: timedelta
    points: tuple[IntensityPoint, ...]
    best: Window | None
    attributions: tuple[str, ...]


def window_mean(points: Sequence[IntensityPoint], start: datetime, end: datetime) -> float | None:
    """Time-weighted mean over ``[start, end)``, or None if the points leave a gap in it."""
    covered = start
    weighted = 0.0
    for point in points:
        if point.end <= covered:
            continue
        if point.start > covered or covered >= end:
            break
        part_end = min(point.end, end)
        weighted += point.intensity * (part_end - covered).total_seconds()
        covered = part_end
    if covered < end:
        return None
    return weighted / (end - start).total_seconds()


def best_window(
    points: Sequence[IntensityPoint], duration: timedelta, *, earliest: datetime
) -> Window | None:
    """The lowest-mean window of ``duration`` starting at ``earliest`` or a later period
    start, fully covered by ``points`` (sorted, as providers return them). Ties go to the
    earliest start."""
    if duration <= timedelta(0):
        raise ValueError("duration must be positive")
    starts = [earliest] + [p.start for p in points if p.start > earliest]
    best: Window | None = None
    for start in starts:
        mean = window_mean(points, start, start + duration)
        if mean is not None and (best is None or mean < best.mean_intensity - 1e-9):
            best = Window(start, start + duration, mean)
    return best


def attributions_of(provider: Provider, points: Sequence[IntensityPoint]) -> tuple[str, ...]:
    """Credits for the data owners whose values appear in ``points``."""
    members = provider.providers if isinstance(provider, ProviderChain) else [provider]
    used = {point.source for point in points}
    credits: list[str] = []
    for member in members:
        credit = getattr(member, "attribution", None)
        if member.name in used and isinstance(credit, str) and credit not in credits:
            credits.append(credit)
    return tuple(credits)


async def build_report(
    provider: Provider,
    region: str,
    *,
    duration: timedelta,
    horizon: timedelta = DEFAULT_HORIZON,
    now: Clock = utc_now,
) -> ForecastReport:
    moment = as_utc(now())
    first = floor_time(moment, timedelta(minutes=30))
    points = await provider.forecast(region, first, first + horizon)
    return ForecastReport(
        region=region,
        provider=provider.name,
        generated_at=moment,
        duration=duration,
        points=tuple(points),
        best=best_window(points, duration, earliest=moment),
        attributions=attributions_of(provider, points),
    )


def render_report(report: ForecastReport, console: Console) -> None:
    """A rich table on a terminal; tab-separated lines otherwise."""
    if not console.is_terminal:
        _render_plain(report, console.file)
        return
    table = Table(title=f"Grid intensity for {report.region} (UTC)")
    for column in ("start", "end", "gCO2e/kWh", "index", "source"):
        table.add_column(column, justify="right" if column == "gCO2e/kWh" else "left")
    for point in report.points:
        in_best = (
            report.best is not None
            and report.best.start < point.end
            and point.start < report.best.end
        )
        table.add_row(*_cells(point), style="bold green" if in_best else None)
    console.print(table)
    console.print(_best_line(report))
    for credit in report.attributions:
        console.print(f"Data: {credit}", style="dim")


def _render_plain(report: ForecastReport, out: IO[str]) -> None:
    out.write("start\tend\tgCO2e/kWh\tindex\tsource\n")
    for point in report.points:
        out.write("\t".join(_cells(point)) + "\n")
    out.write(_best_line(report) + "\n")
    for credit in report.attributions:
        out.write(f"Data: {credit}\n")


def _cells(point: IntensityPoint) -> tuple[str, str, str, str, str]:
    flags = [flag for flag, on in (("forecast", point.is_forecast), ("stale", point.stale)) if on]
    source = point.source + (f" ({', '.join(flags)})" if flags else "")
    return (
        point.start.strftime(_TIME),
        point.end.strftime(_TIME),
        f"{point.intensity:.0f}",
        point.index.api_name if point.index is not None else "-",
        source,
    )


def _best_line(report: ForecastReport) -> str:
    span = format_duration(report.duration)
    if report.best is None:
        return f"Best {span} window: none (the forecast does not cover {span} from now)"
    best = report.best
    return (
        f"Best {span} window: {best.start.strftime(_TIME)} to {best.end.strftime(_TIME)} UTC, "
        f"mean {best.mean_intensity:.0f} gCO2e/kWh"
    )


def run_forecast_command(
    settings: OperatorSettings,
    *,
    region: str,
    duration: timedelta,
    horizon: timedelta = DEFAULT_HORIZON,
    console: Console | None = None,
    now: Clock = utc_now,
) -> int:
    """Fetch, print, return an exit code (0 ok, 1 provider failure, 2 bad configuration)."""
    out = console or Console(file=sys.stdout)
    errors = Console(file=sys.stderr)

    async def fetch() -> ForecastReport:
        provider = build_provider(settings, clock=now)
        try:
            return await build_report(provider, region, duration=duration, horizon=horizon, now=now)
        finally:
            await provider.aclose()

    try:
        report = asyncio.run(fetch())
    except CarbonAwareError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2 if isinstance(exc, ConfigError) else 1
    render_report(report, out)
    return 0
