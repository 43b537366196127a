"""``kubectl carbonaware report``: aggregation by hand-computed numbers, the csv, markdown
and table output (golden), and the PNG (its size and that it is drawn)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from PIL import Image

from carbonaware.plugin.metricsreport import (
    EMITTED,
    MetricsTotals,
    increase_query,
    last_scrape_query,
)
from carbonaware.plugin.plot import plot_report
from carbonaware.plugin.report import build_report, render_table, to_csv, to_json, to_markdown

from .inputs import DONE, HELD, NOW, PLAIN_DONE, PLAIN_HELD, PLAIN_SHADOW
from .test_plan import check_golden, rendered, update

__all__ = ["update"]


def report(namespace: str | None = None):  # type: ignore[no-untyped-def]
    return build_report([*DONE, HELD], [PLAIN_DONE, PLAIN_HELD, PLAIN_SHADOW],
                        since=NOW - timedelta(days=30), until=NOW, namespace=namespace)  # fmt: skip


def test_runs_are_grouped_by_namespace_and_policy_within_the_period() -> None:
    groups = {(g.namespace, g.policy): g for g in report().groups}
    shadow = ("etl", "Forecast (Shadow: nightly)")
    assert set(groups) == {("etl", "Forecast"), ("ml", "Forecast"), ("ml", "Threshold"), shadow}
    etl = groups[("etl", "Forecast")]  # d and the plain Job; "old" is before the period
    assert (etl.runs, etl.emitted_grams, etl.avoided_grams) == (2, 42.0, 10.5)
    assert etl.energy_kwh == pytest.approx(0.21)
    assert etl.sci_per_unit == 21.0
    assert etl.would_have_saved_grams is None  # held runs: their savings are avoided grams
    threshold = groups[("ml", "Threshold")]
    assert threshold.avoided_grams == -0.5  # signed: it emitted more than at creation
    # The Shadow run: it ran at once, so it avoided nothing; holding would have saved 1.25 g.
    watched = groups[shadow]
    assert (watched.runs, watched.emitted_grams, watched.avoided_grams) == (1, 3.0, 0.0)
    assert watched.would_have_saved_grams == 1.25
    total = report().total
    assert total.runs == 6
    assert total.emitted_grams == pytest.approx(60.500207591013873034)
    assert total.avoided_grams == pytest.approx(14.2501)  # no would-have grams in it
    assert total.would_have_saved_grams == 1.25


def test_daily_emitted_and_counterfactual() -> None:
    daily = report().daily
    assert set(daily) == {date(2026, 3, 1), date(2026, 2, 28)}
    assert daily[date(2026, 2, 28)] == (43.0, 52.5)
    emitted, counterfactual = daily[date(2026, 3, 1)]  # with the Shadow run's 3 g in both
    assert emitted == pytest.approx(17.500207591013873)
    assert counterfactual == pytest.approx(22.250307591013873)


def test_one_namespace() -> None:
    assert {g.namespace for g in report("ml").groups} == {"ml"}


def test_csv_parses_and_ends_with_the_total(update: bool) -> None:
    text = to_csv(report())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[-1]["namespace"] == "(all)"
    assert float(rows[-1]["emittedGrams"]) == pytest.approx(60.500208, abs=1e-6)
    assert float(rows[-1]["wouldHaveSavedGrams"]) == 1.25
    assert rows[0]["intensitySources"] == "ukci"
    check_golden("report.csv", text, update)


def test_json_markdown_and_table(update: bool) -> None:
    document = json.loads(to_json(report()))
    assert document["total"]["runs"] == 6
    assert document["total"]["wouldHaveSavedGrams"] == 1.25
    assert [d["day"] for d in document["daily"]] == ["2026-02-28", "2026-03-01"]
    check_golden("report.md", to_markdown(report()), update)
    check_golden("report.txt", rendered(render_table, report()), update)


def test_the_plot_is_an_800_by_400_png_with_both_series(tmp_path: Path) -> None:
    path = tmp_path / "report.png"
    plot_report(report(), path)
    assert path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (800, 400)
        colours = {colour for _, colour in image.convert("RGB").getcolors(maxcolors=1 << 16) or []}
    assert (0x2A, 0x9D, 0x8F) in colours  # emitted bars
    assert (0xBB, 0xBB, 0xBB) in colours  # counterfactual bars


def with_counters():  # type: ignore[no-untyped-def]
    found = report()
    found.metrics = [
        MetricsTotals("etl", 3.0, 0.3, 60.0, 75.0),
        MetricsTotals("ml", 2.0, 0.1, 14.0, 13.5),
    ]
    return found


def test_the_operators_counters_follow_the_statuses_in_every_format(update: bool) -> None:
    found = with_counters()
    rows = list(csv.DictReader(io.StringIO(to_csv(found))))
    counted = {r["namespace"]: r for r in rows if r["policy"] == "(operator metrics)"}
    assert set(counted) == {"etl", "ml"}
    assert (counted["etl"]["runs"], counted["etl"]["avoidedGrams"]) == ("3", "15")
    assert counted["ml"]["avoidedGrams"] == "-0.5"  # signed
    assert rows[len(rows) - 3]["namespace"] == "(all)"  # the status rows come first
    document = json.loads(to_json(found))
    assert document["operatorMetrics"][1] == {
        "namespace": "ml", "runs": 2.0, "energyKWh": 0.1, "emittedGrams": 14.0,
        "avoidedGrams": -0.5,
    }  # fmt: skip
    assert "operatorMetrics" not in json.loads(to_json(report()))
    check_golden("report-counters.md", to_markdown(found), update)
    check_golden("report-counters.txt", rendered(render_table, found), update)


def test_the_counters_query_is_an_increase_over_the_period_by_namespace() -> None:
    assert increase_query(EMITTED, timedelta(days=30), None) == (
        "sum by (namespace) (increase(carbonaware_emitted_grams_total[2592000s]))"
    )
    assert increase_query(EMITTED, timedelta(hours=12), 'a"b') == (
        'sum by (namespace) (increase(carbonaware_emitted_grams_total{namespace="a\\"b"}[43200s]))'
    )
    # The period ends at the operator's last scrape, so increase() extrapolates nothing there.
    assert last_scrape_query("ml") == (
        'max(timestamp(carbonaware_run_sci_grams_count{namespace="ml"}))'
    )
