"""Small least-squares tools for the forecast correction: pure Python, a few features only.

The fits have at most a handful of columns over a few hundred rows, so the normal equations
solved by Gaussian elimination are exact enough and cost microseconds; no array library is
needed in the operator's image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import mul


def known_rows(rows: list[list[float]]) -> list[list[float]]:
    """``rows`` (features, target and anything kept beside them, one value per sample) less
    the samples where any of them is unknown (``nan``)."""
    if all(not math.isnan(sum(row)) for row in rows):
        return rows
    keep = [all(row[i] == row[i] for row in rows) for i in range(len(rows[0]))]
    return [[value for value, ok in zip(row, keep, strict=True) if ok] for row in rows]


def rms(values: Sequence[float]) -> float:
    """The root mean square (0 for no values)."""
    if not values:
        return 0.0
    return math.sqrt(sum(v * v for v in values) / len(values))


def ridge(
    columns: Sequence[Sequence[float]], target: Sequence[float], ridge: float
) -> tuple[tuple[float, ...], float]:
    """Ridge least squares (Hoerl & Kennard 1970) by the normal equations; returns the
    coefficients and the root-mean-square residual."""
    size = len(columns)
    gram = [[sum(map(mul, columns[i], columns[j])) for j in range(size)] for i in range(size)]
    for i in range(size):
        gram[i][i] += ridge
    rhs = [sum(map(mul, column, target)) for column in columns]
    solved = solve(gram, rhs)
    count = len(target)
    fitted = [0.0] * count
    for coefficient, column in zip(solved, columns, strict=True):
        fitted = [f + coefficient * x for f, x in zip(fitted, column, strict=True)]
    residual_sq = sum((y - f) ** 2 for y, f in zip(target, fitted, strict=True))
    return tuple(solved), math.sqrt(residual_sq / count)


def solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting; a singular system gives zeros there."""
    size = len(rhs)
    rows = [[*row, value] for row, value in zip(matrix, rhs, strict=True)]
    for col in range(size):
        pivot = max(range(col, size), key=lambda r: abs(rows[r][col]))
        if abs(rows[pivot][col]) < 1e-12:
            continue
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(col + 1, size):
            factor = rows[r][col] / rows[col][col]
            if factor:
                for c in range(col, size + 1):
                    rows[r][c] -= factor * rows[col][c]
    solution = [0.0] * size
    for col in reversed(range(size)):
        if abs(rows[col][col]) < 1e-12:
            continue
        acc = rows[col][size] - sum(rows[col][c] * solution[c] for c in range(col + 1, size))
        solution[col] = acc / rows[col][col]
    return solution
