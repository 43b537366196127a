"""Electricity Maps API v3 (token in the ``auth-token`` header).

Data: "Electricity Maps", ODbL. Region keys are Electricity Maps zone keys (``DE``,
``FR``, ``US-CAL-CISO``, ``DK-DK1``), upper-cased before use.

- ``current``: ``/carbon-intensity/latest?zone=`` (one hourly value, ``is_forecast=False``).
- ``forecast``: past periods from ``/carbon-intensity/past-range?zone=&start=&end=``
  (actuals, in chunks of at most 10 days, the API's limit for hourly data), current and
  future periods from ``/carbon-intensity/forecast?zone=``; an actual wins over a forecast
  for the same hour.

Electricity Maps has no intensity band, so ``index`` is always None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import (
    ProviderAuthError,
    ProviderDataError,
    ProviderError,
    UnknownRegionError,
)
from carbonaware.providers.base import Clock, as_utc, floor_time, normalise_points, utc_now
from carbonaware.providers.http import ErrorResponse, HttpJsonClient, HttpOptions
from carbonaware.providers.payload import PayloadReader, upstream_message

NAME = "electricitymaps"
ATTRIBUTION = "Electricity Maps (ODbL)"
DEFAULT_BASE_URL = "https://api.electricitymap.org/v3"
MAX_PAST_RANGE = timedelta(days=10)
_GRANULARITY = {
    "5_minutes": timedelta(minutes=5),
    "15_minutes": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
}
_ZONE = re.compile(r"^[A-Z]{2,3}(-[A-Z0-9]+)*$")
_ISO = "%Y-%m-%dT%H:%M:%SZ"

_read = PayloadReader(NAME)


def parse_zone(region: str) -> str:
    zone = region.strip().upper()
    if not _ZONE.match(zone):
        raise UnknownRegionError(
            NAME, f"region {region!r} is not an Electricity Maps zone key such as DE or US-CAL-CISO"
        )
    return zone


class ElectricityMapsProvider:
    """Hourly carbon intensity (life-cycle, the API default) per Electricity Maps zone."""

    attribution = ATTRIBUTION

    def __init__(
        self,
        token: SecretStr | str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_options: HttpOptions | None = None,
        now: Clock = utc_now,
    ) -> None:
        self._token = token if isinstance(token, SecretStr) or token is None else SecretStr(token)
        self._http = HttpJsonClient(
            NAME, base_url, options=http_options, error_mapper=map_error_response
        )
        self._now = now

    @property
    def name(self) -> str:
        return NAME

    def __repr__(self) -> str:
        return f"ElectricityMapsProvider(base_url={self._http.base_url!r}, token=**********)"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def current(self, region: str) -> IntensityPoint:
        zone = parse_zone(region)
        payload = await self._get("/carbon-intensity/latest", {"zone": zone})
        return parse_latest(payload)

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        zone = parse_zone(region)
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        now = self._now()
        this_hour = floor_time(now, timedelta(hours=1))
        forecasts: list[IntensityPoint] = []
        actuals: list[IntensityPoint] = []
        if end > this_hour:
            forecasts = parse_forecast(
                await self._get("/carbon-intensity/forecast", {"zone": zone})
            )
        if start < this_hour:
            chunk_start = start
            past_end = min(end, this_hour)
            while chunk_start < past_end:
                chunk_end = min(past_end, chunk_start + MAX_PAST_RANGE)
                params = {
                    "zone": zone,
                    "start": chunk_start.strftime(_ISO),
                    "end": chunk_end.strftime(_ISO),
                }
                actuals.extend(
                    parse_past_range(await self._get("/carbon-intensity/past-range", params))
                )
                chunk_start = chunk_end
        return normalise_points([*forecasts, *actuals], start=start, end=end)

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        if self._token is None or not self._token.get_secret_value():
            raise ProviderAuthError(
                NAME, "no API token configured (set CARBONAWARE_ELECTRICITYMAPS_TOKEN)"
            )
        return await self._http.get_json(
            path, params=params, headers={"auth-token": self._token.get_secret_value()}
        )


def map_error_response(response: ErrorResponse) -> ProviderError | None:
    """A 400/404 whose message talks about the zone means the zone is unknown."""
    if response.status_code in (400, 404) and re.search(r"zone", response.message, re.IGNORECASE):
        return UnknownRegionError(
            NAME,
            f"{response.request} answered HTTP {response.status_code}: {response.message}",
            status_code=response.status_code,
        )
    return None


def _root(payload: Any) -> Mapping[str, Any]:
    root = _read.mapping(payload, "response")
    if root.get("status") == "error" or ("error" in root and "carbonIntensity" not in root):
        message = upstream_message(root) or "an error status"
        if re.search(r"zone", message, re.IGNORECASE):
            raise UnknownRegionError(NAME, f"the API answered: {message}")
        raise ProviderDataError(NAME, f"the API answered: {message}")
    return root


def _point(entry: Mapping[str, Any], where: str, *, is_forecast: bool) -> IntensityPoint:
    start = _read.time(_read.field(entry, "datetime", where), f"{where}.datetime")
    value = _read.field(entry, "carbonIntensity", where)
    if value is None:
        raise _read.error(f"{where}.carbonIntensity is null (no data for this hour)")
    granularity = entry.get("temporalGranularity", "hourly")
    step = _GRANULARITY.get(granularity) if isinstance(granularity, str) else None
    if step is None:
        raise _read.error(f"{where}.temporalGranularity {granularity!r} is not supported")
    return IntensityPoint(
        start=start,
        end=start + step,
        intensity=_read.number(value, f"{where}.carbonIntensity"),
        source=NAME,
        is_forecast=is_forecast,
    )


def parse_latest(payload: Any) -> IntensityPoint:
    """``{"zone", "carbonIntensity", "datetime", "updatedAt", "isEstimated", ...}``."""
    return _point(_root(payload), "response", is_forecast=False)


def parse_forecast(payload: Any) -> list[IntensityPoint]:
    """``{"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}``."""
    root = _root(payload)
    entries = _read.items(_read.field(root, "forecast", "response"), "forecast")
    points = [
        _point(_read.mapping(raw, f"forecast[{i}]"), f"forecast[{i}]", is_forecast=True)
        for i, raw in enumerate(entries)
    ]
    if not points:
        raise _read.error("response has an empty forecast")
    return normalise_points(points)


def parse_past_range(payload: Any) -> list[IntensityPoint]:
    """``{"zone", "data": [{"carbonIntensity", "datetime", "isEstimated", ...}]}``."""
    root = _root(payload)
    entries = _read.items(_read.field(root, "data", "response"), "data")
    points = [
        _point(_read.mapping(raw, f"data[{i}]"), f"data[{i}]", is_forecast=False)
        for i, raw in enumerate(entries)
    ]
    if not points:
        raise _read.error("response has no hours in data (empty data)")
    return normalise_points(points)
