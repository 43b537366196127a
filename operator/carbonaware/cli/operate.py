"""``carbonaware run`` (the operator) and ``carbonaware sci`` (an SCI estimate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carbonaware.cli.app import app


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
