"""Typed reading of untrusted JSON from upstream APIs.

Every accessor either returns a value of the promised type or raises
:class:`ProviderDataError` naming the provider and where in the response the problem is, so
provider parsers never leak ``KeyError``/``TypeError``/``OverflowError`` on odd input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from carbonaware.api.intensity import IntensityIndex
from carbonaware.errors import ProviderDataError

# Timestamps outside this range are rejected so period arithmetic can never overflow.
EARLIEST_TIME = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# Grid intensity above this is not physical (coal is about 1,000 g/kWh).
MAX_INTENSITY = 100_000.0


class PayloadReader:
    """Accessors bound to one provider name, for error messages."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def error(self, message: str) -> ProviderDataError:
        return ProviderDataError(self.provider, message)

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(f"{where} is {_kind(value)}, expected an object")
        return value

    def items(self, value: Any, where: str, *, allow_object: bool = False) -> list[Any]:
        """A JSON array; with ``allow_object`` a single object counts as a one-item array."""
        if isinstance(value, list):
            return value
        if allow_object and isinstance(value, Mapping):
            return [value]
        expected = "an array or an object" if allow_object else "an array"
        raise self.error(f"{where} is {_kind(value)}, expected {expected}")

    def field(self, mapping: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in mapping:
            raise self.error(f"{where} has no field {key!r}")
        return mapping[key]

    def number(self, value: Any, where: str) -> float:
        """A finite, non-negative intensity-like number (booleans are not numbers)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{where} is {_kind(value)}, expected a number")
        try:
            result = float(value)
        except OverflowError:
            raise self.error(f"{where} is too large") from None
        if not math.isfinite(result) or result < 0 or result > MAX_INTENSITY:
            raise self.error(
                f"{where} is {_short(repr(value), quote=False)}, outside 0..{MAX_INTENSITY:g}"
            )
        return result

    def optional_number(self, value: Any, where: str) -> float | None:
        return None if value is None else self.number(value, where)

    def time(self, value: Any, where: str) -> datetime:
        """An ISO 8601 timestamp (``2018-01-20T12:00Z``, ``...T00:00:00.000Z``, ``+00:00``)."""
        if not isinstance(value, str):
            raise self.error(f"{where} is {_kind(value)}, expected an ISO 8601 time")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.error(f"{where} is {_short(value)}, not an ISO 8601 time") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise self.error(f"{where} is {_short(value)}, out of range") from None
        if not EARLIEST_TIME <= moment < LATEST_TIME:
            raise self.error(f"{where} is {_short(value)}, out of range")
        return moment

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(f"{where} is {_kind(value)}, expected a string")
        return value

    @staticmethod
    def index(value: Any) -> IntensityIndex | None:
        """The provider's band name (``very low``...``very high``); unknown or absent -> None.

        The band is optional metadata, so an unrecognised one does not discard the value.
        """
        if not isinstance(value, str):
            return None
        try:
            return IntensityIndex.parse(value)
        except ValueError:
            return None


def upstream_message(body: Any) -> str | None:
    """The human message in an error body (``{"error": {"message": ...}}``,
    ``{"message": ...}``, ``{"error": "..."}``), if there is one."""
    if not isinstance(body, Mapping):
        return None
    for key in ("message", "error", "detail", "error_description"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return _short(value, 200, quote=False)
        if isinstance(value, Mapping):
            nested = upstream_message(value)
            if nested:
                return nested
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _short(value: str, limit: int = 40, *, quote: bool = True) -> str:
    text = value if len(value) <= limit else value[: limit - 3] + "..."
    return repr(text) if quote else text
