"""The forecast report behind ``carbonaware forecast``: best window, table, CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.cli import app
from carbonaware.providers.chain import ProviderChain
from carbonaware.providers.report import (
    ForecastReport,
    best_window,
    build_report,
    render_report,
    window_mean,
)
from carbonaware.providers.static import StaticProvider

from .helpers import FakeClock

T0 = datetime(2024, 3, 14, 11, 0, tzinfo=UTC)
HALF = timedelta(minutes=30)


def series(values: list[float], start: datetime = T0) -> list[IntensityPoint]:
    return [
        IntensityPoint(start + i * HALF, start + (i + 1) * HALF, v, "static", True)
        for i, v in enumerate(values)
    ]


def test_window_mean_is_time_weighted_and_needs_full_cover() -> None:
    points = series([100, 200, 300])
    assert window_mean(points, T0, T0 + 2 * HALF) == 150
    assert window_mean(points, T0 + timedelta(minutes=15), T0 + timedelta(minutes=75)) == 200
    assert window_mean(points, T0, T0 + 4 * HALF) is None
    gap = [points[0], points[2]]
    assert window_mean(gap, T0, T0 + 3 * HALF) is None


def test_best_window_finds_the_lowest_mean_start() -> None:
    points = series([300, 250, 90, 60, 80, 200, 400])
    best = best_window(points, timedelta(hours=1), earliest=T0 + timedelta(minutes=10))
    assert best is not None
    assert best.start == T0 + 3 * HALF
    assert best.mean_intensity == 70
    assert best_window(points, timedelta(hours=5), earliest=T0) is None


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=500), min_size=2, max_size=30),
    periods=st.integers(min_value=1, max_value=4),
)
def test_best_window_is_never_beaten_by_any_period_start(values: list[int], periods: int) -> None:
    points = series([float(v) for v in values])
    duration = periods * HALF
    best = best_window(points, duration, earliest=T0)
    if periods > len(values):
        assert best is None
        return
    assert best is not None
    for i in range(len(values) - periods + 1):
        assert best.mean_intensity <= sum(values[i : i + periods]) / periods + 1e-9


async def test_report_from_a_static_table() -> None:
    table = [200.0] * 24
    table[3] = 50.0
    table[4] = 60.0
    clock = FakeClock(datetime(2024, 3, 14, 22, 10, tzinfo=UTC))
    chain = ProviderChain([StaticProvider({"*": table}, now=clock)], clock=clock)
    report = await build_report(chain, "GB", duration=timedelta(hours=2), now=clock)
    assert report.points[0].start == datetime(2024, 3, 14, 22, tzinfo=UTC)
    assert report.points[-1].end == datetime(2024, 3, 16, 22, tzinfo=UTC)
    assert len(report.points) == 48
    assert report.best is not None
    assert report.best.start == datetime(2024, 3, 15, 3, tzinfo=UTC)
    assert report.best.mean_intensity == 55
    assert report.attributions == ()


def sample_report() -> ForecastReport:
    points = series([120, 80])
    points[0] = IntensityPoint(T0, T0 + HALF, 120, "ukci", False, IntensityIndex.MODERATE)
    best = best_window(points, HALF, earliest=T0)
    return ForecastReport(
        region="GB",
        provider="chain",
        generated_at=T0,
        duration=HALF,
        points=tuple(points),
        best=best,
        attributions=("Carbon Intensity API, NESO (CC BY 4.0)",),
    )


def test_plain_output_when_not_a_terminal() -> None:
    buffer = io.StringIO()
    render_report(sample_report(), Console(file=buffer, force_terminal=False))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "start\tend\tgCO2e/kWh\tindex\tsource"
    assert lines[1] == "2024-03-14 11:00\t2024-03-14 11:30\t120\tModerate\tukci"
    assert lines[2] == "2024-03-14 11:30\t2024-03-14 12:00\t80\t-\tstatic (forecast)"
    assert (
        lines[3] == "Best 30m window: 2024-03-14 11:30 to 2024-03-14 12:00 UTC, mean 80 gCO2e/kWh"
    )
    assert lines[4] == "Data: Carbon Intensity API, NESO (CC BY 4.0)"


def test_rich_table_on_a_terminal() -> None:
    buffer = io.StringIO()
    render_report(sample_report(), Console(file=buffer, force_terminal=True, width=100))
    text = buffer.getvalue()
    assert "Grid intensity for GB (UTC)" in text
    assert "┃" in text or "│" in text
    assert "\t" not in text
    assert "Best 30m window" in text


def test_cli_forecast_with_a_static_table(monkeypatch: pytest.MonkeyPatch) -> None:
    table = ["300"] * 24
    table[2] = "40"
    monkeypatch.setenv("CARBONAWARE_PROVIDERS", "static")
    monkeypatch.setenv("CARBONAWARE_STATIC_TABLE", ",".join(table))
    result = CliRunner().invoke(app, ["forecast", "--region", "GB", "--duration", "1h"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "start\tend\tgCO2e/kWh\tindex\tsource"
    # header, 48 h of whole hours from the current half hour, best window
    assert len(lines) - 2 in (48, 49)
    best = lines[-1]
    assert best.startswith("Best 1h window: ")
    assert "02:00 to " in best
    assert best.endswith("03:00 UTC, mean 40 gCO2e/kWh")


def test_cli_forecast_trace_shows_the_attribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARBONAWARE_PROVIDERS", "trace")
    result = CliRunner().invoke(app, ["forecast", "-r", "GB", "-d", "1h30m", "--horizon", "6h"])
    assert result.exit_code == 0, result.output
    assert "trace (forecast)" in result.output
    assert "Best 1h30m window" in result.output
    assert result.output.rstrip().endswith("Data: Carbon Intensity API, NESO (CC BY 4.0)")


def test_cli_rejects_bad_durations_and_reports_config_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = CliRunner().invoke(app, ["forecast", "--duration", "2"])
    assert result.exit_code == 2
    assert "needs a unit" in result.output or "cannot read duration" in result.output
    monkeypatch.setenv("CARBONAWARE_PROVIDERS", "electricitymaps")
    monkeypatch.delenv("CARBONAWARE_ELECTRICITYMAPS_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["forecast", "--region", "DE"])
    assert result.exit_code == 2
    assert "CARBONAWARE_ELECTRICITYMAPS_TOKEN" in result.output
