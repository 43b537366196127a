"""The states of the segment planner and one cell's step of its sweep.

A state vector holds, for one phase and one pause layer, the least cost of each amount of work
done (index ``work + overhead``). :func:`plain_sweep` is the whole sweep for the common case
(no overhead: one unit per cell), fused into few list passes; :func:`general_step` and
:func:`complete` are one cell of the general case (overhead, units finer than a cell). Both
keep to list comprehensions: that is what makes a sweep cheap in pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

INF = math.inf
WAIT = -2
"""Phase of a job that has never run: its first start costs no overhead."""
OFF = -1
"""Phase of a paused job: resuming costs the overhead."""

Vector = list[float]


@dataclass(frozen=True, slots=True)
class Rules:
    """The constraints every plan keeps, in cells and work units.

    ``limited``: pauses are counted in layers (``max_interruptions`` was given); without it a
    plan may pause as often as the minimum run allows.
    """

    units_per_cell: int = 1
    min_cells: int = 1
    overhead: int = 0
    limited: bool = False

    def __post_init__(self) -> None:
        if self.units_per_cell < 1 or self.min_cells < 1 or self.overhead < 0:
            raise ValueError("a cell has at least one unit, a segment at least one cell")


@dataclass(slots=True)
class States:
    """The least cost of each state after some cell: ``wait[p]``, ``off[p]`` and
    ``on[j][p]`` are vectors over work (index ``work + overhead``); ``wait`` is None where
    it cannot differ from ``off`` (no overhead) or cannot occur."""

    wait: list[Vector] | None
    off: list[Vector]
    on: list[list[Vector]]

    def vector(self, phase: int, layer: int) -> Vector | None:
        if phase == WAIT:
            return self.wait[layer] if self.wait is not None else None
        if phase == OFF:
            return self.off[layer]
        return self.on[phase][layer]


def plain_sweep(
    costs: Sequence[float],
    first: int,
    end: int,
    start: States,
    rules: Rules,
    done: list[list[Vector]],
    kept: list[States] | None,
) -> States:
    """:func:`sweep` without overhead (one unit per cell), the common case, fused into fewer
    list passes. After ``k`` cells no state has done more than ``k`` units, so the vectors
    grow by one entry per cell up to their full size and the passes only touch what can be
    reached."""
    size = len(start.off[0])
    layers = len(start.off)
    off = [vector[:1] for vector in start.off]
    on = [[vector[:1] for vector in phase] for phase in start.on]
    phases = len(on)
    start_phase = rules.min_cells - 1
    done_now = [[INF] * (size + 1) for _ in range(layers)]
    for cell in range(first, end):
        cost = costs[cell]
        reach = len(off[0])
        grown = min(reach + 1, size)
        new_on: list[list[Vector]] = [[] for _ in range(phases)]
        new_off: list[Vector] = []
        new_done: list[Vector] = []
        for layer in range(layers):
            # Every way into each running phase moves one unit up and pays the cell.
            running_now = [
                shift_least(
                    [
                        *([on[j + 1][layer]] if j + 1 < phases else []),
                        *([on[0][layer]] if j == 0 else []),
                        *([off[layer]] if j == start_phase else []),
                    ],
                    cost,
                    reach,
                )
                for j in range(phases)
            ]
            # A completion in this cell comes from any state: each is in one running phase.
            lowest = running_now[0]
            for vector in running_now[1:]:
                lowest = least(lowest, vector)
            previous = done_now[layer]
            new_done.append(
                [previous[0]]
                + [
                    a if a <= b else b
                    for a, b in zip(previous[1 : reach + 1], lowest[1:], strict=True)
                ]
                + previous[reach + 1 :]
            )
            # Not running: stay paused, or pause a run that may (one layer up when counted).
            if not rules.limited:
                paused = least(off[layer], on[0][layer])
            elif layer > 0:
                paused = least(off[layer], on[0][layer - 1])
            else:
                paused = list(off[layer])
            if grown > reach:
                paused.append(INF)
            new_off.append(paused)
            for j, vector in enumerate(running_now):
                new_on[j].append(vector[:grown])
        off, on, done_now = new_off, new_on, new_done
        done.append(done_now)
        if kept is not None:
            kept.append(padded(off, on, size))
    return padded(off, on, size)


def shift_least(vectors: Sequence[Vector], cost: float, reach: int) -> Vector:
    """``min(vectors)`` one unit up, plus ``cost`` (length ``reach + 1``)."""
    if not vectors:
        return [INF] * (reach + 1)
    if len(vectors) == 1:
        return [INF] + [value + cost for value in vectors[0]]
    if len(vectors) == 2:
        return [INF] + [
            (a if a <= b else b) + cost for a, b in zip(vectors[0], vectors[1], strict=True)
        ]
    lowest = vectors[0]
    for vector in vectors[1:]:
        lowest = least(lowest, vector)
    return [INF] + [value + cost for value in lowest]


def padded(off: Sequence[Vector], on: Sequence[Sequence[Vector]], size: int) -> States:
    """States with their vectors grown to full size (the unreachable tail is INF)."""

    def full(vector: Vector) -> Vector:
        return vector + [INF] * (size - len(vector))

    return States(
        wait=None,
        off=[full(vector) for vector in off],
        on=[[full(vector) for vector in phase] for phase in on],
    )


def _shift(vector: Vector, by: int, add: float) -> Vector:
    """``out[i] = vector[i - by] + add`` (INF where ``i - by`` falls outside)."""
    size = len(vector)
    if by >= size or -by >= size:
        return [INF] * size
    if by > 0:
        return [INF] * by + [value + add for value in vector[: size - by]]
    if by < 0:
        return [value + add for value in vector[-by:]] + [INF] * (-by)
    return [value + add for value in vector]


def least(first: Vector, second: Vector) -> Vector:
    return [a if a <= b else b for a, b in zip(first, second, strict=True)]


def runnable(states: States, layer: int, overhead: int) -> Vector:
    """The least cost of each state that may run the next cell, indexed by the work the
    job would have once a resume's overhead is spent (``work - overhead`` for a paused
    job): the states a completion in the next cell starts from."""
    pre = states.on[0][layer]
    for running in states.on[1:]:
        pre = least(pre, running[layer])
    paused = states.off[layer]
    pre = least(pre, _shift(paused, -overhead, 0.0) if overhead else paused)
    if states.wait is not None:
        pre = least(pre, states.wait[layer])
    return pre


def complete(done: Vector, pre: Vector, cost: float, units: int, overhead: int) -> Vector:
    """Completions within one cell: a job needing ``x`` units finishes in it from a state
    with ``x - d`` units (1 <= d <= units), paying ``d`` units of the cell's cost."""
    if units == 1 and overhead == 0:
        head = done[0]
        return [head] + [
            a if a <= (b := value + cost) else b for a, value in zip(done[1:], pre, strict=True)
        ]
    # For x: the least over j in [x + overhead - units, x + overhead - 1] of
    # pre[j] + cost * (x + overhead - j), i.e. a sliding minimum of pre[j] - cost * j over
    # `units` entries, plus cost * (x + overhead): windows doubled up to the largest power of
    # two within `units`, then two overlapping ones.
    width = len(done) - 1
    window = [value - cost * index for index, value in enumerate(pre)]
    span = 1
    while span * 2 <= units:
        window = window[:span] + [
            a if a <= b else b for a, b in zip(window[span:], window[:-span], strict=True)
        ]
        span *= 2
    if span < units:
        back = units - span
        window = window[:back] + [
            a if a <= b else b for a, b in zip(window[back:], window[:-back], strict=True)
        ]
    ends = window[overhead : overhead + width]
    return [done[0]] + [
        a if a <= (b := end + cost * target) else b
        for a, end, target in zip(
            done[1:], ends, range(overhead + 1, overhead + width + 1), strict=True
        )
    ]


def general_step(states: States, cost: float, rules: Rules, phases: int, size: int) -> States:
    """The states after running or not running one more cell."""
    units = rules.units_per_cell
    overhead = rules.overhead
    add = cost * units
    start_phase = rules.min_cells - 1
    limited = rules.limited
    layers = len(states.off)
    on = states.on
    new_on: list[list[Vector]] = [[] for _ in range(phases)]
    new_off: list[Vector] = []
    for layer in range(layers):
        # Starting (or resuming) a segment in this cell.
        starts = _shift(states.off[layer], units - overhead, add)
        if states.wait is not None:
            starts = least(starts, _shift(states.wait[layer], units, add))
        for j in range(phases):
            inflow: Vector | None = on[j + 1][layer] if j + 1 < phases else None
            if j == 0:
                inflow = on[0][layer] if inflow is None else least(inflow, on[0][layer])
            shifted = _shift(inflow, units, add) if inflow is not None else None
            if j == start_phase:
                shifted = starts if shifted is None else least(shifted, starts)
            new_on[j].append(shifted if shifted is not None else [INF] * size)
        # Not running this cell: stay paused, or pause a segment that has run long enough.
        if not limited:
            new_off.append(least(states.off[layer], on[0][layer]))
        elif layer == 0:
            new_off.append(states.off[0])
        else:
            new_off.append(least(states.off[layer], on[0][layer - 1]))
    return States(wait=states.wait, off=new_off, on=new_on)
