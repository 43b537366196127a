"""UK Carbon Intensity API provider against the documented response shapes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api.intensity import IntensityIndex
from carbonaware.errors import (
    ProviderDataError,
    ProviderError,
    ProviderUnavailableError,
    UnknownRegionError,
)
from carbonaware.providers import ukci
from carbonaware.providers.ukci import UkCarbonIntensityProvider, UkRegion, parse_region

from .helpers import FakeClock, FakeUpstream, Reply, Sleeps, fixture, options

NOW = datetime(2024, 3, 14, 11, 10, tzinfo=UTC)


def provider(upstream: FakeUpstream, sleeps: Sleeps | None = None) -> UkCarbonIntensityProvider:
    clock = FakeClock(NOW)
    return UkCarbonIntensityProvider(
        "http://ukci.test", http_options=options(upstream, clock=clock, sleeps=sleeps), now=clock
    )


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("GB", UkRegion("national")),
        ("gb", UkRegion("national")),
        ("GB-13", UkRegion("regionid", "13")),
        ("GB-1", UkRegion("regionid", "1")),
        ("GB-17", UkRegion("regionid", "17")),
        ("GB-RG10", UkRegion("postcode", "RG10")),
        ("gb-sw1a", UkRegion("postcode", "SW1A")),
        ("GB-M1", UkRegion("postcode", "M1")),
    ],
)
def test_region_keys(key: str, expected: UkRegion) -> None:
    assert parse_region(key) == expected


@pytest.mark.parametrize("key", ["DE", "GB-0", "GB-18", "GB-", "UK", "GB-RG10 1AA", "GB-13-2"])
async def test_unknown_region_keys_fail_before_any_request(key: str) -> None:
    upstream = FakeUpstream()
    uk = provider(upstream)
    with pytest.raises(UnknownRegionError, match=r"^ukci: region .* is not a GB region key"):
        await uk.current(key)
    with pytest.raises(UnknownRegionError):
        await uk.forecast(key, NOW, NOW + timedelta(hours=1))
    assert upstream.requests == []


async def test_national_current_prefers_the_actual() -> None:
    upstream = FakeUpstream().route("/intensity", Reply(fixture("ukci_intensity.json")))
    point = await provider(upstream).current("GB")
    assert upstream.paths == ["/intensity"]
    assert point.start == datetime(2024, 3, 14, 11, 0, tzinfo=UTC)
    assert point.end == datetime(2024, 3, 14, 11, 30, tzinfo=UTC)
    assert point.intensity == 168.0
    assert point.is_forecast is False
    assert point.index is IntensityIndex.MODERATE
    assert point.source == "ukci"


async def test_national_forecast_uses_fw48h_and_marks_actuals() -> None:
    upstream = FakeUpstream().route(
        "/intensity/2024-03-14T10:00Z/fw48h", Reply(fixture("ukci_intensity_fw48h.json"))
    )
    start = datetime(2024, 3, 14, 10, 0, tzinfo=UTC)
    points = await provider(upstream).forecast("GB", start, start + timedelta(hours=3))
    assert upstream.paths == ["/intensity/2024-03-14T10:00Z/fw48h"]
    assert [p.intensity for p in points] == [180, 176, 172, 151, 118, 96]
    assert [p.is_forecast for p in points] == [False, False, True, True, True, True]
    assert points[-1].end == start + timedelta(hours=3)
    assert points[4].index is IntensityIndex.LOW
    assert all(p.source == "ukci" and p.start.tzinfo is UTC for p in points)


async def test_forecast_range_is_cut_to_the_request() -> None:
    upstream = FakeUpstream().route(
        "/intensity/2024-03-14T11:10Z/fw48h", Reply(fixture("ukci_intensity_fw48h.json"))
    )
    points = await provider(upstream).forecast("GB", NOW, NOW + timedelta(minutes=60))
    assert [p.start.strftime("%H:%M") for p in points] == ["11:00", "11:30", "12:00"]


async def test_long_ranges_use_from_to_queries_in_chunks() -> None:
    upstream = FakeUpstream()
    body = fixture("ukci_intensity_fw48h.json")
    start = datetime(2024, 3, 1, tzinfo=UTC)
    upstream.route("/intensity/2024-03-01T00:00Z/2024-03-15T00:00Z", Reply(body))
    upstream.route("/intensity/2024-03-15T00:00Z/2024-03-20T00:00Z", Reply(body))
    points = await provider(upstream).forecast("GB", start, start + timedelta(days=19))
    assert upstream.paths == [
        "/intensity/2024-03-01T00:00Z/2024-03-15T00:00Z",
        "/intensity/2024-03-15T00:00Z/2024-03-20T00:00Z",
    ]
    assert len(points) == 8  # the same periods twice, de-duplicated


async def test_regional_current_by_region_id_with_data_as_a_list() -> None:
    upstream = FakeUpstream().route(
        "/regional/regionid/13", Reply(fixture("ukci_regional_regionid.json"))
    )
    point = await provider(upstream).current("GB-13")
    assert point.intensity == 241
    assert point.index is IntensityIndex.HIGH
    assert point.is_forecast is True


async def test_regional_forecast_by_region_id_with_data_as_an_object() -> None:
    upstream = FakeUpstream().route(
        "/regional/intensity/2024-03-14T11:00Z/fw48h/regionid/13",
        Reply(fixture("ukci_regional_fw48h_regionid.json")),
    )
    start = datetime(2024, 3, 14, 11, 0, tzinfo=UTC)
    points = await provider(upstream).forecast("GB-13", start, start + timedelta(hours=2))
    assert [p.intensity for p in points] == [241, 229, 187]
    assert [p.index for p in points] == [
        IntensityIndex.HIGH,
        IntensityIndex.HIGH,
        IntensityIndex.MODERATE,
    ]


async def test_postcode_current_and_forecast() -> None:
    upstream = FakeUpstream()
    upstream.route("/regional/postcode/RG10", Reply(fixture("ukci_regional_postcode.json")))
    upstream.route(
        "/regional/intensity/2024-03-14T11:00Z/fw48h/postcode/RG10",
        Reply(fixture("ukci_regional_fw48h_postcode.json")),
    )
    uk = provider(upstream)
    assert (await uk.current("GB-rg10")).intensity == 126
    start = datetime(2024, 3, 14, 11, 0, tzinfo=UTC)
    points = await uk.forecast("GB-RG10", start, start + timedelta(hours=1))
    assert [p.intensity for p in points] == [126, 98]


def test_regional_period_data_may_be_a_single_object() -> None:
    body = fixture("ukci_regional_regionid.json")
    body["data"][0]["data"] = body["data"][0]["data"][0]
    (point,) = ukci.parse_regional(body)
    assert point.intensity == 241


def test_out_of_order_and_duplicate_periods_are_sorted_and_merged() -> None:
    body = fixture("ukci_intensity_fw48h.json")
    entries = body["data"]
    duplicate = copy.deepcopy(entries[3])
    duplicate["intensity"]["forecast"] = 150
    body["data"] = [entries[5], entries[1], entries[3], entries[0], duplicate]
    points = ukci.parse_national(body)
    assert [p.start.strftime("%H:%M") for p in points] == ["10:00", "10:30", "11:30", "12:30"]
    assert points[2].intensity == 150  # the later duplicate wins


async def test_unknown_postcode_answer_is_unknown_region() -> None:
    upstream = FakeUpstream().route(
        "/regional/postcode/ZZ99", Reply(fixture("ukci_error_postcode.json"), status=400)
    )
    with pytest.raises(UnknownRegionError) as caught:
        await provider(upstream).current("GB-ZZ99")
    assert str(caught.value).startswith("ukci: GET /regional/postcode/ZZ99 answered HTTP 400")
    assert "valid postcode" in str(caught.value)
    assert len(upstream.requests) == 1


async def test_server_error_is_unavailable_after_retries() -> None:
    upstream = FakeUpstream().route("/intensity", Reply({"message": "internal"}, status=500))
    with pytest.raises(ProviderUnavailableError, match=r"^ukci: .*HTTP 500"):
        await provider(upstream).current("GB")
    assert len(upstream.requests) == 3


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b.update(data=[]), "empty data"),
        (lambda b: b.pop("data"), "no field 'data'"),
        (lambda b: b["data"][0].pop("from"), "no field 'from'"),
        (lambda b: b["data"][0]["intensity"].update(actual=None, forecast=None), "neither"),
        (lambda b: b["data"][0]["intensity"].update(actual="high"), "expected a number"),
        (lambda b: b["data"][0]["intensity"].update(actual=-5), "outside"),
        (lambda b: b["data"][0].update(to="2024-03-14T10:00Z"), "before it starts"),
        (lambda b: b["data"][0].update(**{"from": "yesterday"}), "not an ISO 8601 time"),
        (lambda b: b.update(data="nothing"), "expected an array"),
    ],
)
def test_bad_national_payloads_are_data_errors(mutate: object, problem: str) -> None:
    body = fixture("ukci_intensity.json")
    mutate(body)  # type: ignore[operator]
    with pytest.raises(ProviderDataError) as caught:
        ukci.parse_national(body)
    assert str(caught.value).startswith("ukci: ")
    assert problem in str(caught.value)


def test_error_object_in_a_200_answer() -> None:
    with pytest.raises(UnknownRegionError):
        ukci.parse_regional(fixture("ukci_error_postcode.json"))
    with pytest.raises(ProviderDataError, match="Internal"):
        ukci.parse_national({"error": {"code": "500", "message": "Internal failure"}})


def test_every_failure_is_a_provider_error() -> None:
    bad_documents: list[object] = [None, [], "x", 3, {"data": [None]}, {"data": {"data": 1}}]
    for bad in bad_documents:
        for parse in (ukci.parse_national, ukci.parse_regional):
            with pytest.raises(ProviderError):
                parse(bad)
