"""``carbonaware simulate --regions``: names, JSON keys, the decisions file, refusals."""

from __future__ import annotations

import csv
import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from carbonaware.cli import app
from carbonaware.scheduling.report import builtin_trace, parse_regions

from .helpers import T0

runner = CliRunner()
HOUR = timedelta(hours=1)


def write_trace(path: Path, *, hours: int, phase: float, level: float, start: int = 0) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["when", "actual"])
        for i in range(start, start + hours):
            value = level + 100 * math.sin(2 * math.pi * (i / 24 + phase))
            writer.writerow([(T0 + i * HOUR).strftime("%Y-%m-%dT%H:%MZ"), f"{value:.1f}"])
    return path


def plain(output: str) -> str:
    """The output as one line, without the frame rich draws around an error."""
    return " ".join(output.replace("│", " ").split())


@pytest.fixture
def home_and_away(tmp_path: Path) -> str:
    home = write_trace(tmp_path / "home.csv", hours=5 * 24, phase=0.0, level=300)
    away = write_trace(tmp_path / "away.csv", hours=5 * 24, phase=0.5, level=280)
    return f"HOME={home},AWAY={away}"


def test_json_keys_and_the_decisions_file(home_and_away: str, tmp_path: Path) -> None:
    out = tmp_path / "decisions.csv"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--regions",
            home_and_away,
            "--time-column",
            "when",
            "--actual-column",
            "actual",
            "--json",
            "--decisions-out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["regions"] == ["HOME", "AWAY"]
    assert summary["baseline"] == "HOME at once"
    assert summary["forecast"] == "own"  # no forecast column
    assert summary["arrival_every_minutes"] == 60.0  # one trace step by default
    assert summary["deadline_misses"] == 0
    assert summary["attribution"] is None
    for key in (
        "savings",
        "oracle_savings",
        "first_region_savings",
        "first_region_oracle_savings",
        "best_region_now_savings",
        "one_shot_savings",
        "captured_share",
    ):
        assert isinstance(summary[key], float), key
    assert summary["oracle_savings"] >= summary["savings"]
    assert summary["savings_pct"] == round(summary["savings"] * 100, 2)
    assert summary["misses"] == summary["deadline_misses"]
    assert sum(summary["jobs_by_region"].values()) == summary["jobs"]
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["arrival", "latest_start", "start", "region"]
    assert len(rows) - 1 == summary["jobs"]
    assert {row[3] for row in rows[1:]} <= {"HOME", "AWAY"}


def test_traces_over_different_hours_are_a_usage_error(tmp_path: Path) -> None:
    home = write_trace(tmp_path / "home.csv", hours=72, phase=0.0, level=300)
    late = write_trace(tmp_path / "late.csv", hours=72, phase=0.5, level=280, start=1)
    result = runner.invoke(
        app,
        [
            "simulate",
            "--regions",
            f"A={home},B={late}",
            "--time-column",
            "when",
            "--actual-column",
            "actual",
        ],
    )
    assert result.exit_code == 2
    assert "must cover the same slots" in plain(result.output)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--regions", "DE,XX"], "unknown region 'XX'"),
        (["--regions", "A="], "must be NAME=FILE.csv"),
        (["--regions", "DE", "--trace", "de-2023"], "not both"),
        (["--regions", "DE,GB"], "same step: DE has 1:00:00, GB has 0:30:00"),
        (
            ["--regions", "DE,US-MIDA-PJM", "--policy", "Threshold", "--max-intensity", "300"],
            "not Threshold",
        ),
    ],
)
def test_bad_regions_are_usage_errors(args: list[str], complaint: str) -> None:
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    assert complaint in plain(result.output)


def test_shipped_regions_by_zone_or_key_and_their_credit() -> None:
    assert [s.name for s in parse_regions("de, us-mida-pjm,IN-WE, gb-2024")] == [
        "DE",
        "US-MIDA-PJM",
        "IN-WE",
        "GB",
    ]
    shipped = builtin_trace("pjm-2023")
    assert shipped is not None
    assert shipped.path.is_file()
    result = runner.invoke(
        app,
        [
            "simulate",
            "--regions",
            "de,US-MIDA-PJM,in-we-2023",
            "--policy",
            "Immediate",
            "--arrival-every",
            "24h",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["regions"] == ["DE", "US-MIDA-PJM", "IN-WE"]
    assert summary["jobs"] == 364
    assert summary["deadline_misses"] == 0
    assert summary["mean_delay_hours"] == 0.0
    for zone in ("DE", "US-MIDA-PJM", "IN-WE"):
        assert f"{zone} 2023 data: Electricity Maps (ODbL)" in summary["attribution"]
