"""Command-line entry points: ``carbonaware run | forecast | simulate | sci | runner``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from carbonaware.providers.tracefile import Trace
    from carbonaware.scheduling import TraceInput

app = typer.Typer(
    name="carbonaware",
    help="Carbon-aware batch scheduling for Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _commands() -> None:
    """Carbon-aware batch scheduling for Kubernetes."""


@app.command("run")
def run_command(
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Watch only this namespace (repeatable). Default: CARBONAWARE_NAMESPACE, "
            "else every namespace.",
        ),
    ] = None,
    peering: Annotated[
        str | None,
        typer.Option(help="kopf peering object for several replicas. Default: standalone."),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Peering priority; the highest live replica acts.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the operator: watch CarbonAwareJobs, ServerTargets and managed Jobs."""
    import random

    from carbonaware.config import OperatorSettings
    from carbonaware.handlers.operator import run_operator

    settings = OperatorSettings()
    namespaces = list(namespace or ([settings.namespace] if settings.namespace else []))
    peering_name = peering or settings.peering_name
    chosen = priority if priority is not None else settings.peering_priority
    if chosen is None:
        # Replicas of one Deployment must differ, or kopf lets them all act at once.
        chosen = random.randint(1, 2**31 - 1) if peering_name else 0
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    run_operator(
        settings=settings,
        namespaces=namespaces,
        peering=peering_name,
        priority=chosen,
        liveness_endpoint=liveness,
        verbose=verbose,
    )


@app.command("sci")
def sci_command(
    file: Annotated[Path, typer.Argument(help="Boundary YAML (see docs/sci.md, examples/sci/).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    boavizta_url: Annotated[
        str | None,
        typer.Option(
            help="BoaviztAPI base URL for instance figures (tables as fallback). "
            "Default: CARBONAWARE_BOAVIZTA_URL.",
            envvar="CARBONAWARE_BOAVIZTA_URL",
        ),
    ] = None,
) -> None:
    """Print the Software Carbon Intensity of a software boundary described in YAML."""
    import json
    import sys

    from carbonaware.errors import SpecError
    from carbonaware.sci import build_report, evaluate_boundary, parse_boundary, to_json

    try:
        text = file.read_text(encoding="utf-8")
        boundary = parse_boundary(text, source=str(file))
        catalog = {}
        if boavizta_url:
            from carbonaware.machinedata.boavizta import fetch_catalog

            catalog = fetch_catalog(boavizta_url, boundary)
        result = evaluate_boundary(boundary, catalog)
    except OSError as exc:
        typer.echo(f"{file}: cannot read: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=2) from exc
    except SpecError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    if as_json:
        typer.echo(json.dumps(to_json(result), indent=2))
        return
    report = build_report(result)
    if not sys.stdout.isatty():
        from carbonaware.sci import render_plain

        typer.echo(render_plain(report))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(*report.headers, title=report.title)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    for line in report.footer:
        console.print(line)
    for breakdown in report.breakdowns:
        extra = Table(*breakdown.headers, title=breakdown.title)
        for row in breakdown.rows:
            extra.add_row(*row)
        console.print(extra)


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


def _trace_input(loaded: Trace, vintages: str | Path | None) -> TraceInput:
    """A loaded trace (and its vintages' CSV, if any) as the simulator takes it."""
    from carbonaware.providers.tracefile import load_vintages
    from carbonaware.scheduling import TraceInput

    return TraceInput(
        starts=loaded.starts,
        step=loaded.step,
        actual=loaded.actual,
        forecast=loaded.forecast,
        index=loaded.index,
        vintages=load_vintages(vintages) if vintages else None,
    )


def _backtest(settings: Any, *, days: int, until: str | None, as_json: bool) -> None:
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
            _trace_input(trace, settings.trace_vintages_path),
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
                    trace=_trace_input(loaded, vintages),
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


runner_app = typer.Typer(
    name="runner",
    help="Entry points of the runner pods the operator creates.",
    no_args_is_help=True,
)
app.add_typer(runner_app, name="runner")


@runner_app.command("ssh")
def runner_ssh_command(
    host: Annotated[str, typer.Option(help="Server DNS name or IP address.")],
    user: Annotated[str, typer.Option(help="Login name on the server.")],
    key_file: Annotated[
        Path,
        typer.Option(
            help="Private key file (the mounted Secret).", envvar="CARBONAWARE_SSH_KEY_FILE"
        ),
    ],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
    known_hosts: Annotated[
        str | None,
        typer.Option(help="OpenSSH known_hosts lines.", envvar="CARBONAWARE_SSH_KNOWN_HOSTS"),
    ] = None,
    known_hosts_file: Annotated[
        Path | None, typer.Option(help="File with OpenSSH known_hosts lines.")
    ] = None,
    host_key_policy: Annotated[
        str, typer.Option(help="Strict (check against known_hosts) or AcceptAny.")
    ] = "Strict",
    working_dir: Annotated[
        str | None, typer.Option(help="Directory on the server to run in (default: home).")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(help="Shell command line to run.", envvar="CARBONAWARE_SSH_COMMAND"),
    ] = None,
    script: Annotated[
        str | None, typer.Option(help="Script text to run.", envvar="CARBONAWARE_SSH_SCRIPT")
    ] = None,
    script_file: Annotated[Path | None, typer.Option(help="File holding the script.")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="NAME=VALUE for the job; repeatable.")
    ] = None,
    env_json: Annotated[
        str | None,
        typer.Option(
            help='Job env as JSON [{"name":..,"value":..}] or {"NAME": "value"}.',
            envvar="CARBONAWARE_SSH_ENV",
        ),
    ] = None,
    timeout_seconds: Annotated[
        float | None, typer.Option(help="Stop the job after this long (0 or unset: no limit).")
    ] = None,
    connect_timeout_seconds: Annotated[float, typer.Option(help="Connect timeout.")] = 20.0,
    kill_grace_seconds: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL at the timeout.")
    ] = 10.0,
    sample_interval_seconds: Annotated[
        float, typer.Option(help="Seconds between /proc samples of the server.")
    ] = 2.0,
    termination_log: Annotated[
        Path | None,
        typer.Option(help="Where to write the JSON result (default: /dev/termination-log)."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            help="Name of the run on the server (letters, digits, '-'; at most 64). A runner "
            "given the id of an existing run attaches to it instead of starting the job again. "
            "Default: a random id."
        ),
    ] = None,
    reattach_seconds: Annotated[
        float, typer.Option(help="How long to keep re-attaching after a lost connection.")
    ] = 300.0,
    detach_on_signal: Annotated[
        bool,
        typer.Option(
            help="On SIGTERM/SIGINT, let go of the run instead of stopping it: it goes on on the "
            "server and a runner with the same --run-id attaches (exit 75). Runner pods use it."
        ),
    ] = False,
) -> None:
    """Run a job on a server over SSH, stream its output and exit with its exit code.

    Exit codes besides the job's own:

    124 timed out, 64 invalid options, 66 unreadable key or known_hosts file,

    69 unreachable, 70 run not completed, 71 run lost on the server,

    75 detached on a signal (the run goes on), 76 host key mismatch,

    77 authentication failed, 143 stopped on a signal (the run was stopped).
    """
    import os

    from carbonaware.runners.sshcommand import (
        SshRunnerOptions,
        configure_logging,
        default_termination_log,
        run_ssh_runner_command,
    )

    configure_logging()
    exit_code = run_ssh_runner_command(
        SshRunnerOptions(
            host=host,
            user=user,
            key_file=key_file,
            port=port,
            known_hosts=known_hosts,
            known_hosts_file=known_hosts_file,
            host_key_policy=host_key_policy,
            working_dir=working_dir,
            command=command,
            script=script,
            script_file=script_file,
            env=tuple(env or ()),
            env_json=env_json,
            timeout_seconds=timeout_seconds,
            connect_timeout_seconds=connect_timeout_seconds,
            kill_grace_seconds=kill_grace_seconds,
            sample_interval_seconds=sample_interval_seconds,
            termination_log=termination_log or default_termination_log(),
            run_id=run_id,
            reattach_seconds=reattach_seconds,
            detach_on_signal=detach_on_signal,
        ),
        environ=os.environ,
    )
    raise typer.Exit(code=exit_code)


def main() -> None:
    app()
