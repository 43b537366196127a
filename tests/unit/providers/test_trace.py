"""Trace provider: replaying a CSV, shifted onto the present by whole weeks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware import data
from carbonaware.api.intensity import IntensityIndex
from carbonaware.errors import ConfigError, ProviderDataError, UnknownRegionError
from carbonaware.providers.trace import TraceProvider
from carbonaware.providers.tracefile import Trace, TraceVintages, load_trace, load_vintages

from .helpers import FakeClock

GB_COLUMNS = {
    "time_column": "Datetime (UTC)",
    "actual_column": "Actual Carbon Intensity (gCO2/kWh)",
    "forecast_column": "Forecast Carbon Intensity (gCO2/kWh)",
    "index_column": "Index",
}


@pytest.fixture
def gb() -> Trace:
    return gb_trace()


def row(trace: Trace, moment: datetime) -> int:
    return trace.starts.index(moment)


def test_shift_keeps_weekday_and_time_of_day_and_lands_near_the_same_date(gb: Trace) -> None:
    now = datetime(2026, 11, 22, 5, 37, tzinfo=UTC)
    provider = TraceProvider(gb, now=FakeClock(now))
    read = provider.trace_time(now)
    assert read is not None
    assert read.weekday() == now.weekday()
    assert read.time() == now.time()
    assert abs(read - datetime(2024, 11, 22, 5, 37, tzinfo=UTC)) <= timedelta(days=3, hours=12)
    assert provider.shift % timedelta(days=7) == timedelta(0)


_GB: list[Trace] = []


def gb_trace() -> Trace:
    if not _GB:
        _GB.append(load_trace(data.GB_2024, **GB_COLUMNS))
    return _GB[0]


@settings(max_examples=60, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    )
)
def test_any_present_maps_to_the_same_weekday_and_time(now: datetime) -> None:
    gb = gb_trace()
    provider = TraceProvider(gb, now=FakeClock(now))
    read = provider.trace_time(now)
    assert read is not None
    assert gb.starts[0] <= read < gb.starts[-1] + gb.step
    assert read.weekday() == now.weekday()
    assert read.time() == now.time()
    same_date = now.replace(year=2024)
    if datetime(2024, 1, 8, tzinfo=UTC) < same_date < datetime(2024, 12, 20, tzinfo=UTC):
        # Moments mapped onto the missing 29 February read the week before.
        filled = datetime(2024, 2, 22, tzinfo=UTC) <= read < datetime(2024, 2, 23, tzinfo=UTC)
        slack = timedelta(days=10, hours=12) if filled else timedelta(days=3, hours=12)
        assert abs(read - same_date) <= slack


async def test_current_is_the_actual_of_the_period_covering_now(gb: Trace) -> None:
    now = datetime(2024, 6, 12, 14, 40, tzinfo=UTC)  # inside the trace: shift is zero weeks
    provider = TraceProvider(gb, now=FakeClock(now))
    point = await provider.current("GB")
    i = row(gb, datetime(2024, 6, 12, 14, 30, tzinfo=UTC))
    assert point.start == datetime(2024, 6, 12, 14, 30, tzinfo=UTC)
    assert point.end == datetime(2024, 6, 12, 15, 0, tzinfo=UTC)
    assert point.intensity == gb.actual[i]
    assert gb.index is not None
    assert point.index == gb.index[i]
    assert point.is_forecast is False
    assert point.source == "trace"


async def test_forecast_gives_actuals_for_started_periods_and_forecasts_ahead(gb: Trace) -> None:
    now = datetime(2024, 6, 12, 14, 40, tzinfo=UTC)
    provider = TraceProvider(gb, now=FakeClock(now))
    start = datetime(2024, 6, 12, 13, 30, tzinfo=UTC)
    points = await provider.forecast("GB", start, start + timedelta(hours=3))
    assert len(points) == 6
    i = row(gb, start)
    assert gb.forecast is not None
    # 13:30, 14:00 and the period covering now (14:30) have happened: actuals.
    assert [p.intensity for p in points[:3]] == list(gb.actual[i : i + 3])
    assert [p.intensity for p in points[3:]] == list(gb.forecast[i + 3 : i + 6])
    assert [p.is_forecast for p in points] == [False, False, False, True, True, True]
    assert all(a.end == b.start for a, b in itertools.pairwise(points))


async def test_current_and_forecast_agree_on_the_period_covering_now(gb: Trace) -> None:
    # A run released and finished within one half hour is priced from forecast(); it must
    # see the value current() showed at its release, not the slot's forecast column.
    now = datetime(2024, 6, 12, 18, 10, tzinfo=UTC)
    provider = TraceProvider(gb, now=FakeClock(now))
    current = await provider.current("GB")
    (covering,) = await provider.forecast("GB", now - timedelta(minutes=5), now)
    i = row(gb, datetime(2024, 6, 12, 18, 0, tzinfo=UTC))
    assert gb.forecast is not None
    assert gb.forecast[i] != gb.actual[i]  # 187 actual, 201 forecast in this slot
    assert covering.intensity == current.intensity == gb.actual[i]
    assert covering.is_forecast is current.is_forecast is False


async def test_wraps_around_the_end_of_the_trace(gb: Trace) -> None:
    clock = FakeClock(datetime(2026, 6, 1, tzinfo=UTC))
    provider = TraceProvider(gb, now=clock)
    # The trace wraps every 52 weeks; find the real time that reads its last period.
    wrap = timedelta(weeks=52)
    last_read = gb.starts[0] + wrap - gb.step
    seam = last_read + provider.shift
    assert provider.trace_time(seam) == last_read
    clock.now = seam - timedelta(days=1)
    points = await provider.forecast("GB", seam, seam + timedelta(days=4))
    assert len(points) == 4 * 48
    assert all(a.end == b.start for a, b in itertools.pairwise(points))
    assert gb.forecast is not None
    assert points[0].intensity == gb.forecast[row(gb, last_read)]
    assert [p.intensity for p in points[1:4]] == list(gb.forecast[0:3])
    assert provider.trace_time(seam + gb.step) == gb.starts[0]


async def test_the_missing_29_february_is_read_from_one_week_earlier(gb: Trace) -> None:
    clock = FakeClock(datetime(2027, 3, 3, tzinfo=UTC))
    provider = TraceProvider(gb, now=clock)
    gap = datetime(2024, 2, 29, 12, 0, tzinfo=UTC)
    assert gap not in gb.starts
    real = gap + provider.shift
    clock.now = real
    point = await provider.current("GB")
    week_before = row(gb, gap - timedelta(days=7))
    assert point.intensity == gb.actual[week_before]
    assert point.start == real
    points = await provider.forecast("GB", real - timedelta(days=1), real + timedelta(days=2))
    assert len(points) == 3 * 48


def write_csv(path: Path, rows: Sequence[tuple[str, float, float | None, str]]) -> Path:
    lines = ["time,actual,forecast,band"]
    lines += [f"{t},{a},{'' if f is None else f},{band}" for t, a, f, band in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_without_a_forecast_column_future_periods_use_actuals(tmp_path: Path) -> None:
    rows = [(f"2024-01-01T{h:02d}:00Z", 100.0 + h, None, "low") for h in range(24)]
    trace = load_trace(
        write_csv(tmp_path / "t.csv", rows), time_column="time", actual_column="actual"
    )
    now = datetime(2024, 1, 1, 5, 30, tzinfo=UTC)
    provider = TraceProvider(trace, now=FakeClock(now), shift_to_now=False)
    points = await provider.forecast("X", now, now + timedelta(hours=2))
    # 05:00-06:00 covers now: it has started and reports its actual.
    assert [(p.intensity, p.is_forecast) for p in points] == [
        (105, False),
        (106, True),
        (107, True),
    ]
    assert points[0].index is None


async def test_without_shift_the_trace_is_read_at_real_time_with_gaps_omitted(
    tmp_path: Path,
) -> None:
    rows = [
        ("2024-01-01T00:00Z", 10.0, 11.0, "very low"),
        ("2024-01-01T01:00Z", 20.0, 21.0, "low"),
        ("2024-01-01T03:00Z", 40.0, 41.0, "high"),
    ]
    trace = load_trace(
        write_csv(tmp_path / "gap.csv", rows),
        time_column="time",
        actual_column="actual",
        forecast_column="forecast",
        index_column="band",
    )
    clock = FakeClock(datetime(2024, 1, 1, 2, 30, tzinfo=UTC))
    provider = TraceProvider(trace, now=clock, shift_to_now=False)
    points = await provider.forecast(
        "X", datetime(2024, 1, 1, tzinfo=UTC), clock.now + timedelta(days=1)
    )
    assert [(p.start.hour, p.intensity) for p in points] == [(0, 10), (1, 20), (3, 41)]
    assert points[-1].index is IntensityIndex.HIGH
    with pytest.raises(ProviderDataError, match=r"^trace: trace gap.csv covers"):
        await provider.current("X")
    clock.now = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ProviderDataError, match="enable trace_shift_to_now"):
        await provider.current("X")


async def test_a_trace_shorter_than_a_week_wraps_by_whole_days(tmp_path: Path) -> None:
    rows = [(f"2024-01-0{1 + h // 24}T{h % 24:02d}:00Z", float(h), None, "") for h in range(48)]
    trace = load_trace(
        write_csv(tmp_path / "two_days.csv", rows), time_column="time", actual_column="actual"
    )
    now = datetime(2026, 5, 20, 7, 15, tzinfo=UTC)
    provider = TraceProvider(trace, now=FakeClock(now))
    point = await provider.current("X")
    assert point.intensity in (7.0, 31.0)  # 07:00 on either trace day
    read = provider.trace_time(now)
    assert read is not None
    assert read.time() == now.time()


async def test_regions_can_be_restricted(gb: Trace) -> None:
    provider = TraceProvider(gb, regions=["GB"], now=FakeClock(datetime(2026, 1, 5, tzinfo=UTC)))
    assert (await provider.current("gb")).source == "trace"
    with pytest.raises(UnknownRegionError, match="no data for region 'DE'"):
        await provider.current("DE")


async def test_the_de_trace_replays_hourly(tmp_path: Path) -> None:
    trace = load_trace(
        data.DE_2023,
        time_column="Datetime (UTC)",
        actual_column="Carbon Intensity gCO₂eq/kWh (LCA)",
    )
    now = datetime(2026, 3, 10, 9, 20, tzinfo=UTC)
    provider = TraceProvider(trace, name="trace", now=FakeClock(now))
    points = await provider.forecast("DE", now, now + timedelta(hours=24))
    assert len(points) == 25
    assert points[0].start == datetime(2026, 3, 10, 9, tzinfo=UTC)
    assert all(p.end - p.start == timedelta(hours=1) for p in points)


def test_a_trace_that_stands_in_for_any_region_says_so_for_other_regions(gb: Trace) -> None:
    provider = TraceProvider(gb, now=FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), home_region="GB")
    assert provider.region_note("GB") is None
    assert provider.region_note("GB-13") is None
    note = provider.region_note("XX")
    assert note is not None
    assert "holds GB data" in note
    assert "'XX'" in note
    restricted = TraceProvider(gb, now=FakeClock(datetime(2026, 3, 1, tzinfo=UTC)), regions=["GB"])
    assert restricted.region_note("XX") is None  # it refuses XX instead (UnknownRegionError)


async def test_with_vintages_a_period_ahead_is_forecast_as_it_was_issued(tmp_path: Path) -> None:
    rows = [(f"2024-01-01T{h:02d}:00Z", 100.0 + h, 500.0 + h, "") for h in range(24)]
    trace = load_trace(
        write_csv(tmp_path / "t.csv", rows),
        time_column="time",
        actual_column="actual",
        forecast_column="forecast",
    )
    hour = timedelta(hours=1)
    day = datetime(2024, 1, 1, tzinfo=UTC)
    # Issued at 02:00 for 02:00-07:00 (value 200 + hour) and at 05:00 for 05:00-06:00 (300 +).
    issued = [(day + 2 * hour, day + h * hour, 200.0 + h) for h in range(2, 8)]
    issued += [(day + 5 * hour, day + h * hour, 300.0 + h) for h in range(5, 7)]
    vintages = TraceVintages(issued)
    assert len(vintages) == 2
    clock = FakeClock(day + 4 * hour + timedelta(minutes=10))
    provider = TraceProvider(trace, now=clock, shift_to_now=False, vintages=vintages)
    points = await provider.forecast("X", clock.now, day + 9 * hour)
    # 04:00 has started (actual); 05:00-07:00 from the 02:00 issue; 08:00 from no issue: column.
    assert [(p.start.hour, p.intensity, p.is_forecast) for p in points] == [
        (4, 104, False),
        (5, 205, True),
        (6, 206, True),
        (7, 207, True),
        (8, 508, True),
    ]
    clock.now = day + 5 * hour + timedelta(minutes=10)
    points = await provider.forecast("X", clock.now, day + 8 * hour)
    # The 05:00 issue is out: it covers 06:00; 07:00 still comes from the 02:00 issue.
    assert [p.intensity for p in points] == [105, 306, 207]


def test_vintages_load_from_a_long_csv_and_refuse_what_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(
        "issued_at,slot_start,value\n"
        "2024-01-01T00:00Z,2024-01-01T01:00Z,12.5\n"
        "2024-01-01T00:00Z,2024-01-01T02:00Z,13\n"
    )
    rows = load_vintages(path)
    assert rows[1] == (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 2, tzinfo=UTC), 13.0)
    path.write_text("issued_at,slot_start,value\n2024-01-01T00:00Z,yesterday,1\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_vintages(path)
    path.write_text("issued_at,slot_start,value\n")
    with pytest.raises(ConfigError, match="no rows"):
        load_vintages(path)
    with pytest.raises(ConfigError, match="cannot read vintages"):
        load_vintages(tmp_path / "missing.csv")
