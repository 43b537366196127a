"""The segments of a least-cost plan: walking a kept sweep back from its best completion.

:func:`~carbonaware.scheduling.segments.sweep` gives the least cost of every completion; the
plan behind one is found by walking its kept states back from the completion, at each cell
taking the transition whose cost matches (the same sums in the same order, so the match is
exact). Only the operator asks for plans; the simulator needs the decisions alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from carbonaware.scheduling.segments import INF, OFF, WAIT, States, Sweep


def path(
    result: Sweep,
    costs: Sequence[float],
    work: int,
    last: int,
    allowance: int | None,
    *,
    tail: tuple[int, float] | None = None,
) -> list[tuple[int, int]] | None:
    """The cells a least-cost plan runs, as ``(cell, units used)`` in time order, for the
    question :meth:`Sweep.best` answers (or :meth:`Sweep.best_with_tail`, when ``tail``
    gives its cells and cost per unit; ``last`` is then the sweep's last cell). The sweep
    must have kept its states. None when no plan completes the work."""
    if result.kept is None:
        raise ValueError("path needs a sweep with keep=True")
    if work <= 0:
        return []
    best = result.best(work, last, allowance)
    if tail is not None:
        through = result.best_with_tail(work, tail[0], tail[1], allowance)
        if through < best:
            return _tail_path(result, costs, work, tail, allowance, through)
    if best == INF:
        return None
    layer, index = _completion_cell(result, work, last, allowance, best)
    cell = result.first + index
    before = result.kept[index - 1] if index > 0 else result.start
    phase, layer, position, used = _completion_state(result, before, costs[cell], work, layer, best)
    cells = [(cell, used)]
    cells.extend(_walk_back(result, costs, index - 1, phase, layer, position))
    cells.reverse()
    return cells


def _tail_path(
    result: Sweep,
    costs: Sequence[float],
    work: int,
    tail: tuple[int, float],
    allowance: int | None,
    best: float,
) -> list[tuple[int, int]]:
    """A plan that ends with one run in the tail: the state it leaves the sweep in, the
    cells run before it, then the tail's cells from the first."""
    overhead = result.rules.overhead
    units = result.rules.units_per_cell
    final = result.final
    for layer in range(result.layers_for(allowance)):
        for phase in _phases(final):
            vector = final.vector(phase, layer)
            if vector is None:
                continue
            for position, value in enumerate(vector):
                start_work = position - overhead - (overhead if phase == OFF else 0)
                needed = work - start_work
                if 0 < needed <= tail[0] * units and _same(value + tail[1] * needed, best):
                    cells = _walk_back(
                        result, costs, result.end - result.first - 1, phase, layer, position
                    )
                    cells.reverse()
                    cell = result.end
                    while needed > 0:
                        cells.append((cell, min(units, needed)))
                        needed -= units
                        cell += 1
                    return cells
    raise AssertionError("the tail's best must come from a state at the end of the sweep")


def _completion_cell(
    result: Sweep, work: int, last: int, allowance: int | None, best: float
) -> tuple[int, int]:
    """(layer, cell index in the sweep) where the best completion happened first."""
    for index in range(last - result.first + 1):
        for layer in range(result.layers_for(allowance)):
            if result.done[index][layer][work] <= best:
                return layer, index
    raise AssertionError("the best completion must appear in the sweep")


def _completion_state(
    result: Sweep, before: States, cost: float, work: int, layer: int, best: float
) -> tuple[int, int, int, int]:
    """The state before the completing cell and the units used in it."""
    overhead = result.rules.overhead
    for phase in _phases(before):
        vector = before.vector(phase, layer)
        if vector is None:
            continue
        for used in range(1, result.rules.units_per_cell + 1):
            work_before = work - used
            position = work_before + overhead + (overhead if phase == OFF else 0)
            if 0 <= position < len(vector) and _same(vector[position] + cost * used, best):
                return phase, layer, position, used
    raise AssertionError("the completion must come from a state before it")


def _walk_back(
    result: Sweep, costs: Sequence[float], index: int, phase: int, layer: int, position: int
) -> list[tuple[int, int]]:
    """Cells run before the state (phase, layer, position) after sweep cell ``index``,
    latest first."""
    assert result.kept is not None
    rules = result.rules
    units = rules.units_per_cell
    cells: list[tuple[int, int]] = []
    while index >= 0:
        here = result.kept[index]
        before = result.kept[index - 1] if index > 0 else result.start
        value = _at(here, phase, layer, position)
        cell = result.first + index
        add = costs[cell] * units
        if phase == WAIT:
            index -= 1
            continue
        if phase == OFF:
            if _same(_at(before, OFF, layer, position), value):
                index -= 1
                continue
            paused_from = layer - 1 if rules.limited else layer
            assert _same(_at(before, 0, paused_from, position), value)
            phase, layer = 0, paused_from
            index -= 1
            continue
        cells.append((cell, units))
        candidates: list[tuple[int, int]] = []
        if phase + 1 < len(before.on):
            candidates.append((phase + 1, position - units))
        if phase == 0:
            candidates.append((0, position - units))
        if phase == rules.min_cells - 1:
            candidates.append((OFF, position - units + rules.overhead))
            candidates.append((WAIT, position - units))
        for previous, where in candidates:
            if _same(_at(before, previous, layer, where) + add, value):
                phase, position = previous, where
                break
        else:
            raise AssertionError("a running state must come from a state before it")
        index -= 1
    return cells


def _phases(states: States) -> list[int]:
    return [*range(len(states.on)), OFF, *([WAIT] if states.wait is not None else [])]


def _at(states: States, phase: int, layer: int, position: int) -> float:
    vector = states.vector(phase, layer)
    if vector is None or not 0 <= position < len(vector):
        return INF
    return vector[position]


def _same(a: float, b: float) -> bool:
    if a == b:
        return True
    if a == INF or b == INF:
        return False
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
