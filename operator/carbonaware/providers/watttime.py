"""WattTime API v3: marginal operating emissions rate (MOER, ``signal_type=co2_moer``).

Region keys are WattTime grid region abbreviations (``CAISO_NORTH``, ``PJM_DC``...).

- Login: ``GET /login`` with HTTP basic auth returns ``{"token"}``, a bearer token valid for
  about 30 minutes. It is renewed 5 minutes before that, and once more if a data request
  answers 401 (the token may have been revoked early).
- ``forecast``: ``/v3/forecast?region=&signal_type=co2_moer&horizon_hours=`` gives 5-minute
  points for the present and future; the past part of a range comes from
  ``/v3/historical?region=&signal_type=co2_moer&start=&end=`` (the reported MOER, in chunks of
  at most 30 days) as actuals. Accounts without historical access (WattTime answers 403) get
  no past points, and a run over them is priced by the next provider of the chain. Points are
  averaged into half-hour periods; a period with any forecast part is a forecast.
- ``current``: the first forecast point (``horizon_hours=0``) for the value, plus
  ``/v3/signal-index`` for the band: WattTime's percentile 0-100 of the MOER over the
  recent past, mapped to :class:`IntensityIndex` in fifths (0-20 very low ... 80-100 very
  high).

Units: MOER comes in lbs CO2/MWh and is converted to g/kWh
(1 lb = 453.59237 g and 1 MWh = 1,000 kWh, so 1 lb/MWh = 0.45359237 g/kWh).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.errors import ProviderAuthError, ProviderError, UnknownRegionError
from carbonaware.providers.base import (
    Clock,
    as_utc,
    normalise_points,
    point_covering,
    resample_mean,
    utc_now,
)
from carbonaware.providers.http import ErrorResponse, HttpJsonClient, HttpOptions
from carbonaware.providers.payload import PayloadReader

NAME = "watttime"
ATTRIBUTION = "WattTime"
DEFAULT_BASE_URL = "https://api.watttime.org"
SIGNAL_TYPE = "co2_moer"
# 1 lb = 453.59237 g (international avoirdupois pound); per MWh -> per kWh divides by 1,000.
G_PER_KWH_PER_LB_PER_MWH = 0.45359237
TOKEN_LIFETIME = timedelta(minutes=30)
TOKEN_RENEW_MARGIN = timedelta(minutes=5)
MAX_HORIZON_HOURS = 72
MAX_HISTORICAL_RANGE = timedelta(days=30)
_ISO = "%Y-%m-%dT%H:%M:%SZ"
PERIOD = timedelta(minutes=30)
_REGION = re.compile(r"^[A-Za-z0-9_]+$")
_UNITS_FACTOR = {
    "lbs_co2_per_mwh": G_PER_KWH_PER_LB_PER_MWH,
    "g_co2_per_kwh": 1.0,
    "gco2_per_kwh": 1.0,
}

_read = PayloadReader(NAME)


def parse_region(region: str) -> str:
    key = region.strip().upper()
    if not _REGION.match(key):
        raise UnknownRegionError(
            NAME, f"region {region!r} is not a WattTime region abbreviation such as CAISO_NORTH"
        )
    return key


def index_from_percentile(percentile: float) -> IntensityIndex:
    """WattTime's percentile (0 cleanest .. 100 dirtiest) in five equal bands."""
    bands = (
        IntensityIndex.VERY_LOW,
        IntensityIndex.LOW,
        IntensityIndex.MODERATE,
        IntensityIndex.HIGH,
        IntensityIndex.VERY_HIGH,
    )
    return bands[min(4, max(0, math.floor(percentile / 20)))]


class WattTimeProvider:
    """MOER forecasts and the current signal index for a WattTime region."""

    attribution = ATTRIBUTION

    def __init__(
        self,
        username: str | None,
        password: SecretStr | str | None,
        base_url: str = DEFAULT_BASE_URL,
        *,
        http_options: HttpOptions | None = None,
        now: Clock = utc_now,
    ) -> None:
        self._username = username
        self._password = (
            password if isinstance(password, SecretStr) or password is None else SecretStr(password)
        )
        self._http = HttpJsonClient(
            NAME, base_url, options=http_options, error_mapper=map_error_response
        )
        self._now = now
        self._token: SecretStr | None = None
        self._token_expires: datetime | None = None
        self._login_lock = asyncio.Lock()
        self.logins = 0
        """How many times this provider logged in (for status and tests)."""

    @property
    def name(self) -> str:
        return NAME

    def __repr__(self) -> str:
        return (
            f"WattTimeProvider(base_url={self._http.base_url!r}, "
            f"username={self._username!r}, password=**********)"
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def current(self, region: str) -> IntensityPoint:
        key = parse_region(region)
        params = {"region": key, "signal_type": SIGNAL_TYPE}
        now = self._now()
        points = parse_forecast(await self._get("/v3/forecast", {**params, "horizon_hours": 0}))
        point = point_covering(points, now) or points[0]
        percentile, _ = parse_signal_index(await self._get("/v3/signal-index", params))
        return IntensityPoint(
            start=point.start,
            end=point.end,
            intensity=point.intensity,
            source=NAME,
            is_forecast=False,
            index=index_from_percentile(percentile),
        )

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        key = parse_region(region)
        start, end = as_utc(start), as_utc(end)
        now = self._now()
        if end <= start:
            return []
        points: list[IntensityPoint] = []
        if start < now:
            points += await self._historical(key, start, min(end, now))
        if end > now:
            hours = min(MAX_HORIZON_HOURS, max(1, math.ceil((end - now) / timedelta(hours=1))))
            payload = await self._get(
                "/v3/forecast", {"region": key, "signal_type": SIGNAL_TYPE, "horizon_hours": hours}
            )
            points += parse_forecast(payload)
        if not points:
            return []
        return normalise_points(resample_mean(points, PERIOD), start=start, end=end)

    async def _historical(self, key: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        """Reported MOER over ``[start, end)`` as actuals; none without historical access."""
        points: list[IntensityPoint] = []
        chunk = start
        while chunk < end:
            chunk_end = min(end, chunk + MAX_HISTORICAL_RANGE)
            params = {"region": key, "signal_type": SIGNAL_TYPE,
                      "start": chunk.strftime(_ISO), "end": chunk_end.strftime(_ISO)}  # fmt: skip
            try:
                payload = await self._get("/v3/historical", params)
            except ProviderAuthError as exc:
                if exc.status_code != 403:
                    raise
                # The account's plan has no historical data: nothing reported to use.
                return []
            points += [
                dataclasses.replace(point, is_forecast=False) for point in parse_forecast(payload)
            ]
            chunk = chunk_end
        return points

    async def _get(self, path: str, params: Mapping[str, str | int]) -> Any:
        token = await self._bearer_token()
        try:
            return await self._http.get_json(
                path, params=params, headers={"Authorization": f"Bearer {token}"}
            )
        except ProviderAuthError as exc:
            if exc.status_code != 401:
                raise
        # The token was refused before its expected expiry: log in again once.
        token = await self._bearer_token(renew_from=token)
        return await self._http.get_json(
            path, params=params, headers={"Authorization": f"Bearer {token}"}
        )

    async def _bearer_token(self, *, renew_from: str | None = None) -> str:
        async with self._login_lock:
            now = self._now()
            token = self._token.get_secret_value() if self._token is not None else None
            usable = (
                token is not None
                and self._token_expires is not None
                and now < self._token_expires
                and token != renew_from
            )
            if usable and token is not None:
                return token
            if not self._username or self._password is None:
                raise ProviderAuthError(
                    NAME,
                    "no credentials configured "
                    "(set CARBONAWARE_WATTTIME_USERNAME and CARBONAWARE_WATTTIME_PASSWORD)",
                )
            payload = await self._http.get_json(
                "/login", basic_auth=(self._username, self._password.get_secret_value())
            )
            fresh = parse_login(payload)
            self.logins += 1
            self._token = SecretStr(fresh)
            self._token_expires = now + TOKEN_LIFETIME - TOKEN_RENEW_MARGIN
            return fresh


def map_error_response(response: ErrorResponse) -> ProviderError | None:
    """A 400/404 whose message talks about the region means the region is unknown."""
    if response.status_code in (400, 404) and re.search(r"region", response.message, re.IGNORECASE):
        return UnknownRegionError(
            NAME,
            f"{response.request} answered HTTP {response.status_code}: {response.message}",
            status_code=response.status_code,
        )
    return None


def parse_login(payload: Any) -> str:
    """``{"token": "..."}``."""
    root = _read.mapping(payload, "login response")
    token = _read.text(_read.field(root, "token", "login response"), "login response token")
    if not token:
        raise _read.error("login response has an empty token")
    return token


def parse_forecast(payload: Any) -> list[IntensityPoint]:
    """``{"data": [{"point_time", "value"}], "meta": {"units", "data_point_period_seconds"}}``,
    converted to g/kWh, at the API's own resolution (5 minutes)."""
    root = _read.mapping(payload, "response")
    meta = _read.mapping(root.get("meta", {}), "meta")
    units = meta.get("units", "lbs_co2_per_mwh")
    factor = _UNITS_FACTOR.get(units) if isinstance(units, str) else None
    if factor is None:
        raise _read.error(f"meta.units {units!r} is not a unit of emissions rate this reads")
    step = _period_seconds(meta.get("data_point_period_seconds", 300))
    entries = _read.items(_read.field(root, "data", "response"), "data")
    points = []
    for position, raw in enumerate(entries):
        where = f"data[{position}]"
        entry = _read.mapping(raw, where)
        start = _read.time(_read.field(entry, "point_time", where), f"{where}.point_time")
        value = _read.number(_read.field(entry, "value", where), f"{where}.value")
        points.append(
            IntensityPoint(
                start=start,
                end=start + step,
                intensity=value * factor,
                source=NAME,
                is_forecast=True,
            )
        )
    if not points:
        raise _read.error("response has no points in data (empty data)")
    return normalise_points(points)


def parse_signal_index(payload: Any) -> tuple[float, datetime]:
    """``{"data": [{"point_time", "value"}], "meta": {"units": "percentile"}}`` ->
    (percentile 0-100, point time)."""
    root = _read.mapping(payload, "response")
    entries = _read.items(_read.field(root, "data", "response"), "data")
    if not entries:
        raise _read.error("signal index response has no points (empty data)")
    entry = _read.mapping(entries[0], "data[0]")
    when = _read.time(_read.field(entry, "point_time", "data[0]"), "data[0].point_time")
    percentile = _read.number(_read.field(entry, "value", "data[0]"), "data[0].value")
    if percentile > 100:
        raise _read.error(f"data[0].value {percentile:g} is not a percentile (0-100)")
    return percentile, when


def _period_seconds(value: Any) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 86400:
        raise _read.error(f"meta.data_point_period_seconds {value!r} is not 1..86400 seconds")
    return timedelta(seconds=value)
