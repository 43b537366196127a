"""Electricity Maps v3 provider against the documented response shapes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderRateLimitedError,
    UnknownRegionError,
)
from carbonaware.providers import electricitymaps
from carbonaware.providers.electricitymaps import ElectricityMapsProvider

from .helpers import FakeClock, FakeUpstream, Reply, Sleeps, fixture, options

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
TOKEN = "em-t0ken-do-not-leak"


def provider(
    upstream: FakeUpstream, token: str | None = TOKEN, sleeps: Sleeps | None = None
) -> ElectricityMapsProvider:
    clock = FakeClock(NOW)
    return ElectricityMapsProvider(
        token,
        "http://em.test/v3",
        http_options=options(upstream, clock=clock, sleeps=sleeps),
        now=clock,
    )


async def test_latest_sends_the_token_header_and_zone() -> None:
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest", Reply(fixture("electricitymaps_latest.json"))
    )
    point = await provider(upstream).current("de")
    (request,) = upstream.requests
    assert request.headers["auth-token"] == TOKEN
    assert request.url.params["zone"] == "DE"
    assert point.intensity == 302
    assert point.start == datetime(2024, 3, 14, 11, tzinfo=UTC)
    assert point.end == datetime(2024, 3, 14, 12, tzinfo=UTC)
    assert point.is_forecast is False
    assert point.index is None
    assert point.source == "electricitymaps"


async def test_forecast_merges_past_range_actuals_and_forecasts() -> None:
    upstream = FakeUpstream()
    upstream.route("/v3/carbon-intensity/forecast", Reply(fixture("electricitymaps_forecast.json")))
    upstream.route(
        "/v3/carbon-intensity/past-range", Reply(fixture("electricitymaps_past_range.json"))
    )
    start = datetime(2024, 3, 14, 9, tzinfo=UTC)
    points = await provider(upstream).forecast("DE", start, start + timedelta(hours=5))
    assert [p.start.hour for p in points] == [9, 10, 11, 12, 13]
    assert [p.intensity for p in points] == [341, 329, 305, 288, 251]
    assert [p.is_forecast for p in points] == [False, False, True, True, True]
    past = next(r for r in upstream.requests if r.url.path.endswith("past-range"))
    assert past.url.params["start"] == "2024-03-14T09:00:00Z"
    assert past.url.params["end"] == "2024-03-14T11:00:00Z"


async def test_future_only_forecast_does_not_ask_for_the_past() -> None:
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/forecast", Reply(fixture("electricitymaps_forecast.json"))
    )
    points = await provider(upstream).forecast("DE", NOW, NOW + timedelta(hours=2))
    assert upstream.paths == ["/v3/carbon-intensity/forecast"]
    assert [p.intensity for p in points] == [305, 288, 251]


async def test_rejected_token_is_an_auth_error_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest", Reply({"message": "Invalid auth-token"}, status=401)
    )
    em = provider(upstream)
    with pytest.raises(ProviderAuthError) as caught:
        await em.current("DE")
    assert str(caught.value).startswith("electricitymaps: ")
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(em)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_missing_token_fails_without_a_request() -> None:
    upstream = FakeUpstream()
    with pytest.raises(ProviderAuthError, match="no API token"):
        await provider(upstream, token=None).current("DE")
    assert upstream.requests == []


async def test_unknown_zone() -> None:
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest",
        Reply(fixture("electricitymaps_error_zone.json"), status=404),
    )
    with pytest.raises(UnknownRegionError, match="does not exist"):
        await provider(upstream).current("XX-YY")
    with pytest.raises(UnknownRegionError, match="not an Electricity Maps zone key"):
        await provider(upstream).current("not a zone")


async def test_rate_limit_retry_after() -> None:
    sleeps = Sleeps()
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest",
        Reply({"message": "quota"}, status=429, headers={"Retry-After": "2"}),
        Reply(fixture("electricitymaps_latest.json")),
    )
    assert (await provider(upstream, sleeps=sleeps).current("DE")).intensity == 302
    assert sleeps.calls == [2.0]
    upstream = FakeUpstream().route(
        "/v3/carbon-intensity/latest", Reply(status=429, headers={"Retry-After": "9000"})
    )
    with pytest.raises(ProviderRateLimitedError) as caught:
        await provider(upstream).current("DE")
    assert caught.value.retry_after == 9000


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({**fixture("electricitymaps_latest.json"), "carbonIntensity": None}, "is null"),
        ({"zone": "DE", "datetime": "2024-03-14T11:00:00.000Z"}, "no field 'carbonIntensity'"),
        ({**fixture("electricitymaps_latest.json"), "datetime": 1710414000}, "ISO 8601"),
        (
            {**fixture("electricitymaps_latest.json"), "temporalGranularity": "weekly"},
            "not supported",
        ),
        ({"status": "error", "message": "Internal error"}, "Internal error"),
    ],
)
def test_bad_latest_payloads(body: object, problem: str) -> None:
    with pytest.raises(ProviderDataError) as caught:
        electricitymaps.parse_latest(body)
    assert str(caught.value).startswith("electricitymaps: ")
    assert problem in str(caught.value)


def test_empty_forecast_and_past_range_are_data_errors() -> None:
    with pytest.raises(ProviderDataError, match="empty forecast"):
        electricitymaps.parse_forecast({"zone": "DE", "forecast": []})
    with pytest.raises(ProviderDataError, match="empty data"):
        electricitymaps.parse_past_range({"zone": "DE", "data": []})


def test_out_of_order_and_duplicate_hours() -> None:
    body = fixture("electricitymaps_forecast.json")
    rows = body["forecast"]
    body["forecast"] = [rows[2], rows[0], rows[2] | {"carbonIntensity": 250}, rows[1]]
    points = electricitymaps.parse_forecast(body)
    assert [p.start.hour for p in points] == [11, 12, 13]
    assert points[-1].intensity == 250
