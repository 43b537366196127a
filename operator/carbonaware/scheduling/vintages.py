"""Forecasts as they were published: each issue's whole horizon, and which one a tick may see.

A provider publishes a new forecast every so often (NESO every 30 min, for the next 48 h);
each publication is a *vintage*. A trace's single forecast column holds one value per slot,
usually the latest, shortest-lead one, which a scheduler deciding a day ahead never had. With
vintages, a step at time ``t`` sees the forecast issued last at or before ``t``, slots further
ahead being forecast from further away.

:class:`VintageGrid` lays vintages on a trace's grid. :func:`synthetic_vintages` makes them
from actuals when the real ones are not available: the error of each value grows with its
lead time, is autocorrelated along the horizon (a forecast that is too high at 14:00 is too
high at 14:30) and is revised little by little from one issue to the next (the forecast for a
slot drifts towards the actual as the slot approaches). Its defaults follow NESO's published
accuracy of the GB national forecast: MAE about 10 g at the shortest leads and 24.5 g over
all leads of 0-48 h, on a grid whose mean intensity was 125 g in 2024 (``docs/scheduling.md``,
"Forecasts as they arrive"). For
another grid :meth:`VintageErrorSettings.for_grid` keeps the errors' share of the mean (the
same MAPE, about 8 % at the shortest leads and 20 % over 0-48 h).
"""

from __future__ import annotations

import bisect
import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from carbonaware.scheduling.series import NAN

# E|X| of a standard normal: a Gaussian error of standard deviation s has MAE s * this.
_MAE_PER_SIGMA = math.sqrt(2 / math.pi)
# Mean actual intensity of GB 2024 (the shipped trace), the grid the defaults describe.
GB_2024_MEAN = 125.1


@dataclass(frozen=True, slots=True)
class VintageGrid:
    """Vintages on a grid of ``size`` slots from ``start``, ``step`` apart.

    Issue ``i`` is visible from tick ``visible[i]`` (the first slot start at or after its issue
    time) and gives ``values[i][k]`` for slot ``first[i] + k``. Issues are sorted by
    visibility; of two visible from the same tick the later issue is kept.
    """

    start: datetime
    step: timedelta
    size: int
    visible: tuple[int, ...]
    first: tuple[int, ...]
    values: tuple[tuple[float, ...], ...]
    longest: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "longest", max((len(v) for v in self.values), default=0))

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[tuple[datetime, datetime, float]],
        *,
        start: datetime,
        step: timedelta,
        size: int,
    ) -> VintageGrid:
        """From ``(issued_at, slot_start, value)`` rows (any order). Slots off the grid are a
        ValueError; slots outside it are dropped; a gap inside an issue's horizon is ``nan``."""
        issues: defaultdict[datetime, dict[int, float]] = defaultdict(dict)
        for issued_at, slot_start, value in rows:
            offset = slot_start - start
            if offset % step:
                raise ValueError(f"forecast slot {slot_start.isoformat()} is off the {step} grid")
            slot = offset // step
            if 0 <= slot < size:
                issues[issued_at][slot] = float(value)
        by_tick: dict[int, tuple[int, tuple[float, ...]]] = {}
        for issued_at in sorted(issues):
            slots = issues[issued_at]
            if not slots:
                continue
            tick = max(0, -((start - issued_at) // step))  # ceil((issued_at - start) / step)
            first, last = min(slots), max(slots)
            by_tick[tick] = (first, tuple(slots.get(s, NAN) for s in range(first, last + 1)))
        ticks = sorted(by_tick)
        return cls(
            start=start,
            step=step,
            size=size,
            visible=tuple(ticks),
            first=tuple(by_tick[t][0] for t in ticks),
            values=tuple(by_tick[t][1] for t in ticks),
        )

    def __len__(self) -> int:
        return len(self.visible)

    def issue_at(self, tick: int) -> int | None:
        """The issue a step at ``tick`` sees: the last one visible by then (None before any)."""
        index = bisect.bisect_right(self.visible, tick) - 1
        return index if index >= 0 else None

    def values_at(self, tick: int, count: int) -> list[float]:
        """The forecast for slots ``tick .. tick+count-1`` as seen at ``tick``: each slot's
        value from the latest issue visible by then that covers it (``nan`` if none does)."""
        latest = self.issue_at(tick)
        out: list[float] = []
        for slot in range(tick, tick + count):
            out.append(self._value(latest, slot))
        return out

    def as_published(self) -> list[float]:
        """One value per slot: the forecast of the slot seen at the slot's own start (the
        shortest lead that was available in time), as a trace's forecast column holds it."""
        return [self._value(self.issue_at(slot), slot) for slot in range(self.size)]

    def _value(self, index: int | None, slot: int) -> float:
        """The value for ``slot`` of issue ``index`` or, if it does not cover the slot, of the
        latest earlier issue that does."""
        while index is not None and index >= 0:
            offset = slot - self.first[index]
            values = self.values[index]
            if 0 <= offset < len(values):
                return values[offset]
            if self.first[index] + self.longest <= slot:
                break  # no earlier issue reaches this far
            index -= 1
        return NAN


@dataclass(frozen=True, slots=True)
class VintageErrorSettings:
    """The synthetic forecast's error. Its standard deviation at lead ``h`` hours is
    ``sigma_now + (sigma_far - sigma_now) * sqrt(h / far_hours)`` (a random walk's growth,
    capped at ``far_hours``); along one issue's horizon the error is AR(1) with
    ``horizon_correlation_per_hour``; from one issue to the next the error of each slot keeps
    ``revision_correlation_per_hour`` of itself per hour between the issues. ``bias_per_day``
    adds a shared daily-cycle error (amplitude in g, peak at 18:00 UTC), as forecasts that
    misjudge the evening peak have."""

    sigma_now: float = 12.5  # MAE 10 g at the shortest leads
    sigma_far: float = 40.0  # MAE over 0-48 h about 24.5 g
    far_hours: float = 48.0
    horizon_correlation_per_hour: float = 0.9
    revision_correlation_per_hour: float = 0.95
    bias_per_day: float = 0.0

    def for_grid(self, actual: Sequence[float]) -> VintageErrorSettings:
        """These errors scaled from GB 2024's mean intensity to the mean of ``actual``."""
        known = [value for value in actual if value == value]
        factor = math.fsum(known) / len(known) / GB_2024_MEAN if known else 1.0
        return replace(
            self,
            sigma_now=self.sigma_now * factor,
            sigma_far=self.sigma_far * factor,
            bias_per_day=self.bias_per_day * factor,
        )

    def sigma(self, lead_hours: float) -> float:
        reach = min(1.0, max(0.0, lead_hours) / self.far_hours)
        return self.sigma_now + (self.sigma_far - self.sigma_now) * math.sqrt(reach)

    def expected_mae(self, horizon_hours: float, step_hours: float) -> float:
        """The MAE over leads ``0 .. horizon_hours`` that these settings give (no bias)."""
        leads = max(1, round(horizon_hours / step_hours))
        total = math.fsum(self.sigma(k * step_hours) for k in range(leads))
        return _MAE_PER_SIGMA * total / leads


DEFAULT_VINTAGE_ERROR = VintageErrorSettings()


def synthetic_vintages(
    actual: Sequence[float],
    *,
    start: datetime,
    step: timedelta,
    issue_every: int = 1,
    horizon: timedelta = timedelta(hours=48),
    settings: VintageErrorSettings = DEFAULT_VINTAGE_ERROR,
    seed: int = 2024,
) -> VintageGrid:
    """Vintages for a trace's actuals: an issue at the start of every ``issue_every``-th slot
    covering ``horizon`` from that slot, each value the actual plus the error of
    :class:`VintageErrorSettings` (never below 0; ``nan`` where the actual is unknown). The
    same arguments give the same vintages."""
    if issue_every < 1:
        raise ValueError("issue_every must be at least 1 slot")
    step_hours = step / timedelta(hours=1)
    horizon_slots = max(1, round(horizon / step))
    sigma = [settings.sigma(k * step_hours) for k in range(horizon_slots)]
    phi = settings.horizon_correlation_per_hour**step_hours
    fresh = math.sqrt(1 - phi * phi)
    keep = settings.revision_correlation_per_hour ** (issue_every * step_hours)
    renew = math.sqrt(1 - keep * keep)
    rng = random.Random(seed)
    day_slots = round(timedelta(days=1) / step)
    peak = round(timedelta(hours=18) / step)
    offset = round((start - start.replace(hour=0, minute=0, second=0, microsecond=0)) / step)

    def chain(count: int, previous: float | None = None) -> list[float]:
        """``count`` more values of a unit-variance AR(1) along the horizon."""
        z: list[float] = []
        for _ in range(count):
            draw = rng.gauss(0.0, 1.0)
            z.append(draw if previous is None else phi * previous + fresh * draw)
            previous = z[-1]
        return z

    state = chain(horizon_slots)
    visible: list[int] = []
    firsts: list[int] = []
    issues: list[tuple[float, ...]] = []
    size = len(actual)
    for tick in range(0, size, issue_every):
        if visible:
            # The same slots as the last issue, one issue nearer, plus the new far end.
            shifted = state[issue_every:]
            shifted += chain(horizon_slots - len(shifted), shifted[-1] if shifted else None)
            noise = chain(horizon_slots)
            state = [keep * s + renew * n for s, n in zip(shifted, noise, strict=True)]
        values: list[float] = []
        for k in range(min(horizon_slots, size - tick)):
            truth = actual[tick + k]
            if truth != truth:
                values.append(NAN)
                continue
            error = sigma[k] * state[k]
            if settings.bias_per_day:
                phase = 2 * math.pi * ((offset + tick + k - peak) % day_slots) / day_slots
                error += settings.bias_per_day * math.cos(phase)
            values.append(max(0.0, truth + error))
        visible.append(tick)
        firsts.append(tick)
        issues.append(tuple(values))
    return VintageGrid(
        start=start,
        step=step,
        size=size,
        visible=tuple(visible),
        first=tuple(firsts),
        values=tuple(issues),
    )


def lead_errors(vintages: VintageGrid, actual: Sequence[float]) -> list[tuple[float, int]]:
    """``(sum of |error|, count)`` per lead (in slots) over every issue: what a generator's
    settings gave, or how good a provider's vintages were."""
    longest = max((len(v) for v in vintages.values), default=0)
    sums = [0.0] * longest
    counts = [0] * longest
    for first, values in zip(vintages.first, vintages.values, strict=True):
        for k, value in enumerate(values):
            slot = first + k
            if slot < len(actual):
                error = value - actual[slot]
                if error == error:
                    sums[k] += abs(error)
                    counts[k] += 1
    return list(zip(sums, counts, strict=True))
