"""``carbonaware forecast``: the forecast of a region, or ``--backtest`` of the recent days."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from carbonaware.cli.app import app
from carbonaware.cli.traces import trace_input

if TYPE_CHECKING:
    from carbonaware.config import OperatorSettings


@app.command("forecast")
def forecast_command(
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            "-p",
            help="Provider or comma-separated chain: ukci, electricitymaps, watttime, static, "
            "trace. Default: CARBONAWARE_PROVIDERS.",
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            "-r",
            help="Region key, e.g. GB, GB-13, GB-RG10, DE. Default: CARBONAWARE_DEFAULT_REGION.",
        ),
    ] = None,
    duration: Annotated[
        str, typer.Option("--duration", "-d", help="Length of the window to place: 30m, 2h, 1h30m.")
    ] = "1h",
    horizon: Annotated[str, typer.Option("--horizon", help="How far ahead to show.")] = "48h",
    trace_path: Annotated[
        Path | None, typer.Option("--trace-path", help="CSV replayed by the trace provider.")
    ] = None,
    ukci_base_url: Annotated[
        str | None, typer.Option("--ukci-base-url", help="Carbon Intensity API base URL.")
    ] = None,
    electricitymaps_base_url: Annotated[
        str | None, typer.Option("--electricitymaps-base-url", help="Electricity Maps base URL.")
    ] = None,
    watttime_base_url: Annotated[
        str | None, typer.Option("--watttime-base-url", help="WattTime base URL.")
    ] = None,
    backtest: Annotated[
        bool,
        typer.Option(
            "--backtest",
            help="Instead: replay the trace provider's last --days (its CSV and vintages) and "
            "print each forecast source's skill by lead and what the blend would have done.",
        ),
    ] = False,
    days: Annotated[int, typer.Option(help="--backtest: days replayed.", min=1)] = 14,
    until: Annotated[
        str | None,
        typer.Option(
            help="--backtest: end of the replayed days (ISO time in the trace). Default: the "
            "trace instant the trace provider serves now."
        ),
    ] = None,
    vintages_path: Annotated[
        Path | None, typer.Option("--vintages-path", help="Forecasts as published (CSV).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="--backtest: print JSON.")] = False,
) -> None:
    """Show the grid-intensity forecast for a region and its lowest-carbon window."""
    from carbonaware.api.durations import parse_duration
    from carbonaware.config import OperatorSettings
    from carbonaware.providers.report import run_forecast_command

    try:
        window = parse_duration(duration)
        ahead = parse_duration(horizon)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if window.total_seconds() <= 0 or ahead.total_seconds() <= 0:
        raise typer.BadParameter("--duration and --horizon must be longer than zero")
    settings = OperatorSettings()
    overrides = {
        "providers": provider,
        "trace_path": str(trace_path) if trace_path is not None else None,
        "ukci_base_url": ukci_base_url,
        "electricitymaps_base_url": electricitymaps_base_url,
        "watttime_base_url": watttime_base_url,
        "trace_vintages_path": str(vintages_path) if vintages_path is not None else None,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if backtest:
        _backtest(settings, days=days, until=until, as_json=as_json)
        return
    code = run_forecast_command(
        settings, region=region or settings.default_region, duration=window, horizon=ahead
    )
    if code:
        raise typer.Exit(code=code)


def _backtest(settings: OperatorSettings, *, days: int, until: str | None, as_json: bool) -> None:
    """``forecast --backtest``: the trace provider's data, replayed (scheduling.backtest)."""
    import json

    from rich.console import Console
    from rich.table import Table

    from carbonaware.errors import ConfigError
    from carbonaware.providers.base import utc_now
    from carbonaware.providers.factory import configured_trace, trace_attribution
    from carbonaware.providers.trace import TraceProvider
    from carbonaware.providers.tracefile import parse_time
    from carbonaware.scheduling.backtest import backtest

    if "trace" not in [name.strip() for name in settings.providers.split(",")]:
        raise typer.BadParameter(
            "the backtest replays forecasts as they were published, which live APIs do not "
            "serve afterwards: use --provider trace with --trace-path (your provider's history "
            "as CSV) and --vintages-path"
        )
    try:
        path, trace = configured_trace(settings)
        provider = TraceProvider(trace, shift_to_now=settings.trace_shift_to_now)
        end = parse_time(until) if until else provider.trace_time(utc_now())
        result = backtest(
            trace_input(trace, settings.trace_vintages_path),
            end or trace.starts[-1] + trace.step,
            days=days,
        )
    except (ValueError, ConfigError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    attribution = trace_attribution(path)
    if as_json:
        doc = {"trace": path.name, "attribution": attribution, **result.as_dict()}
        typer.echo(json.dumps(doc, indent=2))
        return
    console = Console(soft_wrap=True)
    buckets = list(dict.fromkeys(row.bucket for row in result.skill if row.samples))
    console.print(
        f"Backtest of {path.name}: {result.days} days of arrivals from "
        f"{result.start:%Y-%m-%d %H:%M}, the last window ending {result.until:%Y-%m-%d %H:%M}"
        " (trace time)",
        highlight=False,
    )
    table = Table("source", *buckets, title="MAE g (rank correlation) by lead")
    for source in dict.fromkeys(row.source for row in result.skill):
        cells = {row.bucket: row for row in result.skill if row.source == source}
        table.add_row(
            source,
            *(
                f"{cells[b].mae:.1f} ({cells[b].rank_correlation:.2f})"
                if cells[b].mae == cells[b].mae
                else "-"
                for b in buckets
            ),
        )
    console.print(table)
    console.print(f"The blend trusts: {result.trusted}", highlight=False)
    for outcome in result.outcomes:
        console.print(
            f"1 h jobs in 24 h windows planned on {outcome.forecast}: "
            f"{outcome.captured_share * 100:.1f} % of the oracle's saving captured, "
            f"{outcome.jobs} jobs, {outcome.deadline_misses} deadline misses",
            highlight=False,
        )
    if attribution:
        console.print(attribution, highlight=False)
