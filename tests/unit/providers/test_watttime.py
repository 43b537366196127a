"""WattTime v3 provider: login and token renewal, MOER units, signal index bands."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from carbonaware.api.intensity import IntensityIndex
from carbonaware.errors import ProviderAuthError, ProviderDataError, UnknownRegionError
from carbonaware.providers import watttime
from carbonaware.providers.watttime import WattTimeProvider, index_from_percentile

from .helpers import FakeClock, FakeUpstream, Reply, fixture, options

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
PASSWORD = "wt-pa55word-secret"
LB_PER_MWH = 0.45359237


def provider(upstream: FakeUpstream, clock: FakeClock | None = None) -> WattTimeProvider:
    clock = clock or FakeClock(NOW)
    return WattTimeProvider(
        "alice", PASSWORD, "http://wt.test", http_options=options(upstream, clock=clock), now=clock
    )


def standard_upstream() -> FakeUpstream:
    upstream = FakeUpstream()
    upstream.route("/login", Reply(fixture("watttime_login.json")))
    upstream.route("/v3/forecast", Reply(fixture("watttime_forecast.json")))
    upstream.route("/v3/signal-index", Reply(fixture("watttime_signal_index.json")))
    upstream.route("/v3/historical", Reply(fixture("watttime_historical.json")))
    return upstream


async def test_login_uses_basic_auth_and_data_calls_use_the_bearer_token() -> None:
    upstream = standard_upstream()
    wt = provider(upstream)
    await wt.forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    login, data = upstream.requests
    expected = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert login.url.path == "/login"
    assert login.headers["Authorization"] == f"Basic {expected}"
    assert data.headers["Authorization"] == "Bearer eyJhbGciOiJIUzI1NiJ9.test-token-1"
    assert data.url.params["signal_type"] == "co2_moer"
    assert data.url.params["region"] == "CAISO_NORTH"
    assert PASSWORD not in repr(wt)


async def test_forecast_converts_lbs_per_mwh_and_averages_half_hours() -> None:
    points = await provider(standard_upstream()).forecast(
        "CAISO_NORTH", NOW, NOW + timedelta(hours=1)
    )
    assert [(p.start.hour, p.start.minute) for p in points] == [(11, 0), (11, 30)]
    assert points[0].end - points[0].start == timedelta(minutes=30)
    assert points[0].intensity == pytest.approx(925.0 * LB_PER_MWH)
    assert points[1].intensity == pytest.approx(600.0 * LB_PER_MWH)
    assert all(p.is_forecast and p.source == "watttime" for p in points)


async def test_current_combines_the_value_and_the_percentile_band() -> None:
    upstream = standard_upstream()
    point = await provider(upstream).current("caiso_north")
    assert upstream.paths == ["/login", "/v3/forecast", "/v3/signal-index"]
    assert upstream.requests[1].url.params["horizon_hours"] == "0"
    assert point.start == datetime(2024, 3, 14, 11, 10, tzinfo=UTC)
    assert point.end == datetime(2024, 3, 14, 11, 15, tzinfo=UTC)
    assert point.intensity == pytest.approx(920.0 * LB_PER_MWH)
    assert point.index is IntensityIndex.HIGH  # percentile 67
    assert point.is_forecast is False


@pytest.mark.parametrize(
    ("percentile", "band"),
    [
        (0, IntensityIndex.VERY_LOW),
        (19.9, IntensityIndex.VERY_LOW),
        (20, IntensityIndex.LOW),
        (50, IntensityIndex.MODERATE),
        (79.99, IntensityIndex.HIGH),
        (80, IntensityIndex.VERY_HIGH),
        (100, IntensityIndex.VERY_HIGH),
    ],
)
def test_percentile_bands(percentile: float, band: IntensityIndex) -> None:
    assert index_from_percentile(percentile) is band


async def test_token_is_reused_then_renewed_before_it_expires() -> None:
    upstream = standard_upstream()
    clock = FakeClock(NOW)
    wt = provider(upstream, clock)
    await wt.forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    clock.advance(minutes=20)
    await wt.forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    assert wt.logins == 1
    clock.advance(minutes=6)
    await wt.forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    assert wt.logins == 2
    assert upstream.paths.count("/login") == 2


async def test_a_401_logs_in_again_once() -> None:
    upstream = standard_upstream()
    upstream.route("/login", Reply({"token": "first"}), Reply({"token": "second"}))

    def forecast(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer first":
            return httpx.Response(401, json={"error": "token expired"})
        return httpx.Response(200, json=fixture("watttime_forecast.json"))

    upstream.route("/v3/forecast", forecast)
    wt = provider(upstream)
    points = await wt.forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    assert len(points) == 2
    assert wt.logins == 2
    assert upstream.paths == ["/login", "/v3/forecast", "/login", "/v3/forecast"]


async def test_a_second_401_is_an_auth_error() -> None:
    upstream = standard_upstream()
    upstream.route("/v3/forecast", Reply({"error": "not allowed"}, status=401))
    with pytest.raises(ProviderAuthError, match=r"^watttime: GET /v3/forecast answered HTTP 401"):
        await provider(upstream).forecast("CAISO_NORTH", NOW, NOW + timedelta(hours=1))
    assert upstream.paths.count("/login") == 2


async def test_rejected_login_is_an_auth_error_without_the_password() -> None:
    upstream = FakeUpstream().route("/login", Reply({"error": "bad credentials"}, status=403))
    with pytest.raises(ProviderAuthError) as caught:
        await provider(upstream).current("CAISO_NORTH")
    assert "GET /login answered HTTP 403" in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_missing_credentials() -> None:
    upstream = FakeUpstream()
    wt = WattTimeProvider(None, None, "http://wt.test", http_options=options(upstream))
    with pytest.raises(ProviderAuthError, match="no credentials"):
        await wt.current("CAISO_NORTH")
    assert upstream.requests == []


async def test_unknown_region() -> None:
    upstream = standard_upstream()
    upstream.route("/v3/forecast", Reply({"error": "Invalid region: NOWHERE"}, status=400))
    with pytest.raises(UnknownRegionError, match="Invalid region"):
        await provider(upstream).forecast("NOWHERE", NOW, NOW + timedelta(hours=1))
    with pytest.raises(UnknownRegionError):
        await provider(upstream).current("CAISO NORTH")


async def test_past_ranges_come_from_the_historical_endpoint_as_actuals() -> None:
    upstream = standard_upstream()
    start = NOW - timedelta(hours=2, minutes=10)  # 09:00
    points = await provider(upstream).forecast("CAISO_NORTH", start, NOW - timedelta(minutes=10))
    historical = next(r for r in upstream.requests if r.url.path == "/v3/historical")
    assert historical.url.params["start"] == "2024-03-14T09:00:00Z"
    assert historical.url.params["end"] == "2024-03-14T11:00:00Z"
    assert "/v3/forecast" not in upstream.paths
    assert [(p.start.hour, p.start.minute) for p in points] == [(9, 0), (9, 30), (10, 0), (10, 30)]
    assert [p.intensity for p in points] == pytest.approx(
        [500 * LB_PER_MWH] * 2 + [700 * LB_PER_MWH] * 2
    )
    assert not any(p.is_forecast for p in points)


async def test_a_range_across_now_joins_history_and_forecast() -> None:
    upstream = standard_upstream()
    points = await provider(upstream).forecast(
        "CAISO_NORTH", NOW - timedelta(minutes=40), NOW + timedelta(minutes=50)
    )
    assert [(p.start.hour, p.start.minute, p.is_forecast) for p in points] == [
        (10, 30, False),  # reported
        (11, 0, True),  # partly ahead of now: a forecast
        (11, 30, True),
    ]


async def test_without_historical_access_past_ranges_have_no_points() -> None:
    upstream = standard_upstream()
    upstream.route("/v3/historical", Reply({"error": "plan has no historical data"}, status=403))
    points = await provider(upstream).forecast("CAISO_NORTH", NOW - timedelta(hours=2), NOW)
    assert points == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b.update(data=[]), "empty data"),
        (lambda b: b["meta"].update(units="kg_per_hour"), "meta.units"),
        (lambda b: b["meta"].update(data_point_period_seconds=0), "data_point_period_seconds"),
        (lambda b: b["data"][0].pop("value"), "no field 'value'"),
        (lambda b: b["data"][0].update(point_time=None), "expected an ISO 8601 time"),
    ],
)
def test_bad_forecast_payloads(mutate: object, problem: str) -> None:
    body = fixture("watttime_forecast.json")
    mutate(body)  # type: ignore[operator]
    with pytest.raises(ProviderDataError) as caught:
        watttime.parse_forecast(body)
    assert str(caught.value).startswith("watttime: ")
    assert problem in str(caught.value)


def test_bad_signal_index_and_login_payloads() -> None:
    with pytest.raises(ProviderDataError, match="not a percentile"):
        watttime.parse_signal_index({"data": [{"point_time": "2024-03-14T11:10Z", "value": 250}]})
    with pytest.raises(ProviderDataError, match="empty data"):
        watttime.parse_signal_index({"data": [], "meta": {}})
    with pytest.raises(ProviderDataError, match="token"):
        watttime.parse_login({"token": ""})
