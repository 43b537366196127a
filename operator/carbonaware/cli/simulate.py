"""``carbonaware simulate``: replay a trace and measure what a policy would have saved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carbonaware.cli.app import app
from carbonaware.cli.traces import trace_input


@app.command("simulate")
def simulate_command(
    trace: Annotated[
        str | None,
        typer.Option(
            help="Trace CSV, or a shipped trace: gb-2024 (default), de-2023, pjm-2023, in-we-2023."
        ),
    ] = None,
    regions: Annotated[
        str | None,
        typer.Option(
            help="Choose where as well as when: comma-separated regions read side by side, "
            "shipped (DE, US-MIDA-PJM, IN-WE, GB) or NAME=FILE.csv; savings are against the "
            "first region at once. Instead of --trace."
        ),
    ] = None,
    time_column: Annotated[str | None, typer.Option(help="Column with slot starts.")] = None,
    actual_column: Annotated[str | None, typer.Option(help="Column with actuals.")] = None,
    forecast_column: Annotated[
        str | None, typer.Option(help="Column with the published forecast.")
    ] = None,
    index_column: Annotated[str | None, typer.Option(help="Column with the index band.")] = None,
    forecast: Annotated[
        str | None,
        typer.Option(
            help="column, vintage, perfect, naive, own or blend (the provider's forecast, own "
            "and naive weighted by their recent skill). Default: column if the trace has one, "
            "else own (for each region)."
        ),
    ] = None,
    vintages: Annotated[
        Path | None,
        typer.Option(
            help="Forecasts as published, for --forecast vintage or blend: a CSV of "
            "issued_at,slot_start,value (bench/forecasts.py --vintages-out writes synthetic ones)."
        ),
    ] = None,
    duration: Annotated[str, typer.Option(help="Job length, e.g. 1h.")] = "1h",
    window: Annotated[str, typer.Option(help="Arrival to latest finish, e.g. 24h.")] = "24h",
    arrival_every: Annotated[
        str | None, typer.Option(help="Time between arrivals. Default: one trace step.")
    ] = None,
    policy: Annotated[str, typer.Option(help="Forecast, Threshold or Immediate.")] = "Forecast",
    max_intensity: Annotated[
        float | None, typer.Option(help="Threshold: release at or below this gCO2e/kWh.")
    ] = None,
    max_index: Annotated[
        str | None, typer.Option(help="Threshold: release at or below this index, e.g. low.")
    ] = None,
    horizon: Annotated[str, typer.Option(help="How far ahead the forecast reaches.")] = "48h",
    warmup: Annotated[str, typer.Option(help="History before the first arrival.")] = "1d",
    correction: Annotated[
        bool, typer.Option(help="Correct the column forecast with its recent errors.")
    ] = True,
    interruptible: Annotated[
        bool,
        typer.Option(
            "--interruptible",
            help="Let each job pause in dirty hours and resume in clean ones, finishing by "
            "the end of its window; savings are against running at once, beside the best "
            "single start and the best set of segments (both with perfect foresight).",
        ),
    ] = False,
    min_run: Annotated[
        str | None,
        typer.Option(
            help="Interruptible: shortest run before a pause (the last run of a job may be "
            "shorter). Default: 1h."
        ),
    ] = None,
    resume_overhead: Annotated[
        str | None,
        typer.Option(
            help="Interruptible: extra run time each resume costs (e.g. 5m to reload a "
            "checkpoint), charged like work. Default: 0s."
        ),
    ] = None,
    max_interruptions: Annotated[
        int | None,
        typer.Option(help="Interruptible: most pauses per job. Default: no limit."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    decisions_out: Annotated[
        Path | None,
        typer.Option(
            help="Write arrival,latest_start,start (and region) per job as CSV; with "
            "--interruptible, arrival,latest_finish,segment_start,segment_end per run segment."
        ),
    ] = None,
) -> None:
    """Replay a grid-intensity trace and measure what a policy would have saved."""
    import dataclasses
    import sys
    import time

    from carbonaware.api.carbonawarejob import SchedulePolicy
    from carbonaware.api.durations import parse_duration
    from carbonaware.api.intensity import IntensityIndex
    from carbonaware.errors import ConfigError
    from carbonaware.providers.tracefile import load_trace
    from carbonaware.scheduling import (
        ForecastMode,
        RegionTrace,
        SimulationSettings,
        report,
        simulate,
        simulate_regions,
    )
    from carbonaware.scheduling.interruptsim import InterruptibleSettings, simulate_interruptible
    from carbonaware.scheduling.replay import ProgressCallback

    try:
        rules = None
        if interruptible:
            if regions is not None:
                raise ValueError("--interruptible replays one --trace, not --regions")
            rules = InterruptibleSettings(
                min_run=parse_duration(min_run or "1h"),
                max_interruptions=max_interruptions,
                resume_overhead=parse_duration(resume_overhead or "0s"),
            )
        elif (min_run, resume_overhead, max_interruptions) != (None, None, None):
            raise ValueError(
                "--min-run, --resume-overhead and --max-interruptions need --interruptible"
            )
        settings = SimulationSettings(
            policy=SchedulePolicy(policy.capitalize()),
            forecast=ForecastMode(forecast or "column"),
            duration=parse_duration(duration),
            window=parse_duration(window),
            max_intensity=max_intensity,
            max_index=IntensityIndex.parse(max_index) if max_index else None,
            horizon=parse_duration(horizon),
            warmup=parse_duration(warmup),
            correct_forecast=correction,
        )
        if settings.policy is SchedulePolicy.THRESHOLD and max_intensity is None and not max_index:
            raise ValueError("policy Threshold needs --max-intensity or --max-index")
        if regions is not None and vintages is not None:
            raise ValueError("--vintages go with one --trace, not --regions")
        if regions is not None and trace is not None:
            raise ValueError("give --trace or --regions, not both")
        if regions is not None:
            sources = report.parse_regions(regions)
        else:
            builtin = report.BUILTIN_TRACES.get((trace or "gb-2024").lower())
            path = builtin.path if builtin else Path(trace or "")
            sources = [report.RegionSource(name=path.stem, path=path, builtin=builtin)]
        inputs: list[RegionTrace] = []
        for source in sources:
            shipped = source.builtin
            named = (time_column, actual_column, forecast_column, index_column)
            if regions is not None and shipped is not None:
                named = (None, None, None, None)  # a shipped region keeps its own columns
            loaded = load_trace(
                source.path,
                time_column=named[0] or (shipped.time_column if shipped else "Datetime (UTC)"),
                actual_column=named[1]
                or (shipped.actual_column if shipped else "Actual Carbon Intensity (gCO2/kWh)"),
                forecast_column=named[2] or (shipped.forecast_column if shipped else None),
                index_column=named[3] or (shipped.index_column if shipped else None),
            )
            mode = None
            if forecast is None:
                mode = ForecastMode.COLUMN if loaded.forecast is not None else ForecastMode.OWN
            inputs.append(
                RegionTrace(
                    name=source.name,
                    trace=trace_input(loaded, vintages),
                    forecast=mode,
                )
            )
        settings = dataclasses.replace(
            settings,
            forecast=inputs[0].forecast or settings.forecast,
            arrival_every=parse_duration(arrival_every) if arrival_every else inputs[0].trace.step,
        )

        def run(progress: ProgressCallback | None) -> report.AnyResult:
            if rules is not None:
                return simulate_interruptible(inputs[0].trace, settings, rules, progress=progress)
            if regions is None:
                return simulate(inputs[0].trace, settings, progress=progress)
            return simulate_regions(inputs, settings, progress=progress)

        began = time.perf_counter()
        if sys.stderr.isatty() and not as_json:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("simulating", total=None)
                result = run(lambda done, total: bar.update(task, completed=done, total=total))
        else:
            result = run(None)
        wall = time.perf_counter() - began
    except (ValueError, ConfigError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    paths = [source.path for source in sources]
    attribution = report.attribution_for_all(paths)
    trace_name = ",".join(path.name for path in paths)
    if decisions_out is not None:
        decisions_out.write_text(report.decisions_csv(result), encoding="utf-8")
    if as_json:
        typer.echo(
            report.render_json(
                result, trace_name=trace_name, attribution=attribution, wall_seconds=wall
            )
        )
    elif sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table("", "", title=f"Simulation of {trace_name}", show_header=False)
        for label, value in report.summary_rows(result):
            table.add_row(label, value)
        table.add_row("wall time", f"{wall:.2f} s")
        console = Console()
        console.print(table)
        if attribution:
            console.print(attribution, highlight=False)
    else:
        typer.echo(
            report.render_plain(
                result, trace_name=trace_name, attribution=attribution, wall_seconds=wall
            )
        )
