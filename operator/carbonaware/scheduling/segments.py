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

from collections.abc import Sequence
from dataclasses import dataclass, field

from carbonaware.scheduling.segmentstep import (
    INF,
    OFF,
    WAIT,
    Rules,
    States,
    Vector,
    complete,
    general_step,
    least,
    plain_sweep,
    runnable,
)

__all__ = ["INF", "OFF", "WAIT", "Rules", "States", "Sweep", "optimal_cost", "sweep"]


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
        pre = runnable(self.final, 0, self.rules.overhead)
        for layer in range(1, layers):
            pre = least(pre, runnable(self.final, layer, self.rules.overhead))
        return pre

    def layers_for(self, allowance: int | None) -> int:
        if allowance is None or not self.rules.limited:
            return self.layers
        return max(0, min(self.layers, allowance + 1))


def _tail_prefix(pre: Vector, overhead: int, cost: float) -> Vector:
    """``out[i] = min(pre[j] - (j - overhead) x cost for j <= i)``."""
    out: Vector = []
    lowest = INF
    for index, value in enumerate(pre):
        candidate = value - (index - overhead) * cost
        if candidate < lowest:
            lowest = candidate
        out.append(lowest)
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
        final = plain_sweep(costs, first, end, start, rules, done, kept)
        return Sweep(rules, first, end, width, layers, start, final, done, kept)
    states = start
    done_now: list[Vector] = [[INF] * (width + 1) for _ in range(layers)]
    for cell in range(first, end):
        cost = costs[cell]
        done_now = [
            complete(done_now[layer], runnable(states, layer, overhead), cost, units, overhead)
            for layer in range(layers)
        ]
        states = general_step(states, cost, rules, phases, size)
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
