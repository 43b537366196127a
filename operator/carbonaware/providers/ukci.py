"""UK Carbon Intensity API (NESO, https://api.carbonintensity.org.uk): free, no key.

Data: "Carbon Intensity API, NESO", CC BY 4.0 (https://carbon-intensity.github.io/terms/).

Region keys (case-insensitive):

- ``GB``: national, half-hourly ``forecast`` and estimated ``actual`` (``/intensity``...).
- ``GB-<id>`` with id 1..17: a DNO region (1 North Scotland ... 14 South East England,
  15 England, 16 Scotland, 17 Wales), e.g. ``GB-13`` for London.
- ``GB-<outward postcode>``: the region containing a postcode district, e.g. ``GB-RG10``.

National periods prefer the ``actual`` (past periods) over the ``forecast`` and are marked
``is_forecast`` only when no actual was given. Regional data is forecast-only, so regional
points are always ``is_forecast=True``. The API's ``index`` band is kept as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import ProviderDataError, ProviderError, UnknownRegionError
from carbonaware.providers.base import (
    Clock,
    as_utc,
    floor_time,
    normalise_points,
    point_covering,
    utc_now,
)
from carbonaware.providers.http import ErrorResponse, HttpJsonClient, HttpOptions
from carbonaware.providers.payload import PayloadReader, upstream_message

NAME = "ukci"
ATTRIBUTION = "Carbon Intensity API, NESO (CC BY 4.0)"
DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
FORWARD_WINDOW = timedelta(hours=48)
# The API limits {from}/{to} queries (14 days for regional ones); longer ranges are split.
MAX_RANGE = timedelta(days=14)
REGION_IDS = range(1, 18)
_POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_TIME_FORMAT = "%Y-%m-%dT%H:%MZ"

_read = PayloadReader(NAME)


@dataclass(frozen=True, slots=True)
class UkRegion:
    """A parsed region key: national, a DNO region id, or an outward postcode."""

    kind: Literal["national", "regionid", "postcode"]
    value: str = ""


def parse_region(region: str) -> UkRegion:
    """Parse ``GB``, ``GB-13`` or ``GB-RG10``; anything else is an :class:`UnknownRegionError`."""
    key = region.strip().upper()
    if key == "GB":
        return UkRegion("national")
    prefix, _, rest = key.partition("-")
    if prefix == "GB" and rest:
        if rest.isdigit() and int(rest) in REGION_IDS:
            return UkRegion("regionid", str(int(rest)))
        if _POSTCODE.match(rest):
            return UkRegion("postcode", rest)
    raise UnknownRegionError(
        NAME,
        f"region {region!r} is not a GB region key; use GB (national), GB-1 .. GB-17 "
        "(DNO region id) or GB-<outward postcode> such as GB-RG10",
    )


class UkCarbonIntensityProvider:
    """National and regional GB intensity from the Carbon Intensity API."""

    attribution = ATTRIBUTION

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_options: HttpOptions | None = None,
        now: Clock = utc_now,
    ) -> None:
        self._http = HttpJsonClient(
            NAME, base_url, options=http_options, error_mapper=map_error_response
        )
        self._now = now

    @property
    def name(self) -> str:
        return NAME

    def __repr__(self) -> str:
        return f"UkCarbonIntensityProvider(base_url={self._http.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def current(self, region: str) -> IntensityPoint:
        place = parse_region(region)
        if place.kind == "national":
            points = parse_national(await self._http.get_json("/intensity"))
        else:
            path = f"/regional/{place.kind}/{place.value}"
            points = parse_regional(await self._http.get_json(path))
        now = self._now()
        chosen = point_covering(points, now)
        if chosen is None:
            started = [point for point in points if point.start <= now]
            chosen = started[-1] if started else points[0]
        return chosen

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        place = parse_region(region)
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        points: list[IntensityPoint] = []
        for path in _range_paths(place, start, end):
            payload = await self._http.get_json(path)
            points.extend(
                parse_national(payload) if place.kind == "national" else parse_regional(payload)
            )
        return normalise_points(points, start=start, end=end)


def _range_paths(place: UkRegion, start: datetime, end: datetime) -> list[str]:
    """One fw48h query when it covers the range, else {from}/{to} chunks of MAX_RANGE."""
    suffix = "" if place.kind == "national" else f"/{place.kind}/{place.value}"
    root = "/intensity" if place.kind == "national" else "/regional/intensity"
    first = floor_time(start, timedelta(minutes=1))
    if end - first <= FORWARD_WINDOW:
        return [f"{root}/{first.strftime(_TIME_FORMAT)}/fw48h{suffix}"]
    paths = []
    chunk_start = first
    while chunk_start < end:
        chunk_end = min(end, chunk_start + MAX_RANGE)
        paths.append(
            f"{root}/{chunk_start.strftime(_TIME_FORMAT)}/{chunk_end.strftime(_TIME_FORMAT)}{suffix}"
        )
        chunk_start = chunk_end
    return paths


def map_error_response(response: ErrorResponse) -> ProviderError | None:
    """The API answers 400 with ``{"error": {"code", "message"}}``; a message about the
    postcode or region id means the region is unknown."""
    if response.status_code in (400, 404) and re.search(
        r"postcode|region", response.message, re.IGNORECASE
    ):
        return UnknownRegionError(
            NAME,
            f"{response.request} answered HTTP {response.status_code}: {response.message}",
            status_code=response.status_code,
        )
    return None


def _check_error_body(root: Mapping[str, Any]) -> None:
    """Some failures come back as 200 with an ``error`` object instead of ``data``."""
    if "data" in root or "error" not in root:
        return
    message = upstream_message(root) or "an error object and no data"
    if re.search(r"postcode|region", message, re.IGNORECASE):
        raise UnknownRegionError(NAME, f"the API answered: {message}")
    raise ProviderDataError(NAME, f"the API answered: {message}")


def parse_national(payload: Any) -> list[IntensityPoint]:
    """``{"data": [{"from", "to", "intensity": {"forecast", "actual", "index"}}]}``."""
    root = _read.mapping(payload, "response")
    _check_error_body(root)
    entries = _read.items(_read.field(root, "data", "response"), "data", allow_object=True)
    points = []
    for position, raw in enumerate(entries):
        where = f"data[{position}]"
        entry = _read.mapping(raw, where)
        start, end = _period(entry, where)
        intensity = _read.mapping(_read.field(entry, "intensity", where), f"{where}.intensity")
        actual = _read.optional_number(intensity.get("actual"), f"{where}.intensity.actual")
        forecast = _read.optional_number(intensity.get("forecast"), f"{where}.intensity.forecast")
        value = actual if actual is not None else forecast
        if value is None:
            raise _read.error(f"{where}.intensity has neither an actual nor a forecast")
        points.append(
            IntensityPoint(
                start=start,
                end=end,
                intensity=value,
                source=NAME,
                is_forecast=actual is None,
                index=_read.index(intensity.get("index")),
            )
        )
    return _non_empty(points)


def parse_regional(payload: Any) -> list[IntensityPoint]:
    """``{"data": [{"regionid", "shortname", "data": [{"from", "to", "intensity":
    {"forecast", "index"}}]}]}``; either ``data`` level may also be a single object."""
    root = _read.mapping(payload, "response")
    _check_error_body(root)
    regions = _read.items(_read.field(root, "data", "response"), "data", allow_object=True)
    if not regions:
        raise _read.error("response has no region in data (empty data)")
    region = _read.mapping(regions[0], "data[0]")
    periods = _read.items(_read.field(region, "data", "data[0]"), "data[0].data", allow_object=True)
    points = []
    for position, raw in enumerate(periods):
        where = f"data[0].data[{position}]"
        entry = _read.mapping(raw, where)
        start, end = _period(entry, where)
        intensity = _read.mapping(_read.field(entry, "intensity", where), f"{where}.intensity")
        value = _read.number(
            _read.field(intensity, "forecast", f"{where}.intensity"), f"{where}.intensity.forecast"
        )
        points.append(
            IntensityPoint(
                start=start,
                end=end,
                intensity=value,
                source=NAME,
                is_forecast=True,
                index=_read.index(intensity.get("index")),
            )
        )
    return _non_empty(points)


def _period(entry: Mapping[str, Any], where: str) -> tuple[datetime, datetime]:
    start = _read.time(_read.field(entry, "from", where), f"{where}.from")
    end = _read.time(_read.field(entry, "to", where), f"{where}.to")
    if end <= start:
        raise _read.error(f"{where} ends ({end:%Y-%m-%dT%H:%MZ}) before it starts")
    return start, end


def _non_empty(points: list[IntensityPoint]) -> list[IntensityPoint]:
    if not points:
        raise _read.error("response has no periods (empty data)")
    return normalise_points(points)
