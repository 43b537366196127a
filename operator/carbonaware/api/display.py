"""Numbers people read in ``kubectl get``: rounded, with units (the raw values stay in
status next to them)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

INTENSITY_UNIT = "gCO2e/kWh"
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant figures, without an exponent for everyday sizes
    (0.000207591013873034 -> "0.000208", 1234.5 -> "1230", 0 -> "0")."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(digits - 1 - magnitude, 0)
    rounded = round(value, digits - 1 - magnitude)
    if abs(rounded) >= 10**digits:
        return f"{rounded:.0f}"
    text = f"{rounded:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def grams(value: float | None) -> str | None:
    """An SCI or emission in grams: ``"0.000208 gCO2e"``."""
    return None if value is None else f"{significant(value)} gCO2e"


def intensity(value: float | None) -> str | None:
    """A grid intensity: ``"58 gCO2e/kWh"`` (whole grams, as providers publish them)."""
    return None if value is None else f"{value:.0f} {INTENSITY_UNIT}"


def duration(span: timedelta) -> str:
    """``3h10m``, ``2d4h``, ``45m``: two units at most, as kubectl prints ages."""
    seconds = max(int(span.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def relative_start(planned: datetime | None, now: datetime) -> str | None:
    """The planned start from ``now``, coarse enough that it changes a few times an hour:
    to 10 minutes beyond an hour, 5 minutes within one ("in 3h10m", "in 25m", "in <5m").
    The operator rewrites it with the intensity refresh, so it may lag by that much."""
    if planned is None:
        return None
    left = planned - now
    if left <= timedelta(0):
        return "due"
    step = 10 * MINUTE if left >= HOUR else 5 * MINUTE
    if left < step:
        return f"in <{duration(step)}"
    return f"in {duration(left - (left % step))}"


def sci(per_unit_grams: float | None, functional_unit: str | None) -> str | None:
    """The SCI per functional unit: ``"0.000208 gCO2e/run"``, ``"1.2 gCO2e per 500 users"``."""
    if per_unit_grams is None:
        return None
    unit = functional_unit or "1 run"
    count, _, name = unit.partition(" ")
    per = f"/{name}" if count == "1" and name else f" per {unit}"
    return f"{significant(per_unit_grams)} gCO2e{per}"
