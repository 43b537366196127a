"""Provider chain and cache: fallback, single flight, TTL, stale-while-error, backoff."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import (
    ProviderDataError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
    UnknownRegionError,
)
from carbonaware.providers.caching import CachingProvider
from carbonaware.providers.chain import ProviderChain
from carbonaware.providers.ukci import UkCarbonIntensityProvider

from .helpers import FakeClock, FakeUpstream, fixture, options

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


class ScriptedProvider:
    """A provider whose answers the test controls; counts calls."""

    def __init__(self, name: str, clock: FakeClock, value: float = 100.0) -> None:
        self._name = name
        self.clock = clock
        self.value = value
        self.failure: ProviderError | None = None
        self.empty = False
        self.calls = 0
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        self.closed = True

    def _points(self, start: datetime, end: datetime) -> list[IntensityPoint]:
        moment = start - (start - datetime(2024, 1, 1, tzinfo=UTC)) % HALF_HOUR
        points = []
        while moment < end:
            points.append(
                IntensityPoint(
                    moment, moment + HALF_HOUR, self.value, self._name, moment > self.clock()
                )
            )
            moment += HALF_HOUR
        return points

    async def current(self, region: str) -> IntensityPoint:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        now = self.clock()
        return self._points(now, now + timedelta(seconds=1))[0]

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return [] if self.empty else self._points(start, end)


def down(name: str) -> ProviderUnavailableError:
    return ProviderUnavailableError(name, "GET /x answered HTTP 503, server error")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


async def test_first_provider_that_answers_wins_and_points_keep_their_source(
    clock: FakeClock,
) -> None:
    primary, fallback = ScriptedProvider("ukci", clock, 200), ScriptedProvider("trace", clock, 90)
    chain = ProviderChain([primary, fallback], clock=clock)
    points = await chain.forecast("GB", NOW, NOW + timedelta(hours=2))
    assert {p.source for p in points} == {"ukci"}
    assert fallback.calls == 0

    primary.failure = down("ukci")
    clock.advance(seconds=301)
    points = await chain.forecast("GB", clock.now, clock.now + timedelta(hours=2))
    assert {p.source for p in points} == {"trace"}
    assert {p.intensity for p in points} == {90}
    assert (await chain.current("GB")).source == "trace"


async def test_thousand_concurrent_forecasts_for_three_regions_make_three_requests() -> None:
    clock = FakeClock(NOW)
    gate = asyncio.Event()
    requests: list[str] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        await gate.wait()
        path = request.url.path
        if "/regionid/" in path:
            body = fixture("ukci_regional_fw48h_regionid.json")
        elif "/postcode/" in path:
            body = fixture("ukci_regional_fw48h_postcode.json")
        else:
            body = fixture("ukci_intensity_fw48h.json")
        return httpx.Response(200, json=body)

    opts = dataclasses.replace(
        options(FakeUpstream(), clock=clock), transport=httpx.MockTransport(upstream)
    )
    ukci = UkCarbonIntensityProvider("http://ukci.test", http_options=opts, now=clock)
    chain = ProviderChain([ukci], clock=clock)
    regions = ["GB", "GB-13", "GB-RG10"]
    calls = [
        asyncio.create_task(chain.forecast(regions[i % 3], NOW, NOW + timedelta(hours=24)))
        for i in range(1000)
    ]
    await _until(lambda: len(requests) == 3)
    for _ in range(20):  # let every caller reach the in-flight fetch
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*calls)
    assert len(requests) == 3
    assert sorted(requests) == [
        "/intensity/2024-03-14T11:00Z/fw48h",
        "/regional/intensity/2024-03-14T11:00Z/fw48h/postcode/RG10",
        "/regional/intensity/2024-03-14T11:00Z/fw48h/regionid/13",
    ]
    assert all(points for points in results)
    assert results[0] == results[3]
    assert results[1] == results[4]
    assert chain.members[0].fetches == 3
    await chain.aclose()


async def test_cached_values_are_reused_for_the_ttl_then_refreshed(clock: FakeClock) -> None:
    primary = ScriptedProvider("ukci", clock)
    chain = ProviderChain([primary], ttl_seconds=300, clock=clock)
    await chain.forecast("GB", NOW, NOW + timedelta(hours=6))
    clock.advance(seconds=299)
    await chain.forecast("GB", clock.now, clock.now + timedelta(hours=12))
    assert primary.calls == 1
    clock.advance(seconds=2)
    await chain.forecast("GB", clock.now, clock.now + timedelta(hours=12))
    assert primary.calls == 2


async def test_current_is_refetched_when_its_period_ends(clock: FakeClock) -> None:
    primary = ScriptedProvider("ukci", clock)
    chain = ProviderChain([primary], ttl_seconds=3600, clock=clock)
    first = await chain.current("GB")
    await chain.current("GB")
    assert primary.calls == 1
    clock.now = first.end
    second = await chain.current("GB")
    assert primary.calls == 2
    assert second.start == first.end


async def test_history_outside_the_forecast_window_is_cached_per_range(clock: FakeClock) -> None:
    primary = ScriptedProvider("ukci", clock)
    chain = ProviderChain([primary], clock=clock)
    past = (NOW - timedelta(hours=5), NOW - timedelta(hours=1))
    points = await chain.forecast("GB", *past)
    assert len(points) == 9
    assert not any(p.is_forecast for p in points)
    await chain.forecast("GB", *past)
    assert primary.calls == 1


async def test_stale_values_are_served_only_when_every_provider_fails(clock: FakeClock) -> None:
    primary, fallback = ScriptedProvider("ukci", clock, 200), ScriptedProvider("trace", clock, 90)
    fetches: list[tuple[str, str]] = []
    chain = ProviderChain(
        [primary, fallback],
        ttl_seconds=300,
        stale_max_age_seconds=3600,
        clock=clock,
        on_fetch=lambda name, outcome: fetches.append((name, outcome)),
    )
    fresh = await chain.forecast("GB", NOW, NOW + timedelta(hours=4))
    await chain.current("GB")
    primary.failure = down("ukci")
    fallback.failure = down("trace")
    clock.advance(minutes=20)
    points = await chain.forecast("GB", clock.now, clock.now + timedelta(hours=2))
    assert points
    assert all(p.stale for p in points)
    assert {p.source for p in points} == {"ukci"}
    assert points[0].intensity == fresh[0].intensity
    current = await chain.current("GB")
    assert current.stale
    assert current.source == "ukci"
    assert current.covers(clock.now)
    assert ("ukci", "stale") in fetches
    assert ("ukci", "unavailable") in fetches

    clock.advance(minutes=50)  # now older than stale_max_age
    with pytest.raises(ProviderUnavailableError) as caught:
        await chain.forecast("GB", clock.now, clock.now + timedelta(hours=2))
    assert str(caught.value).startswith("chain: no provider could give a forecast")
    assert "ukci: GET /x answered HTTP 503" in str(caught.value)
    assert "trace: GET /x answered HTTP 503" in str(caught.value)


async def test_a_failing_provider_is_not_asked_again_during_the_backoff(clock: FakeClock) -> None:
    primary, fallback = ScriptedProvider("ukci", clock), ScriptedProvider("trace", clock)
    chain = ProviderChain(
        [primary, fallback], ttl_seconds=60, error_backoff_seconds=30, clock=clock
    )
    primary.failure = down("ukci")
    await chain.forecast("GB", NOW, NOW + timedelta(hours=1))
    assert primary.calls == 1
    for _ in range(5):
        await chain.forecast("GB", NOW, NOW + timedelta(hours=1))
        await chain.current("GB")
    assert primary.calls == 1
    status = chain.status()[0]
    assert isinstance(status.last_error, ProviderUnavailableError)
    assert status.consecutive_failures == 1
    assert status.backoff_until == NOW + timedelta(seconds=30)

    primary.failure = None
    clock.advance(seconds=31)
    points = await chain.forecast("GB", clock.now, clock.now + timedelta(hours=1))
    assert points[0].source == "ukci"
    status = chain.status()[0]
    assert status.consecutive_failures == 0
    assert status.backoff_until is None
    assert status.last_success_time == clock.now


async def test_retry_after_extends_the_backoff(clock: FakeClock) -> None:
    primary = ScriptedProvider("ukci", clock)
    primary.failure = ProviderRateLimitedError("ukci", "rate limited", retry_after=600)
    chain = ProviderChain([primary], error_backoff_seconds=30, clock=clock)
    with pytest.raises(ProviderRateLimitedError) as caught:
        await chain.current("GB")
    assert caught.value.retry_after == 600
    clock.advance(seconds=599)
    with pytest.raises(ProviderRateLimitedError):
        await chain.current("GB")
    assert primary.calls == 1
    clock.advance(seconds=2)
    primary.failure = None
    assert (await chain.current("GB")).source == "ukci"


async def test_every_provider_not_knowing_the_region_is_unknown_region(clock: FakeClock) -> None:
    first, second = ScriptedProvider("ukci", clock), ScriptedProvider("static", clock)
    first.failure = UnknownRegionError("ukci", "region 'XX' is not a GB region key")
    second.failure = UnknownRegionError("static", "no static values for region 'XX'")
    chain = ProviderChain([first, second], clock=clock)
    with pytest.raises(UnknownRegionError, match=r"^chain: no provider knows"):
        await chain.current("XX")


async def test_an_empty_answer_falls_through_to_the_next_provider(clock: FakeClock) -> None:
    first, second = ScriptedProvider("watttime", clock), ScriptedProvider("trace", clock)
    first.empty = True
    chain = ProviderChain([first, second], clock=clock)
    points = await chain.forecast("GB", NOW, NOW + timedelta(hours=1))
    assert {p.source for p in points} == {"trace"}
    second.empty = True
    assert await chain.forecast("DE", NOW, NOW + timedelta(hours=1)) == []


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(clock: FakeClock) -> None:
    release = asyncio.Event()

    class Slow(ScriptedProvider):
        async def forecast(
            self, region: str, start: datetime, end: datetime
        ) -> list[IntensityPoint]:
            await release.wait()
            return await super().forecast(region, start, end)

    slow = Slow("ukci", clock)
    cache = CachingProvider(slow, clock=clock)
    first = asyncio.create_task(cache.forecast("GB", NOW, NOW + timedelta(hours=1)))
    second = asyncio.create_task(cache.forecast("GB", NOW, NOW + timedelta(hours=1)))
    await _until(lambda: cache.fetches == 1)
    first.cancel()
    release.set()
    assert len(await second) == 3
    assert first.cancelled()
    assert slow.calls == 1


async def test_a_single_caching_provider_serves_stale_itself(clock: FakeClock) -> None:
    primary = ScriptedProvider("ukci", clock)
    cache = CachingProvider(primary, ttl_seconds=60, stale_max_age_seconds=600, clock=clock)
    await cache.forecast("GB", NOW, NOW + timedelta(hours=1))
    primary.failure = ProviderDataError("ukci", "response has no periods (empty data)")
    clock.advance(seconds=120)
    points = await cache.forecast("GB", clock.now, clock.now + timedelta(minutes=30))
    assert points
    assert all(p.stale for p in points)
    clock.advance(seconds=600)
    with pytest.raises(ProviderDataError):
        await cache.forecast("GB", clock.now, clock.now + timedelta(minutes=30))


async def test_closing_the_chain_closes_every_provider(clock: FakeClock) -> None:
    providers = [ScriptedProvider("a", clock), ScriptedProvider("b", clock)]
    await ProviderChain(providers, clock=clock).aclose()
    assert all(p.closed for p in providers)


async def _until(condition: Callable[[], bool], limit_seconds: float = 5.0) -> None:
    """Poll the event loop until ``condition`` holds, failing after ``limit_seconds``."""

    async def wait() -> None:
        while not condition():  # noqa: ASYNC110 - polling a plain condition with a time limit
            await asyncio.sleep(0)

    await asyncio.wait_for(wait(), limit_seconds)


async def test_an_unknown_region_served_by_a_fallback_is_named_as_such() -> None:
    clock = FakeClock(NOW)
    primary, fallback = ScriptedProvider("ukci", clock), ScriptedProvider("static", clock)
    chain = ProviderChain([primary, fallback], clock=clock)
    primary.failure = UnknownRegionError("ukci", "region 'XX' is not a GB region key")
    point = await chain.current("XX")
    assert point.source == "static"
    assert chain.region_note("XX", point.source) == "ukci does not know region 'XX'"
    primary.failure = None
    point = await chain.current("GB")
    assert chain.region_note("GB", point.source) is None
