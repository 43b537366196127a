"""``carbonaware simulate --interruptible``: options, JSON and plain output, the segments file."""

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
        for i in range(5 * 48):
            value = 200 + 90 * math.sin(2 * math.pi * i / 48) + 20 * math.sin(i / 5)
            moment = (T0 + i * HALF_HOUR).strftime("%Y-%m-%dT%H:%MZ")
            writer.writerow([moment, f"{value:.1f}", f"{value + 8:.1f}"])
    return path


def args(trace_csv: Path, *extra: str) -> list[str]:
    return [
        "simulate",
        "--trace",
        str(trace_csv),
        "--time-column",
        "when",
        "--actual-column",
        "actual",
        "--forecast-column",
        "predicted",
        "--duration",
        "6h",
        "--window",
        "24h",
        "--arrival-every",
        "1h",
        "--interruptible",
        *extra,
    ]


def test_json_gives_the_savings_the_misses_and_both_oracles(trace_csv: Path) -> None:
    result = runner.invoke(
        app, args(trace_csv, "--min-run", "1h", "--resume-overhead", "5m", "--json")
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["interruptible"] is True
    assert summary["forecast"] == "column"
    assert summary["misses"] == 0
    assert summary["min_run_hours"] == 1.0
    assert summary["resume_overhead_minutes"] == 5.0
    assert summary["max_interruptions"] is None
    assert summary["oracle_interruptible_pct"] >= summary["oracle_single_pct"] > 0
    assert 0 < summary["savings_pct"] <= summary["oracle_interruptible_pct"]


def test_the_segments_file_has_one_row_per_run(trace_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "segments.csv"
    result = runner.invoke(
        app,
        args(trace_csv, "--max-interruptions", "2", "--json", "--decisions-out", str(out)),
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["arrival", "latest_finish", "segment_start", "segment_end"]
    arrivals = {row[0] for row in rows[1:]}
    assert len(arrivals) == summary["jobs"]
    assert len(rows) - 1 > summary["jobs"]  # some jobs paused
    per_job: dict[str, int] = {}
    for row in rows[1:]:
        per_job[row[0]] = per_job.get(row[0], 0) + 1
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[2])
    assert max(per_job.values()) <= 3  # at most two pauses


def test_plain_output_when_piped(trace_csv: Path) -> None:
    result = runner.invoke(app, args(trace_csv))
    assert result.exit_code == 0, result.output
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.output.splitlines())
    assert rows["deadline misses"] == "0"
    assert "min run 1.00 h" in rows["policy"]
    assert rows["savings vs immediate"].endswith("%")
    assert rows["interruptible oracle savings"].endswith("%")


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--regions", "DE"], "not --regions"),
        (["--policy", "Immediate"], "policy Forecast"),
        (["--min-run", "soon"], "cannot read duration"),
        (["--max-interruptions", "-1"], "must not be negative"),
    ],
)
def test_bad_options_are_usage_errors(trace_csv: Path, extra: list[str], complaint: str) -> None:
    command = args(trace_csv, *extra)
    if "--regions" in extra:
        command = [part for part in command if part not in ("--trace", str(trace_csv))]
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert complaint in flat(result.output)


def test_interruptible_options_need_interruptible(trace_csv: Path) -> None:
    command = [part for part in args(trace_csv, "--min-run", "2h") if part != "--interruptible"]
    result = runner.invoke(app, command)
    assert result.exit_code == 2
    assert "need --interruptible" in flat(result.output)


def flat(output: str) -> str:
    """The error text without the box drawn around it, on one line."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())
