"""``report``: finished runs aggregated by namespace and policy, for a month or a quarter.

Pure: objects in, a :class:`Report` out, then csv, json, markdown or a table. A run counts
once it finished with an SCI (``status.sci`` of a CarbonAwareJob, the SCI annotations of a
managed Job) within the period. Emitted grams are the run's SCI total; avoided grams are
signed (negative: the run emitted more than it would have at its creation time); the
counterfactual is emitted + avoided, the same run started when it was created. Jobs a Shadow
CarbonAwarePolicy watched ran at once (nothing avoided) and group under "<policy> (Shadow:
<name>)": their "would have saved" is what holding them to the policy's plan would have
saved (emitted minus the same run started at the planned start). With
``--prometheus`` the operator's own counters over the period are added, per namespace
(:mod:`carbonaware.plugin.metricsreport`): they also count runs whose objects are gone.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from carbonaware.api import display, labels
from carbonaware.plugin.metricsreport import MetricsTotals
from carbonaware.plugin.plan import number, parse_time


@dataclass(frozen=True)
class Run:
    """One finished, measured run."""

    namespace: str
    name: str
    kind: str
    policy: str
    finished: datetime
    energy_kwh: float
    emitted_grams: float
    avoided_grams: float | None
    units: float
    unit_name: str
    sources: tuple[str, ...]
    would_have_saved_grams: float | None = None

    @property
    def counterfactual_grams(self) -> float:
        return self.emitted_grams + (self.avoided_grams or 0.0)


def split_unit(text: str | None) -> tuple[float, str]:
    """``"500 users"`` -> (500, "users"); a missing unit is one run."""
    count, _, name = (text or "1 run").partition(" ")
    quantity = number(count)
    return (quantity, name or "run") if quantity else (1.0, text or "run")


def sources_of(*texts: Any) -> tuple[str, ...]:
    found: set[str] = set()
    for text in texts:
        if isinstance(text, str) and text:
            found.update(part.strip() for part in text.replace(";", ",").split(",") if part.strip())
    return tuple(sorted(found))


def run_of_carbonawarejob(body: dict[str, Any]) -> Run | None:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    sci = status.get("sci")
    finished = parse_time(status.get("completionTime"))
    if not sci or finished is None:
        return None
    units, unit_name = split_unit(sci.get("functionalUnit"))
    return Run(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        kind="CarbonAwareJob",
        policy=((body.get("spec") or {}).get("schedule") or {}).get("policy") or "Forecast",
        finished=finished,
        energy_kwh=float(sci.get("energyKWh") or 0.0),
        emitted_grams=float(sci.get("totalGrams") or 0.0),
        avoided_grams=number(sci.get("avoidedGrams")),
        units=units,
        unit_name=unit_name,
        sources=sources_of(
            sci.get("intensitySource"), (status.get("intensity") or {}).get("source")
        ),
    )


def run_of_plain_job(body: dict[str, Any]) -> Run | None:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    emitted = number(annotations.get(labels.SCI_GRAMS))
    finished = parse_time((body.get("status") or {}).get("completionTime"))
    if finished is None:
        conditions = (body.get("status") or {}).get("conditions") or []
        finished = next(
            (parse_time(c.get("lastTransitionTime")) for c in conditions
             if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"),
            None,
        )  # fmt: skip
    if emitted is None or finished is None:
        return None
    policy = annotations.get(labels.POLICY) or "Forecast"
    shadow = annotations.get(labels.POLICY_MODE) == "Shadow"
    if shadow:
        policy = f"{policy} (Shadow: {annotations.get(labels.GOVERNING_POLICY, '?')})"
    return Run(
        namespace=str(meta.get("namespace")),
        name=str(meta.get("name")),
        kind="Job",
        policy=policy,
        finished=finished,
        energy_kwh=number(annotations.get(labels.ENERGY_KWH)) or 0.0,
        emitted_grams=emitted,
        avoided_grams=number(annotations.get(labels.AVOIDED_GRAMS)),
        units=1.0,
        unit_name="run",
        sources=sources_of(annotations.get(labels.INTENSITY_SOURCE)),
        would_have_saved_grams=(
            number(annotations.get(labels.SHADOW_WOULD_HAVE_SAVED_GRAMS)) if shadow else None
        ),
    )


@dataclass
class Group:
    """Runs of one namespace and policy."""

    namespace: str
    policy: str
    runs: int = 0
    energy_kwh: float = 0.0
    emitted_grams: float = 0.0
    avoided_grams: float = 0.0
    units: float = 0.0
    unit_names: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)
    would_have_saved_grams: float | None = None  # Shadow runs only

    def add(self, run: Run) -> None:
        self.runs += 1
        self.add_would_have_saved(run.would_have_saved_grams)
        self.energy_kwh += run.energy_kwh
        self.emitted_grams += run.emitted_grams
        self.avoided_grams += run.avoided_grams or 0.0
        self.units += run.units
        self.unit_names.add(run.unit_name)
        self.sources.update(run.sources)

    def add_would_have_saved(self, grams: float | None) -> None:
        if grams is not None:
            self.would_have_saved_grams = (self.would_have_saved_grams or 0.0) + grams

    @property
    def unit(self) -> str | None:
        return next(iter(self.unit_names)) if len(self.unit_names) == 1 else None

    @property
    def sci_per_unit(self) -> float | None:
        """Emitted grams per functional unit (SCI = (E x I + M) per R, summed over runs);
        None when the runs count different units."""
        return self.emitted_grams / self.units if self.unit and self.units else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "policy": self.policy,
            "runs": self.runs,
            # Raw sums, unrounded: one run can emit well under a milligram.
            "energyKWh": self.energy_kwh,
            "emittedGrams": self.emitted_grams,
            "avoidedGrams": self.avoided_grams,
            "wouldHaveSavedGrams": self.would_have_saved_grams,
            "sciPerUnitGrams": self.sci_per_unit,
            "functionalUnit": self.unit,
            "intensitySources": sorted(self.sources),
        }


@dataclass
class Report:
    since: datetime
    until: datetime
    groups: list[Group]
    daily: dict[date, tuple[float, float]]  # day -> (emitted, counterfactual) grams
    metrics: list[MetricsTotals] | None = None  # the operator's counters, when asked for

    @property
    def total(self) -> Group:
        total = Group("(all)", "(all)")
        for group in self.groups:
            total.runs += group.runs
            total.energy_kwh += group.energy_kwh
            total.emitted_grams += group.emitted_grams
            total.avoided_grams += group.avoided_grams
            total.units += group.units
            total.unit_names |= group.unit_names
            total.sources |= group.sources
            total.add_would_have_saved(group.would_have_saved_grams)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": self.until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "groups": [group.to_dict() for group in self.groups],
            "total": self.total.to_dict(),
            "daily": [
                {
                    "day": day.isoformat(),
                    "emittedGrams": round(e, 6),
                    "counterfactualGrams": round(c, 6),
                }
                for day, (e, c) in sorted(self.daily.items())
            ],
            **(
                {"operatorMetrics": [totals.to_dict() for totals in self.metrics]}
                if self.metrics is not None
                else {}
            ),
        }


def build_report(
    carbonawarejobs: Iterable[dict[str, Any]],
    jobs: Iterable[dict[str, Any]],
    *,
    since: datetime,
    until: datetime,
    namespace: str | None = None,
) -> Report:
    runs = [r for body in carbonawarejobs if (r := run_of_carbonawarejob(body)) is not None]
    runs += [r for body in jobs if (r := run_of_plain_job(body)) is not None]
    groups: dict[tuple[str, str], Group] = {}
    daily: dict[date, tuple[float, float]] = defaultdict(lambda: (0.0, 0.0))
    for run in runs:
        if not since <= run.finished <= until or (namespace and run.namespace != namespace):
            continue
        groups.setdefault((run.namespace, run.policy), Group(run.namespace, run.policy)).add(run)
        emitted, counterfactual = daily[run.finished.date()]
        daily[run.finished.date()] = (
            emitted + run.emitted_grams,
            counterfactual + run.counterfactual_grams,
        )
    return Report(since, until, [groups[key] for key in sorted(groups)], dict(daily))


METRICS_POLICY = "(operator metrics)"  # the policy cell of rows from the operator's counters
COLUMNS = ("namespace", "policy", "runs", "energyKWh", "emittedGrams", "avoidedGrams",
           "wouldHaveSavedGrams", "sciPerUnitGrams", "functionalUnit",
           "intensitySources")  # fmt: skip


def csv_cell(value: Any) -> Any:
    """12 significant figures for sums of floats (no 0.21000000000000002), blanks for None."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.12g}"
    return value


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for group in [*report.groups, report.total]:
        row = group.to_dict()
        row["intensitySources"] = ";".join(row["intensitySources"])
        writer.writerow([csv_cell(row[c]) for c in COLUMNS])
    for totals in report.metrics or []:
        row = {**totals.to_dict(), "policy": METRICS_POLICY, "intensitySources": ""}
        writer.writerow([csv_cell(row.get(c)) for c in COLUMNS])
    return out.getvalue()


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def cells(group: Group) -> list[str]:
    sci = group.sci_per_unit
    return [
        group.namespace,
        group.policy,
        str(group.runs),
        f"{display.significant(group.energy_kwh)} kWh",
        display.grams(group.emitted_grams) or "-",
        display.grams(group.avoided_grams) or "-",
        display.grams(group.would_have_saved_grams) or "-",
        display.sci(sci, f"1 {group.unit}") or "-",
        ", ".join(sorted(group.sources)) or "-",
    ]


HEADERS = ("Namespace", "Policy", "Runs", "Energy", "Emitted", "Avoided", "Would save", "SCI",
           "Intensity sources")  # fmt: skip


def period(report: Report) -> str:
    return f"{report.since:%Y-%m-%d %H:%M}Z to {report.until:%Y-%m-%d %H:%M}Z"


def to_markdown(report: Report) -> str:
    lines = [
        f"Finished runs from {period(report)}; avoided grams are against starting each run "
        'when it was created (negative: it emitted more); "would save" is what a Shadow '
        "policy's plan would have saved on the runs it watched.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|"
        + "|".join(
            "---:" if h in ("Runs", "Energy", "Emitted", "Avoided", "Would save", "SCI") else "---"
            for h in HEADERS
        )
        + "|",
    ]
    for group in [*report.groups, report.total]:
        lines.append("| " + " | ".join(cells(group)) + " |")
    if report.metrics is not None:
        lines += ["", METRICS_NOTE, "", "| " + " | ".join(METRICS_HEADERS) + " |",
                  "|---|" + "---:|" * (len(METRICS_HEADERS) - 1)]  # fmt: skip
        lines += ["| " + " | ".join(metrics_cells(t)) + " |" for t in report.metrics]
    return "\n".join(lines) + "\n"


METRICS_HEADERS = ("Namespace", "Runs", "Energy", "Emitted", "Avoided")
METRICS_NOTE = (
    "The operator's own counters in Prometheus over the same period (increase(); they also "
    "count runs whose objects are gone):"
)


def metrics_cells(totals: MetricsTotals) -> list[str]:
    return [
        totals.namespace,
        f"{totals.runs:.0f}",
        f"{display.significant(totals.energy_kwh)} kWh",
        display.grams(totals.emitted_grams) or "-",
        display.grams(totals.avoided_grams) or "-",
    ]


def render_table(report: Report, console: Console) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in HEADERS:
        numeric = header in ("Runs", "Energy", "Emitted", "Avoided", "Would save", "SCI")
        table.add_column(header.upper(), justify="right" if numeric else "left", no_wrap=True)
    for group in report.groups:
        table.add_row(*cells(group))
    table.add_row(*cells(report.total), style="bold")
    console.print(f"Finished runs from {period(report)}")
    console.print(table)
    if report.metrics is not None:
        counters = Table(box=None, pad_edge=False, header_style="bold")
        for header in METRICS_HEADERS:
            counters.add_column(
                header.upper(), justify="left" if header == "Namespace" else "right"
            )
        for totals in report.metrics:
            counters.add_row(*metrics_cells(totals))
        console.print(METRICS_NOTE)
        console.print(counters)
