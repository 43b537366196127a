"""``kubectl carbonaware``: the command line of the kubectl plugin.

kubectl finds the executable ``kubectl-carbonaware`` on PATH (installed with the package)
and passes every argument through. The flags follow kubectl's: ``--kubeconfig``,
``--context``, ``-n/--namespace`` (default: the context's namespace) and
``-A/--all-namespaces``. Overrides are written as annotations with the field manager
``kubectl-carbonaware``, which the operator quotes as who asked.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import PLURAL
from carbonaware.api.durations import parse_duration
from carbonaware.errors import CarbonAwareError, KubernetesError
from carbonaware.k8s import Kube, kubeconfig_namespace
from carbonaware.plugin.explain import render_explain, window_of
from carbonaware.plugin.metricsreport import metrics_totals
from carbonaware.plugin.plan import plan_rows, render_plan, row_of_carbonawarejob, row_of_plain_job
from carbonaware.plugin.report import build_report, render_table, to_csv, to_json, to_markdown

FIELD_MANAGER = "kubectl-carbonaware"
MANAGED_SELECTOR = f"{labels.MANAGED}=true"
# The report also counts the Jobs Shadow CarbonAwarePolicies watched (they ran at once).
REPORTED_SELECTOR = f"{labels.MANAGED} in (true,{labels.MANAGED_SHADOW})"
T = TypeVar("T")

app = typer.Typer(
    name="kubectl carbonaware",
    help="Carbon-aware work in your cluster: what waits, why, and what it saved.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Kubeconfig = Annotated[
    str | None, typer.Option("--kubeconfig", help="Path to the kubeconfig file to use.")
]
Context = Annotated[str | None, typer.Option("--context", help="The kubeconfig context to use.")]
Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the context's namespace)."),
]
AllNamespaces = Annotated[bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")]


class PlanOutput(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


class ReportOutput(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    MD = "md"


class Kind(StrEnum):
    CAJ = "caj"
    JOB = "job"


def console() -> Console:
    return Console(file=sys.stdout, soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def fail(message: str, code: int = 1) -> typer.Exit:
    Console(file=sys.stderr).print(f"error: {message}", markup=False, highlight=False)
    return typer.Exit(code=code)


def with_kube(
    kubeconfig: str | None, context: str | None, action: Callable[[Kube], Awaitable[T]]
) -> T:
    async def run() -> T:
        kube = Kube.connect(threads=4, timeout_seconds=30.0, kubeconfig=kubeconfig,
                            context=context)  # fmt: skip
        try:
            return await action(kube)
        finally:
            kube.close()

    try:
        return asyncio.run(run())
    except CarbonAwareError as exc:
        raise fail(str(exc)) from exc


def scope(
    kubeconfig: str | None, context: str | None, namespace: str | None, all_namespaces: bool
) -> str | None:
    """The namespace to read (None: every namespace), as kubectl picks it."""
    if all_namespaces:
        return None
    return namespace or kubeconfig_namespace(kubeconfig, context)


def now_utc() -> datetime:
    return datetime.now(UTC)


async def list_work(
    kube: Kube, namespace: str | None, selector: str = MANAGED_SELECTOR
) -> tuple[list[Any], list[Any]]:
    carbonawarejobs, jobs = await asyncio.gather(
        kube.list_objects(PLURAL, namespace), kube.list_jobs(namespace, selector)
    )
    for body in carbonawarejobs:
        body.setdefault("kind", "CarbonAwareJob")
    for body in jobs:
        body["kind"] = "Job"
    return carbonawarejobs, jobs


@app.command("plan")
def plan_command(
    output: Annotated[PlanOutput, typer.Option("--output", "-o", help="table, json or yaml.")] = (
        PlanOutput.TABLE
    ),
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Held and running work: planned start, latest start, expected intensity vs now, saving."""
    where = scope(kubeconfig, context, namespace, all_namespaces)
    carbonawarejobs, jobs = with_kube(kubeconfig, context, lambda kube: list_work(kube, where))
    rows = plan_rows(carbonawarejobs, jobs)
    if output is PlanOutput.TABLE:
        render_plan(rows, now_utc(), console())
        return
    items = [row.to_dict() for row in rows]
    if output is PlanOutput.JSON:
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump({"items": items}, sort_keys=False))


async def find(kube: Kube, namespace: str, name: str, kind: Kind | None) -> dict[str, Any]:
    """The CarbonAwareJob ``name`` (or, with none or ``--kind job``, the managed Job)."""
    if kind in (None, Kind.CAJ):
        body = await kube.get_object(PLURAL, namespace, name)
        if body is not None:
            body.setdefault("kind", "CarbonAwareJob")
            return body
    if kind in (None, Kind.JOB):
        job = await kube.get_job(namespace, name)
        if job is not None and (job["metadata"].get("labels") or {}).get(labels.MANAGED) == "true":
            job["kind"] = "Job"
            return job
    what = "CarbonAwareJob or managed Job" if kind is None else kind.value
    raise KubernetesError(f"no {what} {name!r} in namespace {namespace!r}", status=404)


KindOption = Annotated[
    Kind | None,
    typer.Option("--kind", help="caj or job (default: the CarbonAwareJob, else the Job)."),
]


@app.command("explain")
def explain_command(
    name: Annotated[str, typer.Argument(help="The CarbonAwareJob (or managed Job).")],
    kind: KindOption = None,
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            "-p",
            help="Provider chain for the forecast drawn "
            "(default: CARBONAWARE_PROVIDERS, as the operator is configured).",
        ),
    ] = None,
) -> None:
    """The plan of one job, the forecast over its window, why this window, and the sources."""
    where = namespace or kubeconfig_namespace(kubeconfig, context)
    body = with_kube(kubeconfig, context, lambda kube: find(kube, where, name, kind))
    now = now_utc()
    points, problem = asyncio.run(forecast_for(body, now, provider))
    render_explain(body, points, problem, now, console())


async def forecast_for(
    body: dict[str, Any], now: datetime, provider_names: str | None
) -> tuple[list[Any], str | None]:
    """The forecast over the job's window, from the providers the operator is configured
    with (the same CARBONAWARE_* settings), or why there is none."""
    from carbonaware.config import OperatorSettings
    from carbonaware.providers.factory import build_provider

    row = (
        row_of_carbonawarejob(body) if body["kind"] == "CarbonAwareJob" else row_of_plain_job(body)
    )
    if row is None:
        return [], None
    start, length = window_of(body, row)
    end = max(filter(None, (start, row.latest_start, now))) + length
    try:
        settings = OperatorSettings()
        if provider_names:
            settings = settings.model_copy(update={"providers": provider_names})
        chain = build_provider(settings)
    except (CarbonAwareError, ValueError) as exc:
        return [], str(exc)
    try:
        region = row.region or settings.default_region
        return list(await chain.forecast(region, now - timedelta(minutes=30), end)), None
    except CarbonAwareError as exc:
        return [], str(exc)
    finally:
        await chain.aclose()


def override_patch(set_: dict[str, str], remove: tuple[str, ...]) -> dict[str, Any]:
    annotations: dict[str, str | None] = {key: None for key in remove}
    annotations.update(set_)
    return {"metadata": {"annotations": annotations}}


async def annotate(
    kube: Kube, namespace: str, name: str, kind: Kind | None, patch: dict[str, Any]
) -> str:
    body = await find(kube, namespace, name, kind)
    if body["kind"] == "CarbonAwareJob":
        await kube.patch_object(PLURAL, namespace, name, patch, field_manager=FIELD_MANAGER)
        return f"carbonawarejob.carbonaware.io/{name}"
    await kube.patch_job(namespace, name, patch, field_manager=FIELD_MANAGER)
    return f"job.batch/{name}"


def override(
    name: str, kind: Kind | None, namespace: str | None, kubeconfig: str | None,
    context: str | None, patch: dict[str, Any], what: str,
) -> None:  # fmt: skip
    where = namespace or kubeconfig_namespace(kubeconfig, context)
    ref = with_kube(kubeconfig, context, lambda kube: annotate(kube, where, name, kind, patch))
    console().print(f"{ref} {what}", markup=False, highlight=False)


@app.command("release")
def release_command(
    name: Annotated[str, typer.Argument(help="The CarbonAwareJob (or managed Job).")],
    kind: KindOption = None,
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Release now, whatever the policy says (annotation carbonaware.io/release-now)."""
    patch = override_patch({labels.RELEASE_NOW: "true"}, (labels.HOLD,))
    override(name, kind, namespace, kubeconfig, context, patch, "release requested")


@app.command("hold")
def hold_command(
    name: Annotated[str, typer.Argument(help="The CarbonAwareJob (or managed Job).")],
    force: Annotated[
        bool, typer.Option("--force", help="Hold past the deadline too (hold: force).")
    ] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the hold.")] = False,
    kind: KindOption = None,
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Keep holding until the hold is removed; the deadline still releases it unless --force
    (annotation carbonaware.io/hold)."""
    if remove:
        patch, what = override_patch({}, (labels.HOLD,)), "hold removed"
    else:
        value = "force" if force else "true"
        patch = override_patch({labels.HOLD: value}, (labels.RELEASE_NOW,))
        what = "held past its deadline" if force else "held (the deadline still releases it)"
    override(name, kind, namespace, kubeconfig, context, patch, what)


@app.command("cancel")
def cancel_command(
    name: Annotated[str, typer.Argument(help="The CarbonAwareJob (or managed Job).")],
    kind: KindOption = None,
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """End the job Failed (Cancelled); a running child is stopped (annotation
    carbonaware.io/cancel)."""
    patch = override_patch({labels.CANCEL: "true"}, ())
    override(name, kind, namespace, kubeconfig, context, patch, "cancel requested")


@app.command("report")
def report_command(
    since: Annotated[str, typer.Option("--since", help="Period: 30d, 90d, 12h...")] = "30d",
    output: Annotated[
        ReportOutput, typer.Option("--output", "-o", help="table, csv, json or md.")
    ] = ReportOutput.TABLE,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw emitted vs counterfactual per day to this PNG."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Only this namespace (default: all).")
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            "--prometheus",
            help="A Prometheus that scrapes the operator (URL): add its run counters over the "
            "period, which also count runs whose objects are gone.",
        ),
    ] = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Finished runs by namespace and policy: energy, emitted and avoided grams, SCI."""
    try:
        span = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    carbonawarejobs, jobs = with_kube(
        kubeconfig, context, lambda kube: list_work(kube, namespace, REPORTED_SELECTOR)
    )
    until = now_utc()
    report = build_report(carbonawarejobs, jobs, since=until - span, until=until,
                          namespace=namespace)  # fmt: skip
    if prometheus:
        try:
            report.metrics = asyncio.run(
                metrics_totals(prometheus, since=report.since, until=until, namespace=namespace)
            )
        except CarbonAwareError as exc:
            raise fail(f"the operator's counters from {prometheus}: {exc}") from exc
    if output is ReportOutput.TABLE:
        render_table(report, console())
    else:
        writer = {ReportOutput.CSV: to_csv, ReportOutput.JSON: to_json,
                  ReportOutput.MD: to_markdown}[output]  # fmt: skip
        sys.stdout.write(writer(report))
    if plot is not None:
        from carbonaware.plugin.plot import plot_report

        try:
            plot_report(report, plot)
        except CarbonAwareError as exc:
            raise fail(str(exc)) from exc
        Console(file=sys.stderr).print(f"wrote {plot}", markup=False, highlight=False)


def main() -> None:
    app()
