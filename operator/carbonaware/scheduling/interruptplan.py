"""The planner of interruptible work: the forecast as cells, each job's two actions this tick
(run or stay idle) asked of one sweep per start state, and the plan behind the chosen one.

Cell 0 runs from ``now`` to the end of the current slot; cell ``k`` is the forecast's slot
``k``; the cells past the forecast are its tail, planned at the mean of the known forecast
plus the largest risk penalty, as :meth:`ForecastView.best_window` fills unknown slots.
Ranking uses the forecast plus its risk penalty; the expected mean uses the forecast alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.scheduling.interruptjob import (
    InterruptibleDecision,
    InterruptibleJob,
    RunReason,
    RunState,
    Segment,
)
from carbonaware.scheduling.segmentpath import path
from carbonaware.scheduling.segments import INF, OFF, WAIT, Rules, Sweep, optimal_cost, sweep
from carbonaware.scheduling.view import ForecastView

# Work is counted in whole slots when everything falls on the forecast's grid (the
# simulator), else in the fraction of a slot that the overhead and the time left in the
# current slot need, at most twelfths: remaining work and overhead are rounded up to it
# (a plan never counts on less run time than the job needs), the current slot down.
MAX_UNITS_PER_STEP = 12
# Running now wins a tie: the earlier run leaves more room for a forecast that was wrong.
_TIE = 1e-9


def planning_rules(
    step: timedelta,
    *,
    min_run: timedelta,
    resume_overhead: timedelta,
    limited: bool,
    first_length: timedelta | None = None,
) -> tuple[Rules, timedelta]:
    """The planner's rules on a grid of ``step`` and the length of its work unit: whole
    slots when the overhead and the current slot's remainder (``first_length``) fall on the
    grid, else the fraction of a slot they need (at most twelfths; see MAX_UNITS_PER_STEP)."""
    parts = (resume_overhead, step if first_length is None else first_length)
    units = min(MAX_UNITS_PER_STEP, math.lcm(*(step // _gcd(step, part) for part in parts)))
    unit = step / units
    rules = Rules(
        units_per_cell=units,
        # A run shorter than the overhead would waste it: runs last at least that long too.
        min_cells=max(1, _ceil_div(max(min_run, resume_overhead), step)),
        overhead=_ceil_div(resume_overhead, unit),
        limited=limited,
    )
    return rules, unit


def oracle_cost(
    actual: Sequence[float],
    step: timedelta,
    work: timedelta,
    *,
    min_run: timedelta,
    max_interruptions: int | None = None,
    resume_overhead: timedelta = timedelta(0),
) -> float:
    """Perfect foresight: the least ``sum(intensity x hours run)`` of a job that has not
    started, over slots ``actual`` (its whole window, every value known), under the same
    rules as the policy. INF when the work does not fit."""
    rules, unit = planning_rules(
        step,
        min_run=min_run,
        resume_overhead=resume_overhead,
        limited=max_interruptions is not None,
    )
    units = _ceil_div(work, unit)
    return optimal_cost(actual, rules, units, max_interruptions) * (unit / timedelta(hours=1))


@dataclass(frozen=True, slots=True)
class _Question:
    """One action of one job, asked of the sweep from the state the action leads to."""

    phase: int
    work: int
    prefix: float
    allowance: int | None


class Planner:
    """The forecast as cells for one job shape (minimum run, overhead, limited pauses).

    Cell 0 runs from ``now`` to the end of the current slot; cell ``k`` is the view's slot
    ``k``; cells past the view are the tail, planned at the mean of the known forecast. Work
    is counted in units of ``step / units_per_cell``.
    """

    def __init__(self, view: ForecastView, now: datetime, shape: InterruptibleJob) -> None:
        self.view = view
        self.now = now
        step = view.step
        self.first_length = view.origin + step - now
        self.rules, self.unit = planning_rules(
            step,
            min_run=shape.min_run,
            resume_overhead=shape.resume_overhead,
            limited=shape.max_interruptions is not None,
            first_length=self.first_length,
        )
        known = [v for v in view.values if not math.isnan(v)]
        risk = view.risk or (0.0,) * len(view.values)
        self.fill_value = sum(known) / len(known)
        self.fill_cost = self.fill_value + (max(risk) if risk else 0.0)
        self.values = [self.fill_value if math.isnan(v) else v for v in view.values]
        self.costs = [
            self.fill_cost if math.isnan(v) else v + r
            for v, r in zip(view.values, risk, strict=True)
        ]
        self.first_units = self.first_length // self.unit

    def decide(
        self, jobs: Sequence[InterruptibleJob], with_segments: bool
    ) -> list[InterruptibleDecision]:
        """Each job's action this tick: the cheaper of running now and staying idle (ties
        run), by the least cost of the plan each leads to."""
        asked = [self._questions(job) for job in jobs]
        sweeps = self._sweeps(
            [q for run, idle, _ in asked for q in (run, idle) if q is not None],
            max(cells for _, _, cells in asked),
        )
        decisions = []
        for job, (run, idle, cells) in zip(jobs, asked, strict=True):
            run_cost = self._answer(run, cells, sweeps) if run is not None else INF
            idle_cost = self._answer(idle, cells, sweeps) if idle is not None else INF
            runs = idle is None or run_cost <= idle_cost + _TIE * max(1.0, abs(idle_cost))
            if runs and job.state is RunState.RUNNING and job.running_for < job.min_segment:
                reason = RunReason.MINIMUM_RUN
            elif runs and run_cost == INF:
                reason = RunReason.DEADLINE_REACHED  # nothing fits on the grid: run now
            else:
                reason = (
                    RunReason.LOW_CARBON_SEGMENT if runs else RunReason.WAITING_FOR_LOWER_INTENSITY
                )
            chosen = run if runs else idle
            segments: tuple[Segment, ...] = ()
            mean = None
            if with_segments and chosen is not None:
                segments, mean = self._plan(chosen, cells, runs, job)
            decisions.append(InterruptibleDecision(runs, reason, segments, mean, job.latest_resume))
        return decisions

    def _questions(self, job: InterruptibleJob) -> tuple[_Question | None, _Question | None, int]:
        """The run and idle actions of a job (None when not allowed) and its cells."""
        view = self.view
        cells = max(0, (job.deadline - view.origin) // view.step)
        work = _ceil_div(job.remaining, self.unit)
        allowance = job.pauses_left
        idle: _Question | None = None
        if job.state is RunState.WAITING:
            # Without an overhead, never having run and being paused plan the same way.
            idle = _Question(WAIT if self.rules.overhead else OFF, work, 0.0, allowance)
        elif job.state is RunState.PAUSED:
            idle = _Question(OFF, work, 0.0, allowance)
        elif job.may_pause:
            idle = _Question(OFF, work, 0.0, None if allowance is None else allowance - 1)
        debit = self.rules.overhead if job.state is RunState.PAUSED else 0
        first_cost = self.costs[0] if self.costs else self.fill_cost
        if work + debit <= self.first_units:
            return _Question(OFF, 0, first_cost * (work + debit), allowance), idle, cells
        ran = job.running_for if job.state is RunState.RUNNING else timedelta(0)
        still = max(0, _ceil_div(job.min_segment - ran - self.first_length, self.view.step))
        run = _Question(
            still, work + debit - self.first_units, first_cost * self.first_units, allowance
        )
        return run, idle, cells

    def _sweeps(self, questions: Sequence[_Question], cells: int) -> dict[int, Sweep]:
        """One sweep of cells 1.. per start phase, as wide as its widest question and as
        long as the latest deadline (or the forecast) reaches."""
        widths: dict[int, int] = {}
        layers = 1
        for question in questions:
            if question.work > 0:
                widths[question.phase] = max(widths.get(question.phase, 0), question.work)
            if question.allowance is not None:
                layers = max(layers, question.allowance + 1)
        on_phases = max([self.rules.min_cells, *(p + 1 for p in widths if p >= 0)])
        end = min(len(self.costs), cells)
        return {
            phase: sweep(
                self.costs,
                1,
                max(1, end),
                phase,
                self.rules,
                width,
                layers=layers,
                on_phases=on_phases,
            )
            for phase, width in widths.items()
        }

    def _answer(self, question: _Question, cells: int, sweeps: dict[int, Sweep]) -> float:
        if question.work <= 0:
            return question.prefix if cells >= 1 else INF
        if question.allowance is not None and question.allowance < 0:
            return INF
        result = sweeps[question.phase]
        if cells <= result.end:
            best = result.best(question.work, cells - 1, question.allowance)
        else:
            best = result.best_with_tail(
                question.work, cells - result.end, self.fill_cost, question.allowance
            )
        return question.prefix + best

    def _plan(
        self, question: _Question, cells: int, runs: bool, job: InterruptibleJob
    ) -> tuple[tuple[Segment, ...], float | None]:
        """The chosen action's segments from now and their expected mean intensity."""
        runs_left: list[tuple[datetime, datetime, float]] = []
        if runs:
            overhead = job.resume_overhead if job.state is RunState.PAUSED else timedelta(0)
            first = job.remaining + overhead
            end = self.now + min(self.first_length, first)
            runs_left.append((self.now, end, self.values[0]))
        if question.work > 0:
            last = min(len(self.costs), max(1, cells))
            result = sweep(
                self.costs, 1, last, question.phase, self.rules, question.work,
                layers=(question.allowance or 0) + 1, keep=True,
            )  # fmt: skip
            tail = (cells - last, self.fill_cost) if cells > last else None
            cells_run = path(
                result, self.costs, question.work, last - 1, question.allowance, tail=tail
            )
            view = self.view
            for cell, used in cells_run or []:
                start = view.origin + cell * view.step
                value = self.values[cell] if cell < len(self.values) else self.fill_value
                runs_left.append((start, start + used * self.unit, value))
        return _merged(runs_left)


def _merged(
    runs: Sequence[tuple[datetime, datetime, float]],
) -> tuple[tuple[Segment, ...], float | None]:
    """Consecutive runs as segments, and the time-weighted mean of their values."""
    segments: list[Segment] = []
    weighted = 0.0
    seconds = 0.0
    for start, end, value in runs:
        length = (end - start).total_seconds()
        weighted += value * length
        seconds += length
        if segments and segments[-1].end == start:
            segments[-1] = Segment(segments[-1].start, end)
        else:
            segments.append(Segment(start, end))
    return tuple(segments), (weighted / seconds if seconds else None)


def _ceil_div(length: timedelta, unit: timedelta) -> int:
    """``ceil(length / unit)`` for positive units (0 or less for non-positive lengths)."""
    return -((-length) // unit)


def _gcd(a: timedelta, b: timedelta) -> timedelta:
    micro = timedelta(microseconds=1)
    return timedelta(microseconds=math.gcd(a // micro, b // micro))
