"""Grid carbon-intensity values as every layer sees them.

Providers produce :class:`IntensityPoint`; the scheduling policy, the simulator and the
SCI estimate consume them. Points are half-hourly or hourly periods in UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class IntensityIndex(enum.IntEnum):
    """A provider's own coarse band for a period, ordered from cleanest to dirtiest.

    The bands come from the provider (UK Carbon Intensity ``index``, WattTime's signal
    index); we never derive them from grams ourselves.
    """

    VERY_LOW = 0
    LOW = 1
    MODERATE = 2
    HIGH = 3
    VERY_HIGH = 4

    @property
    def api_name(self) -> str:
        """The CamelCase spelling used in the CRDs (``VeryLow``, ``Low``...)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @classmethod
    def parse(cls, text: str) -> IntensityIndex:
        """Accept ``very low``, ``very-low``, ``very_low``, ``VeryLow`` (any case)."""
        key = "".join(ch for ch in text.lower() if ch.isalpha())
        for member in cls:
            if member.name.replace("_", "").lower() == key:
                return member
        raise ValueError(f"unknown intensity index {text!r}")


@dataclass(frozen=True, slots=True)
class IntensityPoint:
    """Mean grid intensity over ``[start, end)`` in gCO2e/kWh.

    ``source`` names the provider that gave the value (``ukci``, ``trace``...), so that a
    chain of providers can always say where a number came from. ``is_forecast`` is False
    for measured/estimated actuals. ``stale`` is True when a provider cache served a value
    older than its refresh interval because the upstream was failing (stale-while-error).
    """

    start: datetime
    end: datetime
    intensity: float
    source: str
    is_forecast: bool
    index: IntensityIndex | None = None
    stale: bool = False

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment < self.end
