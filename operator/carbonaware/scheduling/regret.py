"""How well a forecast ordered clean and dirty hours, once the actuals are in.

A scheduler acts on the order of clean and dirty hours, not on their values. :func:`spearman`
is the rank correlation of a forecast with the actuals; :func:`regrets` judges a forecast by
what a job planned on it would have emitted: for one issue, the start of a job
of ``job_slots`` chosen as the lowest forecast mean within ``window_slots``, against the start
the actuals say was best. The regret is the difference of the two actual means (g/kWh; 0 when
the forecast chose the best start). Combinations of several sources are judged the same way:
a window's blended mean is the weighted mean of the sources' means (the mean is linear), so
every weighting of one issue costs one pass over the windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from carbonaware.scheduling.series import NAN
from carbonaware.scheduling.tracegrid import window_means


def regrets(
    forecasts: Sequence[Sequence[float]],
    actual: Sequence[float],
    weightings: Sequence[Sequence[float]],
    job_slots: int,
) -> list[float] | None:
    """The regret of each weighting of ``forecasts`` (each over the same slots as ``actual``);
    None when some actual, or some forecast's window, is unknown."""
    truth = window_means(actual, job_slots)
    if not truth or any(v != v for v in truth):
        return None
    means = [window_means(forecast, job_slots) for forecast in forecasts]
    if any(v != v for series in means for v in series):
        return None
    best = min(truth)
    out: list[float] = []
    starts = range(len(truth))
    for weights in weightings:
        used = [(w, series) for w, series in zip(weights, means, strict=True) if w]
        choice = min(starts, key=lambda k: sum(w * series[k] for w, series in used))
        out.append(truth[choice] - best)
    return out


def spearman(pairs: Sequence[tuple[float, float]]) -> float:
    """Spearman's rank correlation of the pairs (average ranks for ties; ``nan`` for fewer than
    three pairs or a constant side)."""
    if len(pairs) < 3:
        return NAN
    xs = _ranks([a for a, _ in pairs])
    ys = _ranks([b for _, b in pairs])
    n = len(pairs)
    mean = (n + 1) / 2
    cov = math.fsum((x - mean) * (y - mean) for x, y in zip(xs, ys, strict=True))
    var_x = math.fsum((x - mean) ** 2 for x in xs)
    var_y = math.fsum((y - mean) ** 2 for y in ys)
    if var_x == 0 or var_y == 0:
        return NAN
    return cov / math.sqrt(var_x * var_y)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for position in range(i, j + 1):
            ranks[order[position]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
