"""``report --prometheus URL``: the operator's own run counters over the period.

Statuses are the report's first source, but a run whose object is gone (deleted, or a Job
removed by its ``ttlSecondsAfterFinished``) is no longer in the cluster. The operator counts
every finished run in Prometheus (``carbonaware_emitted_grams_total`` and friends, by
namespace), so the report can add those totals: ``increase()`` over the period, which
survives operator restarts (counter resets). ``increase()`` extrapolates to the ends of its
range; evaluated at the operator's last scrape (not "now"), and with counters that start at
zero (the operator creates them so), it extrapolates nothing: the figure is what was counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from carbonaware.metricsource.prometheus import PrometheusCpuReader, escape_label_value

RUNS = "carbonaware_run_sci_grams_count"
ENERGY = "carbonaware_energy_kwh_total"
EMITTED = "carbonaware_emitted_grams_total"
COUNTERFACTUAL = "carbonaware_counterfactual_grams_total"


@dataclass(frozen=True)
class MetricsTotals:
    """A namespace's finished runs over the period, from the operator's counters."""

    namespace: str
    runs: float
    energy_kwh: float
    emitted_grams: float
    counterfactual_grams: float

    @property
    def avoided_grams(self) -> float:
        """Signed: negative when the runs emitted more than starting at creation would have."""
        return self.counterfactual_grams - self.emitted_grams

    def to_dict(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "runs": round(self.runs, 2),
            "energyKWh": self.energy_kwh,
            "emittedGrams": self.emitted_grams,
            "avoidedGrams": self.avoided_grams,
        }


def _matcher(namespace: str | None) -> str:
    return f'{{namespace="{escape_label_value(namespace)}"}}' if namespace else ""


def increase_query(metric: str, span: timedelta, namespace: str | None) -> str:
    seconds = max(1, round(span.total_seconds()))
    return f"sum by (namespace) (increase({metric}{_matcher(namespace)}[{seconds}s]))"


def last_scrape_query(namespace: str | None) -> str:
    """When the operator's counters were last scraped (as of the query's time)."""
    return f"max(timestamp({RUNS}{_matcher(namespace)}))"


async def metrics_totals(
    url: str, *, since: datetime, until: datetime, namespace: str | None = None
) -> list[MetricsTotals]:
    """Per namespace, the runs, energy, emitted and counterfactual grams counted by the
    operator between ``since`` and ``until``. Raises ``MetricSourceError``."""
    values: dict[str, dict[str, float]] = {}
    async with PrometheusCpuReader(url) as reader:
        scraped = await reader.scalar_query(last_scrape_query(namespace), until)
        if scraped is not None and since < (last := datetime.fromtimestamp(scraped, UTC)) < until:
            until = last
        span = until - since
        for metric in (RUNS, ENERGY, EMITTED, COUNTERFACTUAL):
            for item in await reader.instant_query(increase_query(metric, span, namespace), until):
                name = str((item.get("metric") or {}).get("namespace") or "")
                try:
                    value = float(item["value"][1])
                except (KeyError, IndexError, TypeError, ValueError):
                    continue
                values.setdefault(name, {})[metric] = value
    return [
        MetricsTotals(
            namespace=name,
            runs=found.get(RUNS, 0.0),
            energy_kwh=found.get(ENERGY, 0.0),
            emitted_grams=found.get(EMITTED, 0.0),
            counterfactual_grams=found.get(COUNTERFACTUAL, 0.0),
        )
        for name, found in sorted(values.items())
        if name
    ]
