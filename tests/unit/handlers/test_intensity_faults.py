"""Region snapshots when the data is wrong in time: an upstream serving an old period as the
current one, and a region the loop has not refreshed since its last held job left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.handlers.intensity import RegionIntensity, checked_current
from carbonaware.metrics import Metrics

NOW = datetime(2024, 5, 1, 12, 10, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def point(start: datetime, value: float, source: str = "ukci") -> IntensityPoint:
    return IntensityPoint(start, start + HALF_HOUR, value, source, is_forecast=True)


def test_an_old_period_served_as_current_is_replaced_by_the_forecast() -> None:
    stale = point(NOW - timedelta(days=3), 90.0)
    forecast = [point(NOW.replace(minute=0), 300.0, "trace")]
    current, problem = checked_current(stale, forecast, NOW)
    assert current == forecast[0]
    assert problem is not None
    assert "old data" in str(problem)
    assert problem.provider == "ukci"


def test_a_current_period_or_the_chains_own_stale_value_is_kept() -> None:
    fresh = point(NOW.replace(minute=0), 200.0)
    assert checked_current(fresh, [], NOW) == (fresh, None)
    just_ended = point(NOW - timedelta(minutes=35), 200.0)  # ended 5 min ago: a late answer
    assert checked_current(just_ended, [], NOW) == (just_ended, None)
    remembered = IntensityPoint(
        NOW - timedelta(hours=2), NOW - timedelta(hours=1, minutes=30), 150.0, "ukci",
        is_forecast=False, stale=True,
    )  # fmt: skip
    assert checked_current(remembered, [], NOW) == (remembered, None)
    assert checked_current(None, [], NOW) == (None, None)


class CountingProvider:
    def __init__(self) -> None:
        self.value = 50.0
        self.period = NOW.replace(minute=0)
        self.calls = 0

    @property
    def name(self) -> str:
        return "counting"

    async def current(self, region: str) -> IntensityPoint:
        self.calls += 1
        return point(self.period, self.value, "counting")

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        return []

    async def aclose(self) -> None:
        return None


async def test_a_snapshot_older_than_max_age_is_taken_again() -> None:
    provider = CountingProvider()
    regions = RegionIntensity(provider, Metrics())
    first = await regions.snapshot("GB", NOW)
    provider.value, provider.period = 300.0, NOW.replace(minute=0) + timedelta(hours=5)
    tick = timedelta(minutes=1)
    same = await regions.snapshot("GB", NOW + timedelta(seconds=30), max_age=tick)
    assert same is first
    later = await regions.snapshot("GB", NOW + timedelta(hours=5), max_age=tick)
    assert later.current is not None
    assert later.current.intensity == 300
    assert provider.calls == 2
