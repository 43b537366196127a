"""The segment planner against brute force: every run pattern of small grids is tried, and
the sweep's least cost, its plan and the tail's flat estimate must agree with the best."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbonaware.scheduling.segmentpath import path
from carbonaware.scheduling.segments import INF, OFF, WAIT, Rules, optimal_cost, sweep


def replay_pattern(
    costs: list[float],
    bits: tuple[int, ...],
    rules: Rules,
    allowance: int | None,
    phase: int,
    work: int,
) -> tuple[float, list[tuple[int, int]]] | None:
    """Cost and (cell, units) of one run pattern, or None if it breaks a rule or never
    finishes. The rules, written out independently of the planner."""
    units, overhead, min_cells = rules.units_per_cell, rules.overhead, rules.min_cells
    done = 0
    cost = 0.0
    pauses = 0
    used: list[tuple[int, int]] = []
    for cell, run in enumerate(bits):
        if run:
            if phase == WAIT:
                effective, after = done, min_cells - 1
            elif phase == OFF:
                effective, after = done - overhead, min_cells - 1
            else:
                effective, after = done, max(phase - 1, 0)
            if effective + units >= work:
                used.append((cell, work - effective))
                return cost + costs[cell] * (work - effective), used
            done = effective + units
            cost += costs[cell] * units
            used.append((cell, units))
            phase = after
        elif phase >= 0:
            if phase != 0 or (allowance is not None and pauses >= allowance):
                return None
            pauses += 1
            phase = OFF
    return None


def brute_force(
    costs: list[float], rules: Rules, allowance: int | None, phase: int, work: int
) -> float:
    best = INF
    for bits in itertools.product((0, 1), repeat=len(costs)):
        found = replay_pattern(costs, bits, rules, allowance, phase, work)
        if found is not None and found[0] < best:
            best = found[0]
    return best


Problem = tuple[list[float], Rules, int | None, int, int]


@st.composite
def problems(draw: st.DrawFn, *, max_cells: int = 7) -> Problem:
    cells = draw(st.integers(1, max_cells))
    units = draw(st.sampled_from([1, 1, 2, 3]))
    overhead = draw(st.sampled_from([0, 0, 1, 2, 4]))
    min_cells = draw(st.integers(1, 3))
    limited = draw(st.booleans())
    allowance = draw(st.integers(0, 2)) if limited else None
    phase = draw(st.sampled_from([WAIT, OFF, *range(min_cells + 1)]))
    work = draw(st.integers(1, cells * units))
    costs = [float(draw(st.integers(0, 9))) for _ in range(cells)]
    rules = Rules(units_per_cell=units, min_cells=min_cells, overhead=overhead, limited=limited)
    return costs, rules, allowance, phase, work


def layers(rules: Rules, allowance: int | None) -> int:
    return allowance + 1 if rules.limited and allowance is not None else 1


@given(problems())
@settings(max_examples=400, deadline=None)
def test_the_sweep_finds_the_least_cost_of_every_plan(
    problem: Problem,
) -> None:
    costs, rules, allowance, phase, work = problem
    result = sweep(
        costs, 0, len(costs), phase, rules, work, layers=layers(rules, allowance), keep=True
    )
    best = result.best(work, len(costs) - 1, allowance)
    assert best == pytest.approx(brute_force(costs, rules, allowance, phase, work))
    planned = path(result, costs, work, len(costs) - 1, allowance)
    if best == INF:
        assert planned is None
        return
    assert planned is not None
    # The plan is a legal run pattern with exactly that cost.
    bits = tuple(1 if any(c == cell for c, _ in planned) else 0 for cell in range(len(costs)))
    replayed = replay_pattern(costs, bits, rules, allowance, phase, work)
    assert replayed is not None
    assert replayed[0] == pytest.approx(best)
    assert replayed[1] == planned


@given(problems(max_cells=5), st.integers(1, 3), st.integers(0, 9))
@settings(max_examples=300, deadline=None)
def test_a_flat_tail_is_planned_as_the_cells_it_stands_for(
    problem: Problem, tail_cells: int, tail_cost: int
) -> None:
    costs, rules, allowance, phase, _ = problem
    work = min(problem[4] + tail_cells, (len(costs) + tail_cells) * rules.units_per_cell)
    result = sweep(
        costs, 0, len(costs), phase, rules, work, layers=layers(rules, allowance), keep=True
    )
    best = result.best_with_tail(work, tail_cells, float(tail_cost), allowance)
    whole = costs + [float(tail_cost)] * tail_cells
    assert best == pytest.approx(brute_force(whole, rules, allowance, phase, work))
    planned = path(
        result, costs, work, len(costs) - 1, allowance, tail=(tail_cells, float(tail_cost))
    )
    if best < INF:
        assert planned is not None
        assert sum(whole[cell] * used for cell, used in planned) == pytest.approx(best)


def test_a_sweep_answers_every_deadline_and_amount_of_work_at_once() -> None:
    costs = [5.0, 1.0, 1.0, 9.0, 9.0, 0.0, 0.0, 0.0]
    rules = Rules(min_cells=2)
    result = sweep(costs, 0, len(costs), WAIT, rules, 4)
    # Two cells by the end of cell 2: the cheap pair.
    assert result.best(2, 2, None) == 2.0
    # Four cells by the end of cell 4: one expensive cell is unavoidable.
    assert result.best(4, 4, None) == pytest.approx(min(5 + 1 + 1 + 9, 1 + 1 + 9 + 9))
    # Four cells by the end: the cheap pair, then the three free cells.
    assert result.best(4, 7, None) == 2.0
    assert result.best(3, 1, None) == INF  # does not fit


def test_the_oracle_respects_the_minimum_run_and_the_pause_limit() -> None:
    costs = [0.0, 9.0, 0.0, 9.0, 0.0, 9.0, 0.0]
    assert optimal_cost(costs, Rules(min_cells=1), 3) == 0.0
    # Runs of two cells at least: every pause costs one expensive cell.
    assert optimal_cost(costs, Rules(min_cells=2), 3) == 9.0
    # No pause at all: one run of three cells.
    assert optimal_cost(costs, Rules(min_cells=1, limited=True), 3, 0) == 9.0
    # A resume costs one unit of overhead on a cell of two units: the four free cells give
    # 2 + 1 + 1 + 1 units, and seven units need one expensive cell (two units at 9).
    with_overhead = Rules(units_per_cell=2, min_cells=1, overhead=1)
    assert optimal_cost(costs, with_overhead, 5) == 0.0
    assert optimal_cost(costs, with_overhead, 6) == 18.0
    assert optimal_cost(costs, with_overhead, 7) == 18.0
    assert math.isinf(optimal_cost(costs, Rules(), 8))


def test_rules_refuse_impossible_grids() -> None:
    with pytest.raises(ValueError, match="at least one unit"):
        Rules(units_per_cell=0)
    with pytest.raises(ValueError, match="at least one cell"):
        Rules(min_cells=0)
