"""Human-friendly durations for command-line options: ``30m``, ``2h``, ``1h30m``, ``1d12h``.

Shared by ``carbonaware forecast`` and ``carbonaware simulate`` so both read a duration the
same way. Raises :class:`ValueError` with a message that says what is accepted; the CLI turns
it into a usage error.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_UNIT_ORDER = "dhms"
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_HINT = "use a number with a unit d, h, m or s, largest first, e.g. 30m, 2h, 1h30m"


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``-style text (units ``d``, ``h``, ``m``, ``s``; decimals allowed).

    Each unit may appear once, largest first; spaces are ignored. A bare number is rejected
    because ``2`` could mean seconds, minutes or hours.
    """
    cleaned = "".join(text.split()).lower()
    if not cleaned:
        raise ValueError(f"empty duration: {_HINT}")
    position = 0
    total_seconds = 0.0
    last_unit_rank = -1
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        number, unit = match.groups()
        rank = _UNIT_ORDER.index(unit)
        if rank <= last_unit_rank:
            raise ValueError(f"duration {text!r} repeats or misorders units: {_HINT}")
        last_unit_rank = rank
        total_seconds += float(number) * _UNIT_SECONDS[unit]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(f"cannot read duration {text!r}: {_HINT}")
    if not math.isfinite(total_seconds) or total_seconds > timedelta.max.total_seconds():
        raise ValueError(f"duration {text!r} is too long")
    return timedelta(seconds=total_seconds)


def format_duration(duration: timedelta) -> str:
    """The inverse of :func:`parse_duration` for whole seconds: ``5400s`` -> ``1h30m``."""
    remaining = int(duration.total_seconds())
    if remaining < 0:
        return "-" + format_duration(-duration)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit in _UNIT_ORDER:
        size = int(_UNIT_SECONDS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
