"""A provider of fixed values: a constant or a 24-entry hour-of-day table (UTC), per region.

For demos, air-gapped clusters and as a last resort at the end of a chain. Settings:

- ``CARBONAWARE_STATIC_INTENSITY=250``: one constant for every region.
- ``CARBONAWARE_STATIC_TABLE``: either 24 comma-separated values (hour 0..23 UTC) for every
  region, or per-region entries separated by ``;``, each ``REGION=values`` with 1 value (a
  constant) or 24 (a table), e.g. ``GB=200,190,...;DE=380``. A ``*=...`` entry is the
  default for regions not listed; the constant from ``STATIC_INTENSITY`` is the fallback.

Periods are whole UTC hours. Past periods are ``is_forecast=False``, the current and future
ones ``is_forecast=True``; ``index`` is None (a table has no band of its own).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.errors import ConfigError, UnknownRegionError
from carbonaware.providers.base import Clock, as_utc, floor_time, utc_now

NAME = "static"
HOUR = timedelta(hours=1)
HourTable = tuple[float, ...]
"""24 values, hour 0..23 UTC."""


def _table(values: float | Sequence[float], what: str) -> HourTable:
    numbers = (
        [float(values)] * 24 if isinstance(values, int | float) else [float(v) for v in values]
    )
    if len(numbers) == 1:
        numbers = numbers * 24
    if len(numbers) != 24:
        raise ConfigError(f"static {what} has {len(numbers)} values; give 1 or 24 (hours 0-23 UTC)")
    if any(not math.isfinite(v) or v < 0 for v in numbers):
        raise ConfigError(f"static {what} has a negative or non-finite value")
    return tuple(numbers)


def parse_static_table(text: str) -> dict[str, HourTable]:
    """Parse ``CARBONAWARE_STATIC_TABLE`` (see module docstring) into region -> table;
    the key ``*`` holds the default for every other region."""
    tables: dict[str, HourTable] = {}
    entries = [entry.strip() for entry in text.split(";") if entry.strip()]
    if not entries:
        raise ConfigError("static table is empty")
    for entry in entries:
        region, separator, values = entry.partition("=")
        if not separator:
            region, values = "*", entry
        key = region.strip().upper() or "*"
        if key in tables:
            raise ConfigError(f"static table names region {key!r} twice")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(
                f"static table entry {entry!r} has a value that is not a number"
            ) from None
        tables[key] = _table(numbers, f"table entry for {key}")
    return tables


class StaticProvider:
    """Constant or hour-of-day values per region."""

    attribution: str | None = None

    def __init__(
        self,
        tables: Mapping[str, float | Sequence[float]],
        *,
        now: Clock = utc_now,
    ) -> None:
        """``tables`` maps region keys (``*`` for any region) to a constant or 24 values."""
        if not tables:
            raise ConfigError(
                "static provider has no values: set CARBONAWARE_STATIC_INTENSITY or "
                "CARBONAWARE_STATIC_TABLE"
            )
        self._tables = {
            key.strip().upper(): _table(v, f"values for {key}") for key, v in tables.items()
        }
        self._now = now

    @property
    def name(self) -> str:
        return NAME

    def __repr__(self) -> str:
        return f"StaticProvider(regions={sorted(self._tables)!r})"

    async def aclose(self) -> None:
        return None

    def _lookup(self, region: str) -> HourTable:
        table = self._tables.get(region.strip().upper()) or self._tables.get("*")
        if table is None:
            known = ", ".join(sorted(self._tables))
            raise UnknownRegionError(NAME, f"no static values for region {region!r} (have {known})")
        return table

    def _point(self, table: HourTable, start: datetime, now: datetime) -> IntensityPoint:
        end = start + HOUR
        return IntensityPoint(
            start=start,
            end=end,
            intensity=table[start.hour],
            source=NAME,
            is_forecast=end > now,
        )

    async def current(self, region: str) -> IntensityPoint:
        table = self._lookup(region)
        now = self._now()
        point = self._point(table, floor_time(now, HOUR), now)
        return IntensityPoint(
            start=point.start,
            end=point.end,
            intensity=point.intensity,
            source=NAME,
            is_forecast=False,
        )

    async def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        table = self._lookup(region)
        start, end = as_utc(start), as_utc(end)
        now = self._now()
        points = []
        moment = floor_time(start, HOUR)
        while moment < end:
            points.append(self._point(table, moment, now))
            moment += HOUR
        return points
