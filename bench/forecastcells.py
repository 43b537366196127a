"""The cells of the forecast benchmark (``bench/forecasts.py``): the traces as named (with
synthetic vintages, or with a poor provider forecast), the job shape, running cells in
parallel, and the captured share over the year or one half of it."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbonaware.scheduling import SimulationSettings, simulate
from carbonaware.scheduling.simulate import SimulationResult, captured
from carbonaware.scheduling.tracegrid import TraceGrid, TraceInput
from carbonaware.scheduling.vintages import (
    DEFAULT_VINTAGE_ERROR,
    VintageGrid,
    synthetic_vintages,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scheduling import trace_input

HOUR = timedelta(hours=1)
SECOND_HALF = datetime(2024, 7, 1, tzinfo=UTC)
SEED = 2024
NOISE_SEED = 7


@dataclasses.dataclass(frozen=True)
class Cell:
    data: str  # "gb-2024", "gb-2024 vintages", "gb-2024 poor", "de-2023"...
    source: str  # what the policy plans on
    settings: SimulationSettings


def base_settings(key: str) -> SimulationSettings:
    every = timedelta(minutes=30) if key.startswith("gb") else HOUR
    return SimulationSettings(duration=HOUR, window=24 * HOUR, arrival_every=every)


_DATA: dict[str, TraceInput] = {}


def data(name: str) -> TraceInput:
    """A trace as named: ``<key>``, ``<key> vintages`` or ``<key> poor``."""
    if name not in _DATA:
        key, _, variant = name.partition(" ")
        trace = trace_input(key)
        if variant == "vintages":
            trace = dataclasses.replace(trace, forecast=None, vintages=vintages_of(trace))
        elif variant == "poor":
            rng = random.Random(NOISE_SEED)
            sigma = daily_swing(trace)
            noisy = [max(0.0, a + rng.gauss(0.0, sigma)) for a in trace.actual]
            trace = dataclasses.replace(trace, forecast=noisy)
        _DATA[name] = trace
    return _DATA[name]


def vintages_of(trace: TraceInput) -> VintageGrid:
    grid = TraceGrid.make(trace)
    settings = DEFAULT_VINTAGE_ERROR.for_grid(grid.actual)
    return synthetic_vintages(
        grid.actual, start=grid.start, step=grid.step, settings=settings, seed=SEED
    )


def daily_swing(trace: TraceInput) -> float:
    """The median over days of (max - min) of the actuals."""
    per_day = round(timedelta(days=1) / trace.step)
    values = list(trace.actual)
    swings = [
        max(values[i : i + per_day]) - min(values[i : i + per_day])
        for i in range(0, len(values) - per_day + 1, per_day)
    ]
    return statistics.median(swings)


def run(cell: Cell) -> tuple[Cell, SimulationResult, float]:
    began = time.process_time()
    result = simulate(data(cell.data), cell.settings)
    return cell, result, time.process_time() - began


def run_all(cells: Sequence[Cell], jobs: int) -> list[tuple[Cell, SimulationResult, float]]:
    if jobs <= 1:
        return [run(cell) for cell in cells]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(run, cells))


def share(result: SimulationResult, *, second_half: bool | None = None) -> float:
    """The captured share over all jobs, or over those arriving in one half of 2024."""
    jobs = [
        o
        for o in result.decisions
        if second_half is None or (o.arrival >= SECOND_HALF) == second_half
    ]
    if not jobs:
        return math.nan
    count = len(jobs)
    return captured(
        math.fsum(o.policy for o in jobs) / count,
        math.fsum(o.immediate for o in jobs) / count,
        math.fsum(o.oracle for o in jobs) / count,
    )


def pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f} %"
