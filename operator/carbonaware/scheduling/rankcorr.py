"""How well a forecast ordered clean and dirty hours, once the actuals are in.

A scheduler acts on the order of clean and dirty hours, not on their values: :func:`spearman`
is the rank correlation of a forecast with the actuals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from carbonaware.scheduling.series import NAN


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
