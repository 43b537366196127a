"""``carbonaware simulate``: options, plain and JSON output, the decisions file."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app

from .helpers import HALF_HOUR, T0

runner = CliRunner()


@pytest.fixture
def trace_csv(tmp_path: Path) -> Path:
    path = tmp_path / "trace.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["when", "actual", "predicted"])
        for i in range(4 * 48):
            value = 150 + 60 * math.sin(2 * math.pi * i / 48)
            moment = (T0 + i * HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
            writer.writerow([moment, f"{value:.1f}", f"{value + 5:.1f}"])
    return path


def base_args(trace_csv: Path) -> list[str]:
    return [
        "simulate",
        "--trace",
        str(trace_csv),
        "--time-column",
        "when",
        "--actual-column",
        "actual",
    ]


def test_plain_output_when_piped(trace_csv: Path) -> None:
    result = runner.invoke(app, [*base_args(trace_csv), "--forecast", "perfect"])
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.output.splitlines()[:-1])
    assert rows["jobs"] == "97"
    assert rows["deadline misses"] == "0"
    assert rows["captured share"] == "100.0 %"
    assert rows["mean delay"].endswith(" h")


def test_json_and_decisions_out(trace_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "decisions.csv"
    result = runner.invoke(
        app,
        [
            *base_args(trace_csv),
            "--forecast-column",
            "predicted",
            "--forecast",
            "column",
            "--duration",
            "1h",
            "--window",
            "8h",
            "--json",
            "--decisions-out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["forecast"] == "column"
    assert summary["window_hours"] == 8.0
    assert summary["deadline_misses"] == 0
    assert summary["attribution"] is None
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["arrival", "latest_start", "start"]
    assert len(rows) - 1 == summary["jobs"]
    assert rows[1][0] == "2024-03-05T00:00:00Z"


def test_default_forecast_is_own_without_a_forecast_column(trace_csv: Path) -> None:
    result = runner.invoke(app, [*base_args(trace_csv), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["forecast"] == "own"


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--policy", "Threshold"], "needs --max-intensity or --max-index"),
        (["--duration", "45m"], "whole number"),
        (["--window", "soon"], "cannot read duration"),
        (["--forecast", "column"], "forecast column"),
    ],
)
def test_bad_options_are_usage_errors(trace_csv: Path, extra: list[str], complaint: str) -> None:
    result = runner.invoke(app, [*base_args(trace_csv), *extra])
    assert result.exit_code == 2
    assert complaint in result.output.replace("\n", " ")


def test_threshold_by_index_on_the_shipped_trace_credits_the_data() -> None:
    result = runner.invoke(
        app,
        [
            "simulate",
            "--policy",
            "Threshold",
            "--max-index",
            "low",
            "--window",
            "8h",
            "--arrival-every",
            "6h",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["attribution"] == "GB 2024 data: Carbon Intensity API, NESO (CC BY 4.0)"
    assert summary["max_index"] == "Low"
    assert summary["deadline_misses"] == 0
    assert summary["reasons"]["ThresholdMet"] > 0


def write_vintages(path: Path, *, shift: float) -> Path:
    """An issue every hour for the next 12 h: the actuals of trace_csv plus ``shift``."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["issued_at", "slot_start", "value"])
        for tick in range(0, 4 * 48, 2):
            issued = (T0 + tick * HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
            for slot in range(tick, min(4 * 48, tick + 24)):
                value = 150 + 60 * math.sin(2 * math.pi * slot / 48) + shift
                moment = (T0 + slot * HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
                writer.writerow([issued, moment, f"{value:.1f}"])
    return path


@pytest.mark.parametrize("mode", ["vintage", "blend"])
def test_vintages_feed_the_vintage_and_blend_modes(
    trace_csv: Path, tmp_path: Path, mode: str
) -> None:
    vintages = write_vintages(tmp_path / "vintages.csv", shift=3)
    args = [*base_args(trace_csv), "--forecast", mode, "--vintages", str(vintages)]
    result = runner.invoke(app, [*args, "--window", "8h", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["forecast"] == mode
    assert summary["deadline_misses"] == 0
    assert summary["captured_share"] > 0.9  # the vintages order the hours right


def test_bad_vintages_are_refused_with_what_to_change(trace_csv: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, [*base_args(trace_csv), "--forecast", "vintage"])
    assert missing.exit_code != 0
    assert "needs a trace with vintages" in missing.output
    row = "2024-03-04T00:00Z,2024-03-04T00:00Z"
    cases = {
        f"issued_at,slot,value\n{row},1\n": "no column(s) 'slot_start'",
        f"issued_at,slot_start,value\n{row},-4\n": "line 2: value",
    }
    for number, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad-{number}.csv"
        bad.write_text(text)
        refused = runner.invoke(
            app, [*base_args(trace_csv), "--forecast", "vintage", "--vintages", str(bad)]
        )
        assert refused.exit_code != 0
        assert message in refused.output
