"""``carbonaware forecast --backtest``: the sources' recent skill and what the blend did."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app
from carbonaware.scheduling import TraceInput
from carbonaware.scheduling.backtest import backtest

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=30)
DAYS = 40


def _trace(noise: float) -> TraceInput:
    """A daily cycle with weather; a forecast column erring by ``noise`` (standard deviation).

    The error persists from slot to slot (lag-1 autocorrelation 0.8, as forecast errors do),
    so averaging neighbouring slots cannot remove it.
    """
    weather, errors = random.Random(3), random.Random(9)
    anomaly = error = 0.0
    actual, forecast = [], []
    for slot in range(DAYS * 48):
        anomaly = 0.97 * anomaly + weather.gauss(0, 4)
        value = 150 + 60 * math.sin(2 * math.pi * (slot / 2 % 24 - 9) / 24) + anomaly
        actual.append(value)
        error = 0.8 * error + errors.gauss(0, noise * 0.6)  # stationary deviation: noise
        forecast.append(max(0.0, value + error))
    starts = [START + i * STEP for i in range(len(actual))]
    return TraceInput(starts=starts, step=STEP, actual=actual, forecast=forecast)


def test_a_poor_column_is_outplanned_by_the_blend_and_the_skill_shows_why() -> None:
    # Noise as large as the daily swing (120 g from trough to peak).
    result = backtest(_trace(noise=120.0), START + timedelta(days=DAYS), days=7)
    shares = {o.forecast: o.captured_share for o in result.outcomes}
    assert set(shares) == {"provider", "own", "blend"}
    assert all(o.deadline_misses == 0 and o.jobs > 100 for o in result.outcomes)
    assert shares["blend"] > shares["provider"] + 0.2
    assert shares["blend"] >= shares["own"] - 0.03
    skill = {(row.source, row.bucket): row for row in result.skill}
    assert skill[("provider", "0-3h")].mae > 2 * skill[("own", "0-3h")].mae
    assert "own" in result.trusted
    assert result.until - result.start == timedelta(days=8)  # 7 days of arrivals + the window


def test_without_a_forecast_the_blend_is_of_its_own_sources() -> None:
    plain = _trace(noise=0.0)
    trace = TraceInput(starts=plain.starts, step=STEP, actual=plain.actual)
    result = backtest(trace, START + timedelta(days=DAYS), days=5)
    assert [o.forecast for o in result.outcomes] == ["own", "blend"]


def test_vintages_are_the_provider_when_given() -> None:
    plain = _trace(noise=0.0)
    rows = [
        (issued, START + slot * STEP, plain.actual[slot] + 3.0)
        for day in range(DAYS)
        for issued in [START + timedelta(days=day)]
        for slot in range(day * 48, min(DAYS * 48, day * 48 + 96))
    ]
    trace = TraceInput(starts=plain.starts, step=STEP, actual=plain.actual, vintages=rows)
    result = backtest(trace, START + timedelta(days=DAYS), days=5)
    outcome = {o.forecast: o for o in result.outcomes}
    assert outcome["provider"].captured_share > 0.9  # a forecast 3 g off is nearly the oracle


def test_a_stretch_the_trace_does_not_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="choose --until within it"):
        backtest(_trace(noise=5.0), START + timedelta(days=3), days=7)
    with pytest.raises(ValueError, match="at least one day"):
        backtest(_trace(noise=5.0), START + timedelta(days=30), days=0)


@pytest.fixture
def trace_csv(tmp_path: Path) -> Path:
    trace = _trace(noise=30.0)
    path = tmp_path / "history.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["when", "actual", "forecast"])
        for moment, value, predicted in zip(
            trace.starts, trace.actual, trace.forecast or [], strict=True
        ):
            writer.writerow([f"{moment:%Y-%m-%dT%H:%MZ}", f"{value:.1f}", f"{predicted:.1f}"])
    return path


def _args(trace_csv: Path) -> list[str]:
    return ["forecast", "--backtest", "--provider", "trace", "--trace-path", str(trace_csv)]


def test_the_command_prints_skill_by_lead_and_the_outcomes(
    trace_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONAWARE_TRACE_TIME_COLUMN", "when")
    monkeypatch.setenv("CARBONAWARE_TRACE_ACTUAL_COLUMN", "actual")
    monkeypatch.setenv("CARBONAWARE_TRACE_FORECAST_COLUMN", "forecast")
    monkeypatch.setenv("CARBONAWARE_TRACE_INDEX_COLUMN", "")
    runner = CliRunner()
    args = [*_args(trace_csv), "--days", "5", "--until", "2024-02-09T00:00Z"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "MAE g (rank correlation) by lead" in result.output
    assert (
        "Backtest of history.csv: 5 days of arrivals from 2024-02-03 00:00, the last window "
        "ending 2024-02-09 00:00"
    ) in result.output
    assert "The blend trusts:" in result.output
    assert "planned on blend:" in result.output
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["trace"] == "history.csv"
    assert doc["until"].startswith("2024-02-09T00:00")
    assert {o["forecast"] for o in doc["outcomes"]} == {"provider", "own", "blend"}
    assert any(row["source"] == "blend" and row["mae"] for row in doc["skill"])


def test_the_command_refuses_a_live_provider_and_a_stretch_outside_the_trace(
    trace_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["forecast", "--backtest", "--provider", "ukci"])
    assert result.exit_code == 2
    assert "live APIs do not serve" in result.output
    monkeypatch.setenv("CARBONAWARE_TRACE_TIME_COLUMN", "when")
    monkeypatch.setenv("CARBONAWARE_TRACE_ACTUAL_COLUMN", "actual")
    monkeypatch.setenv("CARBONAWARE_TRACE_FORECAST_COLUMN", "forecast")
    monkeypatch.setenv("CARBONAWARE_TRACE_INDEX_COLUMN", "")
    result = runner.invoke(app, [*_args(trace_csv), "--until", "2023-06-01T00:00Z"])
    assert result.exit_code == 2
    assert "choose --until within it" in result.output
