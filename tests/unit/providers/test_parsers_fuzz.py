"""Every provider parser, fed arbitrary JSON, returns valid points or raises a ProviderError."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.errors import ProviderError
from carbonaware.providers import electricitymaps, ukci, watttime

# Keys and values the real responses use, so generated documents often get deep into the
# parsers instead of failing at the first lookup.
KEYS = st.sampled_from(
    [
        "data",
        "from",
        "to",
        "intensity",
        "forecast",
        "actual",
        "index",
        "regionid",
        "shortname",
        "postcode",
        "error",
        "message",
        "status",
        "zone",
        "carbonIntensity",
        "datetime",
        "temporalGranularity",
        "point_time",
        "value",
        "meta",
        "units",
        "data_point_period_seconds",
        "token",
    ]
)
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "2024-03-14T11:00Z",
            "2024-03-14T11:30Z",
            "2024-03-14T11:00:00.000Z",
            "2024-03-14T11:05:00+00:00",
            "9999-12-31T23:59Z",
            "0001-01-01T00:00Z",
            "moderate",
            "very high",
            "lbs_co2_per_mwh",
            "percentile",
            "hourly",
            "5_minutes",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=6)), children, max_size=6),
    ),
    max_leaves=40,
)


def _check_points(result: object) -> None:
    points: list[Any] = result if isinstance(result, list) else [result]
    starts = [p.start for p in points]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    for point in points:
        assert isinstance(point, IntensityPoint)
        assert point.end > point.start
        assert point.start.utcoffset() is not None
        assert point.start.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert point.intensity >= 0
        assert point.index is None or isinstance(point.index, IntensityIndex)


def _check_signal(result: object) -> None:
    assert isinstance(result, tuple)
    percentile, when = result
    assert 0 <= percentile <= 100
    assert isinstance(when, datetime)


def _check_token(result: object) -> None:
    assert isinstance(result, str)
    assert result


PARSERS: dict[str, tuple[Callable[[Any], object], Callable[[object], None]]] = {
    "ukci.parse_national": (ukci.parse_national, _check_points),
    "ukci.parse_regional": (ukci.parse_regional, _check_points),
    "electricitymaps.parse_latest": (electricitymaps.parse_latest, _check_points),
    "electricitymaps.parse_forecast": (electricitymaps.parse_forecast, _check_points),
    "electricitymaps.parse_past_range": (electricitymaps.parse_past_range, _check_points),
    "watttime.parse_forecast": (watttime.parse_forecast, _check_points),
    "watttime.parse_signal_index": (watttime.parse_signal_index, _check_signal),
    "watttime.parse_login": (watttime.parse_login, _check_token),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=120, deadline=None)
@given(document=JSON)
def test_arbitrary_json_gives_a_result_or_a_provider_error(name: str, document: Any) -> None:
    parse, check = PARSERS[name]
    failure: ProviderError | None = None
    try:
        result = parse(document)
    except ProviderError as error:
        failure = error
    else:
        check(result)
    if failure is not None:
        assert failure.provider == name.split(".")[0]
        assert str(failure).startswith(f"{failure.provider}: ")


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_near_valid_documents_never_escape_as_other_errors(name: str, data: st.DataObject) -> None:
    """Start from a real fixture shape and replace one leaf with arbitrary JSON."""
    from .helpers import fixture

    base = {
        "ukci.parse_national": "ukci_intensity_fw48h.json",
        "ukci.parse_regional": "ukci_regional_fw48h_regionid.json",
        "electricitymaps.parse_latest": "electricitymaps_latest.json",
        "electricitymaps.parse_forecast": "electricitymaps_forecast.json",
        "electricitymaps.parse_past_range": "electricitymaps_past_range.json",
        "watttime.parse_forecast": "watttime_forecast.json",
        "watttime.parse_signal_index": "watttime_signal_index.json",
        "watttime.parse_login": "watttime_login.json",
    }[name]
    document = fixture(base)
    paths = list(_leaf_paths(document))
    path = data.draw(st.sampled_from(paths))
    _set(document, path, data.draw(JSON))
    json.dumps(document, allow_nan=True)
    parse, check = PARSERS[name]
    try:
        result = parse(document)
    except ProviderError:
        return
    check(result)


def _leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(node, list):
        for position, child in enumerate(node):
            paths += _leaf_paths(child, (*prefix, position))
    return paths


def _set(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
