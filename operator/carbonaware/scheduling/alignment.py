"""Align a provider's forecast in time with the actuals it is later judged against.

A forecast can be right about the shape of a day and wrong about its timing: GB's published
national forecast, for instance, runs about an hour late against NESO's actuals in 2024 (its
mean daily profile matches the actuals' best when moved two half-hour slots earlier). A
time-of-day bias cannot mend that, because how far a late forecast is off depends on how
steep that day's morning or evening is. The alignment is a linear map from each slot's
forecast and its neighbours' to the actual (model output statistics, Glahn & Lowry 1972):

    aligned[s] = f[s] + sum over k of w[k] * (f[s + k] - f[s])

with ``w`` fitted by ridge regression on the recent (forecast, actual) pairs. Ridge shrinks
``w`` towards zero, the forecast as published; a forecast without a timing error gets
``w`` near zero, and a perfect one exactly zero. A neighbour outside the forecast (its first
and last slots) counts as equal to the slot itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from carbonaware.scheduling.leastsquares import known_rows, ridge
from carbonaware.scheduling.series import NAN


def shifted(values: Sequence[float], offset: int, low: int, high: int) -> list[float]:
    """``values[s + offset]`` for ``s`` in ``low..high-1`` (``nan`` outside the values)."""
    size = len(values)
    start, stop = low + offset, high + offset
    inside = list(values[max(0, start) : max(0, min(size, stop))])
    before = min(high - low, max(0, -start))
    return [NAN] * before + inside + [NAN] * (high - low - before - len(inside))


def fit_alignment(
    forecast: Sequence[float],
    actual: Sequence[float],
    first: int,
    now_slot: int,
    offsets: Sequence[int],
    strength: float,
    *,
    day_slots: int,
    day_offset: int = 0,
) -> tuple[float, ...]:
    """The weights of ``offsets`` fitted on the slots ``first..now_slot-1`` (zeros when
    fewer than four pairs per weight are known).

    The error and each neighbour difference are centred on their mean at the same slot of
    the day first: what is the same every day is the time-of-day bias's to correct, so the
    alignment learns only how the error moves with the day's own shape.
    """
    if not offsets or now_slot - first < 4 * len(offsets):
        return (0.0,) * len(offsets)
    base = forecast[first:now_slot]
    target = [a - f for a, f in zip(actual[first:now_slot], base, strict=True)]
    columns = [
        [x - f for x, f in zip(shifted(forecast, k, first, now_slot), base, strict=True)]
        for k in offsets
    ]
    positions = [float((slot + day_offset) % day_slots) for slot in range(first, now_slot)]
    *columns, target, known_positions = known_rows([*columns, target, positions])
    if len(target) < 4 * len(offsets):
        return (0.0,) * len(offsets)
    kept = [int(p) for p in known_positions]
    columns = [_centred(column, kept, day_slots) for column in columns]
    solved, _ = ridge(columns, _centred(target, kept, day_slots), strength)
    return solved


def _centred(values: Sequence[float], positions: Sequence[int], day_slots: int) -> list[float]:
    """``values`` less their mean at the same slot of the day."""
    mean = means_by_position(values, positions, day_slots)
    return [value - mean[p] for value, p in zip(values, positions, strict=True)]


def means_by_position(values: Sequence[float], positions: Sequence[int], size: int) -> list[float]:
    """The mean of ``values`` at each position ``0..size-1`` (0 where there is none)."""
    total = [0.0] * size
    count = [0] * size
    for value, position in zip(values, positions, strict=True):
        total[position] += value
        count[position] += 1
    return [t / c if c else 0.0 for t, c in zip(total, count, strict=True)]


def aligned(
    forecast: Sequence[float],
    offsets: Sequence[int],
    weights: Sequence[float],
    low: int,
    high: int,
) -> list[float]:
    """The aligned forecast of the slots ``low..high-1``."""
    base = list(forecast[low:high])
    out = base
    for offset, weight in zip(offsets, weights, strict=True):
        if not weight:
            continue
        out = [
            o + weight * (x - f) if x == x else o
            for o, x, f in zip(out, shifted(forecast, offset, low, high), base, strict=True)
        ]
    return out
