"""One region's forecast as the policy reads it, prepared once per tick and shared by all jobs.

Building a view costs O(horizon); asking it for the best window of a job costs O(1) after the
first job of the same length, because the per-length tables (prefix sums of the expected
intensity and of the risk penalty, and a running arg-min over start slots) are computed once
and cached. The operator builds one view per region per tick and passes it to
:func:`carbonaware.scheduling.policy.decide` for every held job of that region.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.scheduling.series import SlotSeries

_INF = math.inf


@dataclass(frozen=True, slots=True)
class WindowTable:
    """Every start slot's window of ``slots`` slots, for one view.

    ``means[k]`` is the expected mean intensity of the window starting at slot ``k`` (``nan``
    when some slot of it is unknown), ``scores[k]`` adds the mean risk penalty (``inf`` when
    unknown) and ``best_upto[k]`` is the start with the lowest score among ``0..k`` (the
    earliest on ties; -1 when none of them is known).
    """

    slots: int
    means: tuple[float, ...]
    scores: tuple[float, ...]
    best_upto: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PlannedWindow:
    """The window a policy chose: its start slot, expected mean and whether it was fully known.

    ``covered`` is False when no window of the job's length fits in the forecast before the
    latest start, and the mean was completed with the forecast's average (see
    :meth:`ForecastView.best_window`). ``score`` is what the window was ranked by: the mean
    plus the mean risk penalty (the mean itself without one), so windows of different views
    (regions) can be ranked the same way.
    """

    slot: int
    mean: float
    covered: bool
    score: float


class ForecastView:
    """Expected intensity per slot from the slot containing ``now`` onwards.

    ``values[k]`` covers ``[origin + k*step, origin + (k+1)*step)`` with ``origin <= now``;
    ``risk[k]`` (>= 0, same units) is added when ranking windows, so that a far-off slot
    whose forecast is uncertain must be clearly better than a near one to win. Starting at
    slot 0 means starting ``now``.
    """

    __slots__ = (
        "_slots",
        "_tables",
        "indexes",
        "now",
        "origin",
        "risk",
        "source",
        "step",
        "values",
    )

    def __init__(
        self,
        *,
        now: datetime,
        origin: datetime,
        step: timedelta,
        values: Sequence[float],
        risk: Sequence[float] | None = None,
        indexes: Sequence[IntensityIndex | None] | None = None,
        source: str = "forecast",
    ) -> None:
        if step <= timedelta(0):
            raise ValueError("a forecast view needs a positive step")
        if not origin <= now < origin + step:
            raise ValueError("the view's origin must be the start of the slot containing now")
        if risk is not None and len(risk) != len(values):
            raise ValueError("risk must have one entry per value")
        self.now = now
        self.origin = origin
        self.step = step
        self.values: tuple[float, ...] = tuple(values)
        self.risk: tuple[float, ...] | None = tuple(risk) if risk is not None else None
        self.indexes: tuple[IntensityIndex | None, ...] | None = (
            tuple(indexes) if indexes is not None else None
        )
        self.source = source
        self._tables: dict[int, WindowTable] = {}
        self._slots: dict[timedelta, int] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_series(
        cls,
        series: SlotSeries,
        now: datetime,
        *,
        risk: Sequence[float] | None = None,
        source: str = "forecast",
    ) -> ForecastView | None:
        """The part of ``series`` from the slot containing ``now``; None if it all lies before.

        ``risk``, when given, is aligned with ``series.values``.
        """
        first = series.slot_at(now)
        count = len(series) - first
        if count <= 0:
            return None
        values = series.window(first, count)
        slots = range(first, first + count)
        view_risk = None
        if risk is not None:
            view_risk = [risk[i] if 0 <= i < len(risk) else 0.0 for i in slots]
        indexes = None
        if series.indexes is not None:
            known = series.indexes
            indexes = [known[i] if 0 <= i < len(known) else None for i in slots]
        return cls(
            now=now,
            origin=series.time_of(first),
            step=series.step,
            values=values,
            risk=view_risk,
            indexes=indexes,
            source=source,
        )

    @classmethod
    def build(
        cls,
        points: Sequence[IntensityPoint],
        now: datetime,
        *,
        risk: Sequence[float] | None = None,
    ) -> ForecastView | None:
        """A view over forecast ``points`` (any order; gaps stay unknown).

        Returns None when no point ends after ``now``. ``risk`` is aligned with the grid
        :meth:`SlotSeries.from_points` makes of the points (earliest start first).
        """
        series = SlotSeries.from_points(points)
        if series is None or series.end <= now:
            return None
        sources = sorted({p.source for p in points})
        return cls.from_series(series, now, risk=risk, source="+".join(sources) or "forecast")

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.values)

    @property
    def horizon_end(self) -> datetime:
        return self.origin + len(self.values) * self.step

    def slots_for(self, duration: timedelta) -> int:
        """Slots a run of ``duration`` occupies (rounded up; at least one)."""
        slots = self._slots.get(duration)
        if slots is None:
            slots = self._slots[duration] = max(1, -(-duration // self.step))
        return slots

    def start_of(self, slot: int) -> datetime:
        """When a run planned at ``slot`` starts: now for slot 0, the slot's start after."""
        return self.now if slot <= 0 else self.origin + slot * self.step

    def last_start_slot(self, latest_start: datetime) -> int:
        """The last slot whose start is not after ``latest_start``; -1 if now is after it."""
        if latest_start < self.now:
            return -1
        return (latest_start - self.origin) // self.step

    def table(self, slots: int) -> WindowTable:
        """The window table for runs of ``slots`` slots (computed once per view)."""
        cached = self._tables.get(slots)
        if cached is None:
            cached = self._tables[slots] = _window_table(self.values, self.risk, slots)
        return cached

    def mean_now(self, slots: int) -> float | None:
        """Expected mean intensity of a run of ``slots`` slots starting now, if known."""
        means = self.table(slots).means
        if not means or math.isnan(means[0]):
            return None
        return means[0]

    def best_window(self, slots: int, last_slot: int) -> PlannedWindow | None:
        """The lowest-scoring window of ``slots`` slots starting in slots ``0..last_slot``.

        Only windows the forecast fully covers compete. When none does (the run is longer
        than what is left of the forecast, or the forecast has a gap), each start's unknown
        slots are filled with the average of the known forecast: the best estimate without
        a forecast for them, which keeps the part of the run we do know about in play.
        Returns None when the forecast knows nothing about any candidate window.
        """
        if last_slot < 0:
            return None
        table = self.table(slots)
        if table.best_upto:
            best = table.best_upto[min(last_slot, len(table.best_upto) - 1)]
            if best >= 0:
                return PlannedWindow(
                    slot=best, mean=table.means[best], covered=True, score=table.scores[best]
                )
        return self._best_partial_window(slots, last_slot)

    def _best_partial_window(self, slots: int, last_slot: int) -> PlannedWindow | None:
        known = [v for v in self.values if not math.isnan(v)]
        if not known:
            return None
        fill = sum(known) / len(known)
        risks = self.risk or (0.0,) * len(self.values)
        fill_risk = max(risks) if risks else 0.0
        best: PlannedWindow | None = None
        best_score = _INF
        for start in range(min(last_slot, len(self.values) - 1) + 1):
            total = 0.0
            penalty = 0.0
            seen = 0
            for slot in range(start, start + slots):
                value = self.values[slot] if slot < len(self.values) else math.nan
                if math.isnan(value):
                    total += fill
                    penalty += fill_risk
                else:
                    total += value
                    penalty += risks[slot]
                    seen += 1
            if not seen:
                continue
            score = (total + penalty) / slots
            if score < best_score:
                best_score = score
                best = PlannedWindow(slot=start, mean=total / slots, covered=False, score=score)
        return best

    def first_slot_meeting(
        self,
        last_slot: int,
        *,
        max_intensity: float | None,
        max_index: IntensityIndex | None,
    ) -> int | None:
        """The first slot up to ``last_slot`` the forecast expects to meet a threshold."""
        indexes = self.indexes
        for slot in range(min(last_slot, len(self.values) - 1) + 1):
            value = self.values[slot]
            if max_intensity is not None and value <= max_intensity:
                return slot
            if max_index is not None and indexes is not None:
                index = indexes[slot]
                if index is not None and index <= max_index:
                    return slot
        return None


def _window_table(values: Sequence[float], risk: Sequence[float] | None, slots: int) -> WindowTable:
    """Prefix sums give each window's mean in O(1); a running arg-min gives the best start."""
    count = len(values) - slots + 1
    if slots <= 0 or count <= 0:
        return WindowTable(slots=slots, means=(), scores=(), best_upto=())
    inverse = 1.0 / slots
    total = sum(values)
    if total == total:  # no unknown slot: the common case, done in C-level passes
        sums = list(accumulate(values, initial=0.0))
        means = [(high - low) * inverse for low, high in zip(sums, sums[slots:], strict=False)]
    else:
        known = [0.0 if v != v else v for v in values]
        sums = list(accumulate(known, initial=0.0))
        unknown = list(accumulate((1 if v != v else 0 for v in values), initial=0))
        means = [
            (sums[start + slots] - sums[start]) * inverse
            if unknown[start + slots] == unknown[start]
            else math.nan
            for start in range(count)
        ]
    if risk is None:
        scores = [_INF if m != m else m for m in means]
    else:
        risk_sums = list(accumulate(risk, initial=0.0))
        scores = [
            _INF if m != m else m + (high - low) * inverse
            for m, low, high in zip(means, risk_sums, risk_sums[slots:], strict=False)
        ]
    best_upto: list[int] = []
    best = -1
    best_score = _INF
    for start, score in enumerate(scores):
        if score < best_score:
            best_score = score
            best = start
        best_upto.append(best)
    return WindowTable(
        slots=slots, means=tuple(means), scores=tuple(scores), best_upto=tuple(best_upto)
    )
