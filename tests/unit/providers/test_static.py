"""Static provider: constants and hour-of-day tables per region."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.errors import ConfigError, UnknownRegionError
from carbonaware.providers.static import StaticProvider, parse_static_table

from .helpers import FakeClock

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
TABLE = [float(100 + hour) for hour in range(24)]


async def test_constant_for_any_region() -> None:
    static = StaticProvider({"*": 250}, now=FakeClock(NOW))
    point = await static.current("anywhere")
    assert point.intensity == 250
    assert point.start == datetime(2024, 3, 14, 11, tzinfo=UTC)
    assert point.end == datetime(2024, 3, 14, 12, tzinfo=UTC)
    assert point.is_forecast is False
    assert point.source == "static"


async def test_hour_of_day_table_in_utc() -> None:
    static = StaticProvider({"GB": TABLE}, now=FakeClock(NOW))
    start = datetime(2024, 3, 14, 22, 30, tzinfo=UTC)
    points = await static.forecast("gb", start, start + timedelta(hours=3))
    assert [p.start.hour for p in points] == [22, 23, 0, 1]
    assert [p.intensity for p in points] == [122, 123, 100, 101]
    assert all(p.is_forecast for p in points)


async def test_past_hours_are_not_forecasts() -> None:
    static = StaticProvider({"*": TABLE}, now=FakeClock(NOW))
    points = await static.forecast("GB", NOW - timedelta(hours=2), NOW + timedelta(hours=1))
    assert [(p.start.hour, p.is_forecast) for p in points] == [
        (9, False),
        (10, False),
        (11, True),
        (12, True),
    ]


def test_parse_table_forms() -> None:
    tables = parse_static_table(",".join(str(v) for v in TABLE))
    assert tables == {"*": tuple(TABLE)}
    tables = parse_static_table("gb=" + ",".join(str(v) for v in TABLE) + "; DE=380")
    assert tables["GB"][23] == 123
    assert tables["DE"] == (380.0,) * 24


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1,2,3", "has 3 values"),
        ("GB=1;GB=2", "twice"),
        ("GB=abc", "not a number"),
        ("GB=-5", "negative"),
        (" ; ", "empty"),
    ],
)
def test_bad_tables_are_config_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_static_table(text)


async def test_unknown_region_without_default() -> None:
    static = StaticProvider({"GB": 200}, now=FakeClock(NOW))
    with pytest.raises(UnknownRegionError, match="no static values for region 'DE'"):
        await static.current("DE")
    with pytest.raises(ConfigError):
        StaticProvider({})
