"""A held job's "now" values follow the region's current intensity (the metric's value),
and are written only when what they show changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carbonaware.api.carbonawarejob import SchedulePolicy
from carbonaware.api.intensity import IntensityPoint
from carbonaware.handlers.hold import display_update
from carbonaware.handlers.intensity import RegionSnapshot
from carbonaware.handlers.state import HeldWork, WorkKind

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def snapshot(value: float) -> RegionSnapshot:
    point = IntensityPoint(
        start=NOW, end=NOW + timedelta(minutes=30), intensity=value, source="ukci",
        is_forecast=False,
    )  # fmt: skip
    return RegionSnapshot("GB", NOW, point, (), None, None)


def work(status: dict[str, object], kind: WorkKind = WorkKind.CARBON_AWARE_JOB) -> HeldWork:
    return HeldWork(
        kind=kind, namespace="ns", name="train", uid="u1", region="GB",
        policy=SchedulePolicy.FORECAST, created=NOW, latest_start=NOW + timedelta(hours=6),
        expected_duration_seconds=3600, max_intensity=None, max_index=None, priority=0,
        target=None, planned_start=NOW + timedelta(hours=3, minutes=12), held_reason="x",
        body={"status": status},
    )  # fmt: skip


def test_a_held_job_first_valued_63_reads_58_when_the_grid_does() -> None:
    doc = display_update(work({"intensity": {"current": 63.0}}), snapshot(58.0), NOW)
    assert doc == {
        "intensityDisplay": "58 gCO2e/kWh",
        "plannedStartDisplay": "in 3h10m",
        "intensity": {"current": 58.0, "source": "ukci"},
    }


def test_nothing_is_written_when_nothing_shown_changed() -> None:
    status = {
        "intensity": {"current": 58.0},
        "intensityDisplay": "58 gCO2e/kWh",
        "plannedStartDisplay": "in 3h10m",
    }
    assert display_update(work(status), snapshot(58.0), NOW) is None
    # Five minutes on, "in 3h10m" still reads the same (10-minute steps beyond an hour).
    assert display_update(work(status), snapshot(58.0), NOW + timedelta(minutes=1)) is None
    assert display_update(work(status), snapshot(58.0), NOW + timedelta(minutes=5)) is not None


def test_plain_jobs_and_missing_data_write_nothing() -> None:
    assert display_update(work({}, WorkKind.JOB), snapshot(58.0), NOW) is None
    assert display_update(work({}), None, NOW) is None
