"""Intensity values on a regular time grid, the shape every scheduling computation uses.

Providers hand over :class:`~carbonaware.api.intensity.IntensityPoint` lists; the policy,
the forecasters and the simulator work on plain float lists indexed by slot, which keeps a
tick over thousands of held jobs cheap. Unknown slots are ``nan`` and are never filled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityIndex, IntensityPoint

NAN = math.nan
DAY = timedelta(days=1)


def floor_to_step(moment: datetime, step: timedelta, *, anchor: datetime) -> datetime:
    """The start of the grid slot (``anchor + i * step``) that contains ``moment``."""
    return anchor + ((moment - anchor) // step) * step


def slots_per_day(step: timedelta) -> int | None:
    """How many slots make a UTC day, or None when ``step`` does not divide a day."""
    if step <= timedelta(0) or DAY % step:
        return None
    return DAY // step


def slot_of_day(moment: datetime, step: timedelta) -> int:
    """Position of the slot starting at ``moment`` within its UTC day (0 at midnight)."""
    midnight = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (moment - midnight) // step


@dataclass(frozen=True, slots=True)
class SlotSeries:
    """``values[i]`` is the mean intensity over ``[start + i*step, start + (i+1)*step)``.

    ``indexes`` carries the provider's band per slot when it gave one. ``nan`` marks a slot
    nobody reported.
    """

    start: datetime
    step: timedelta
    values: tuple[float, ...]
    indexes: tuple[IntensityIndex | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def end(self) -> datetime:
        return self.start + len(self.values) * self.step

    def time_of(self, slot: int) -> datetime:
        return self.start + slot * self.step

    def slot_at(self, moment: datetime) -> int:
        """Index of the slot containing ``moment`` (may be outside ``0..len-1``)."""
        return (moment - self.start) // self.step

    @classmethod
    def from_points(
        cls, points: Sequence[IntensityPoint], *, step: timedelta | None = None
    ) -> SlotSeries | None:
        """Lay points on a grid anchored at the earliest start; None when there are none.

        The grid step is ``step`` or the shortest point duration. A point longer than the
        step (hourly values on a half-hourly grid) fills every slot it covers; where points
        overlap, the later one in the list wins. Non-finite or negative intensities are
        treated as unknown.
        """
        usable = [p for p in points if p.end > p.start]
        if not usable:
            return None
        grid_step = step or min(p.duration for p in usable)
        anchor = min(p.start for p in usable)
        last_end = max(p.end for p in usable)
        count = -((anchor - last_end) // grid_step)  # ceiling division
        values = [NAN] * count
        indexes: list[IntensityIndex | None] = [None] * count
        any_index = False
        for point in usable:
            if not math.isfinite(point.intensity) or point.intensity < 0:
                continue
            first = (point.start - anchor) // grid_step
            last = -((anchor - point.end) // grid_step)
            for slot in range(first, min(last, count)):
                values[slot] = float(point.intensity)
                indexes[slot] = point.index
                any_index = any_index or point.index is not None
        return cls(
            start=anchor,
            step=grid_step,
            values=tuple(values),
            indexes=tuple(indexes) if any_index else None,
        )

    def to_points(self, *, source: str, is_forecast: bool) -> list[IntensityPoint]:
        """The known slots as points (unknown slots are left out)."""
        indexes = self.indexes or (None,) * len(self.values)
        return [
            IntensityPoint(
                start=self.time_of(slot),
                end=self.time_of(slot + 1),
                intensity=value,
                source=source,
                is_forecast=is_forecast,
                index=index,
            )
            for slot, (value, index) in enumerate(zip(self.values, indexes, strict=True))
            if not math.isnan(value)
        ]

    def window(self, first: int, count: int) -> list[float]:
        """Values of slots ``first .. first+count-1``; slots outside the series are ``nan``."""
        lo = max(first, 0)
        hi = min(first + count, len(self.values))
        if hi <= lo:
            return [NAN] * count
        return [NAN] * (lo - first) + list(self.values[lo:hi]) + [NAN] * (first + count - hi)
