"""Optimal run segments on a grid of cells: the exact planner behind interruptible work.

The problem. Cells follow one another in time; each lasts ``units_per_cell`` work units and
costs ``costs[i]`` per unit (a forecast intensity, plus a risk penalty when ranking). A job
needs ``x`` units of run time. It runs in segments of consecutive cells: every segment but
the job's last runs at least ``min_cells`` cells; each pause between two segments uses one
pause (when pauses are limited); each resume, unlike the first start, spends ``overhead``
units of run time before work goes on. The job stops as soon as its work is done, so its
last cell may be used in part. Minimise the cost of all the time run, overhead included.

The method: a forward dynamic programme over the cells (Bellman's principle of optimality)
whose state after a cell is the phase (waiting, never started; paused; or running, with
``j`` more cells to go before the segment may pause), the pauses used (one layer each when
limited) and the work done in units. Work is counted in whole units, which makes the
programme exact on the grid; a sweep costs O(cells x phases x layers x units). One sweep
from a start state answers every job that starts in that state, whatever its deadline and
work: ``done[k][p][x]`` is the least cost of completing ``x`` units with ``p`` pauses by the
end of cell ``first + k``. That is what lets the simulator decide for every job of a tick
with a few sweeps (:mod:`~carbonaware.scheduling.interruptible`).

Vectors are plain lists indexed by work (offset by ``overhead``, since a resume can leave the
work done below zero for a moment); the loops stay in list comprehensions, which is what keeps
a sweep over two days of half-hours for a two-day job near a millisecond per phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class Sweep:
    """One forward sweep from a start state before cell ``first``."""

    rules: Rules
    first: int
    end: int
    width: int
    layers: int
    start: States
    final: States
    done: list[list[Vector]]
    kept: list[States] | None
    _tail_cache: dict[tuple[int, float], Vector] = field(default_factory=dict)

    def best(self, work: int, last: int, allowance: int | None) -> float:
        """Least cost of completing ``work`` units by the end of cell ``last`` (< ``end``)
        with at most ``allowance`` pauses (None: any)."""
        if work <= 0:
            return 0.0
        if last < self.first or work > self.width:
            return INF
        done = self.done[last - self.first]
        return min(done[p][work] for p in range(self.layers_for(allowance)))

    def best_with_tail(
        self, work: int, tail_cells: int, tail_cost: float, allowance: int | None
    ) -> float:
        """Like :meth:`best` at the end of the sweep, when ``tail_cells`` more cells follow at
        one cost per unit (the unknown future, planned at a flat estimate). One run in them
        is enough: with one cost per unit, pausing there never saves anything."""
        if work <= 0:
            return 0.0
        best = self.best(work, self.end - 1, allowance) if self.end > self.first else INF
        capacity = tail_cells * self.rules.units_per_cell
        if capacity <= 0:
            return best
        overhead = self.rules.overhead
        layers = self.layers_for(allowance)
        pre = self._tail_starts(layers)
        if capacity >= work + overhead:
            # Every state may finish in the tail: the least of pre[i] + (work - i') x cost
            # over i' = i - overhead < work is a prefix minimum, computed once per sweep.
            key = (layers, tail_cost)
            prefix = self._tail_cache.get(key)
            if prefix is None:
                prefix = self._tail_cache[key] = _tail_prefix(pre, overhead, tail_cost)
            index = min(work - 1 + overhead, len(prefix) - 1)
            through = prefix[index] + tail_cost * work if index >= 0 else INF
            return through if through < best else best
        for index, value in enumerate(pre):
            needed = work - (index - overhead)
            if value < INF and 0 < needed <= capacity:
                cost = value + tail_cost * needed
                if cost < best:
                    best = cost
        return best

    def _tail_starts(self, layers: int) -> Vector:
        """The runnable states after the last cell, least over the first ``layers``."""
        pre = _runnable(self.final, 0, self.rules.overhead)
        for layer in range(1, layers):
            pre = _least(pre, _runnable(self.final, layer, self.rules.overhead))
        return pre

    def layers_for(self, allowance: int | None) -> int:
        if allowance is None or not self.rules.limited:
            return self.layers
        return max(0, min(self.layers, allowance + 1))


def _tail_prefix(pre: Vector, overhead: int, cost: float) -> Vector:
    """``out[i] = min(pre[j] - (j - overhead) x cost for j <= i)``."""
    out: Vector = []
    least = INF
    for index, value in enumerate(pre):
        candidate = value - (index - overhead) * cost
        if candidate < least:
            least = candidate
        out.append(least)
    return out


def sweep(
    costs: Sequence[float],
    first: int,
    end: int,
    phase: int,
    rules: Rules,
    width: int,
    *,
    layers: int = 1,
    on_phases: int | None = None,
    keep: bool = False,
) -> Sweep:
    """Sweep cells ``first .. end-1`` from ``phase`` with no work done and no pause used.

    ``width`` is the most work any question will ask about; ``layers`` the pause layers
    (``max allowance + 1`` when pauses are limited); ``on_phases`` the running phases to
    track (at least ``min_cells``; more when a start state needs more cells before it may
    pause). ``keep`` keeps every cell's states, for
    :func:`~carbonaware.scheduling.segmentpath.path`.
    """
    units = rules.units_per_cell
    overhead = rules.overhead
    phases = max(rules.min_cells, on_phases or 0, phase + 1)
    size = overhead + width
    layers = layers if rules.limited else 1
    with_wait = phase == WAIT and overhead > 0
    if phase == WAIT and not with_wait:
        phase = OFF  # without an overhead, waiting and pausing are the same state

    def empty() -> list[Vector]:
        return [[INF] * size for _ in range(layers)]

    start = States(
        wait=empty() if with_wait else None, off=empty(), on=[empty() for _ in range(phases)]
    )
    origin = start.vector(phase, 0)
    assert origin is not None
    if size > overhead:
        origin[overhead] = 0.0
    done: list[list[Vector]] = []
    kept: list[States] | None = [] if keep else None
    if overhead == 0 and units == 1:
        final = _plain_sweep(costs, first, end, start, rules, done, kept)
        return Sweep(rules, first, end, width, layers, start, final, done, kept)
    states = start
    done_now: list[Vector] = [[INF] * (width + 1) for _ in range(layers)]
    for cell in range(first, end):
        cost = costs[cell]
        done_now = [
            _complete(done_now[layer], _runnable(states, layer, overhead), cost, units, overhead)
            for layer in range(layers)
        ]
        states = _step(states, cost, rules, phases, size)
        done.append(done_now)
        if kept is not None:
            kept.append(states)
    return Sweep(
        rules=rules,
        first=first,
        end=end,
        width=width,
        layers=layers,
        start=start,
        final=states,
        done=done,
        kept=kept,
    )


def _plain_sweep(
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
                _shift_least(
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
            least = running_now[0]
            for vector in running_now[1:]:
                least = _least(least, vector)
            previous = done_now[layer]
            new_done.append(
                [previous[0]]
                + [
                    a if a <= b else b
                    for a, b in zip(previous[1 : reach + 1], least[1:], strict=True)
                ]
                + previous[reach + 1 :]
            )
            # Not running: stay paused, or pause a run that may (one layer up when counted).
            if not rules.limited:
                paused = _least(off[layer], on[0][layer])
            elif layer > 0:
                paused = _least(off[layer], on[0][layer - 1])
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
            kept.append(_padded(off, on, size))
    return _padded(off, on, size)


def _shift_least(vectors: Sequence[Vector], cost: float, reach: int) -> Vector:
    """``min(vectors)`` one unit up, plus ``cost`` (length ``reach + 1``)."""
    if not vectors:
        return [INF] * (reach + 1)
    if len(vectors) == 1:
        return [INF] + [value + cost for value in vectors[0]]
    if len(vectors) == 2:
        return [INF] + [
            (a if a <= b else b) + cost for a, b in zip(vectors[0], vectors[1], strict=True)
        ]
    least = vectors[0]
    for vector in vectors[1:]:
        least = _least(least, vector)
    return [INF] + [value + cost for value in least]


def _padded(off: Sequence[Vector], on: Sequence[Sequence[Vector]], size: int) -> States:
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


def _least(first: Vector, second: Vector) -> Vector:
    return [a if a <= b else b for a, b in zip(first, second, strict=True)]


def _runnable(states: States, layer: int, overhead: int) -> Vector:
    """The least cost of each state that may run the next cell, indexed by the work the
    job would have once a resume's overhead is spent (``work - overhead`` for a paused
    job): the states a completion in the next cell starts from."""
    pre = states.on[0][layer]
    for running in states.on[1:]:
        pre = _least(pre, running[layer])
    paused = states.off[layer]
    pre = _least(pre, _shift(paused, -overhead, 0.0) if overhead else paused)
    if states.wait is not None:
        pre = _least(pre, states.wait[layer])
    return pre


def _complete(done: Vector, pre: Vector, cost: float, units: int, overhead: int) -> Vector:
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
    least = [value - cost * index for index, value in enumerate(pre)]
    span = 1
    while span * 2 <= units:
        least = least[:span] + [
            a if a <= b else b for a, b in zip(least[span:], least[:-span], strict=True)
        ]
        span *= 2
    if span < units:
        back = units - span
        least = least[:back] + [
            a if a <= b else b for a, b in zip(least[back:], least[:-back], strict=True)
        ]
    ends = least[overhead : overhead + width]
    return [done[0]] + [
        a if a <= (b := end + cost * target) else b
        for a, end, target in zip(
            done[1:], ends, range(overhead + 1, overhead + width + 1), strict=True
        )
    ]


def _step(states: States, cost: float, rules: Rules, phases: int, size: int) -> States:
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
            starts = _least(starts, _shift(states.wait[layer], units, add))
        for j in range(phases):
            inflow: Vector | None = on[j + 1][layer] if j + 1 < phases else None
            if j == 0:
                inflow = on[0][layer] if inflow is None else _least(inflow, on[0][layer])
            shifted = _shift(inflow, units, add) if inflow is not None else None
            if j == start_phase:
                shifted = starts if shifted is None else _least(shifted, starts)
            new_on[j].append(shifted if shifted is not None else [INF] * size)
        # Not running this cell: stay paused, or pause a segment that has run long enough.
        if not limited:
            new_off.append(_least(states.off[layer], on[0][layer]))
        elif layer == 0:
            new_off.append(states.off[0])
        else:
            new_off.append(_least(states.off[layer], on[0][layer - 1]))
    return States(wait=states.wait, off=new_off, on=new_on)


def optimal_cost(
    costs: Sequence[float], rules: Rules, work: int, allowance: int | None = None
) -> float:
    """The least cost of a job that has not started, over all of ``costs`` (the oracle when
    they are the actual intensities)."""
    if work <= 0:
        return 0.0
    layers = (allowance + 1) if rules.limited and allowance is not None else 1
    result = sweep(costs, 0, len(costs), WAIT, rules, work, layers=layers)
    return result.best(work, len(costs) - 1, allowance)
