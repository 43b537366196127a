"""Interruptible work benchmark: long jobs that may pause in dirty hours, on a year of real data.

Runs the interruptible simulator (``carbonaware.scheduling.interruptsim``, the same code as
``carbonaware simulate --interruptible``) for GB 2024 (the trace's forecast column,
corrected) and DE 2023 (the operator's own forecaster: the trace has no forecast), 12, 24 and
48 h jobs in 48, 72 and 168 h windows, a job every hour, runs of at least 1 h; each cell
beside the single-start Forecast policy on the same jobs and both perfect-foresight oracles.
The headline cell (GB 2024, 24 h jobs in 72 h windows) is re-scored from its segments file
and the trace alone (mean intensity; jobs run outside their window or for too short). Then
the headline cell with one setting changed at a time, and the headline shape on the two 2023
traces no setting was chosen on (US-MIDA-PJM and IN-WE).

Writes the "Interruptible work" section of docs/benchmarks.md (between its markers) and
docs/img/interruptible.png.

    .venv/bin/python bench/interruptible.py            # everything (about 41 min of CPU)
    .venv/bin/python bench/interruptible.py --jobs 2   # two processes (about 23 min on 2 cores)
    .venv/bin/python bench/interruptible.py --only de-2023 --no-write

Data: GB 2024 Carbon Intensity API, NESO (CC BY 4.0); DE, US-MIDA-PJM and IN-WE 2023
Electricity Maps (ODbL).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from carbonaware.scheduling import ForecastMode, SimulationSettings, simulate
from carbonaware.scheduling.interruptsim import InterruptibleSettings, simulate_interruptible
from carbonaware.scheduling.report import BUILTIN_TRACES, decisions_csv
from interruptible_report import (
    ATTRIBUTION,
    MATRIX_HEADERS,
    MATRIX_TRACES,
    ROOT,
    Measured,
    machine_load,
    matrix_row,
    section,
    write_plot,
    write_section,
)
from scheduling import trace_input

HOUR = timedelta(hours=1)
DURATIONS = (12, 24, 48)
WINDOWS = (48, 72, 168)
UNSEEN_TRACES = ("pjm-2023", "in-we-2023")
RULES = InterruptibleSettings(min_run=HOUR)
HEADLINE = ("gb-2024", 24, 72)


@dataclass(frozen=True)
class Cell:
    trace: str
    label: str
    settings: SimulationSettings
    rules: InterruptibleSettings = RULES
    keep_segments: bool = False


def base_settings(trace: str, duration: int, window: int) -> SimulationSettings:
    has_column = BUILTIN_TRACES[trace].forecast_column is not None
    return SimulationSettings(
        forecast=ForecastMode.COLUMN if has_column else ForecastMode.OWN,
        duration=duration * HOUR,
        window=window * HOUR,
        arrival_every=HOUR,
    )


def matrix(traces: Sequence[str]) -> list[Cell]:
    """Every cell of the matrix; the headline cell also re-scores its segments file."""
    return [
        Cell(
            trace,
            "matrix",
            base_settings(trace, duration, window),
            keep_segments=(trace, duration, window) == HEADLINE,
        )
        for trace in traces
        for duration in DURATIONS
        for window in WINDOWS
    ]


def extras() -> list[Cell]:
    """The headline cell with one setting changed at a time, and unseen traces."""
    trace, duration, window = HEADLINE
    base = base_settings(trace, duration, window)
    cells = [
        Cell(
            trace,
            "`--resume-overhead 5m`",
            base,
            replace(RULES, resume_overhead=timedelta(minutes=5)),
        ),
        Cell(trace, "`--max-interruptions 2`", base, replace(RULES, max_interruptions=2)),
        Cell(trace, "`--min-run 30m`", base, replace(RULES, min_run=HOUR / 2)),
        Cell(trace, "`--min-run 2h`", base, replace(RULES, min_run=2 * HOUR)),
        Cell(
            trace,
            "`--no-correction` (the column as published)",
            replace(base, correct_forecast=False),
        ),
        Cell(trace, "`--horizon 72h` (the whole window visible)", replace(base, horizon=72 * HOUR)),
        Cell(
            trace,
            "`--forecast own` (no provider forecast)",
            replace(base, forecast=ForecastMode.OWN),
        ),
    ]
    cells += [Cell(key, "unseen", base_settings(key, duration, window)) for key in UNSEEN_TRACES]
    return cells


def cell_key(cell: Cell) -> str:
    """What a cell runs, as a string: the key of its line in ``--results``."""
    what = [cell.trace, cell.label, cell.keep_segments, repr(cell.settings), repr(cell.rules)]
    return json.dumps(what)


def load_results(path: str | None) -> dict[str, Measured]:
    """Cells measured by an earlier run with the same ``--results`` file."""
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return {line["key"]: Measured(**line["measured"]) for line in lines}


def save_result(path: str | None, cell: Cell, measured: Measured) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            line = {"key": cell_key(cell), "measured": dataclasses.asdict(measured)}
            handle.write(json.dumps(line) + "\n")


def run_cell(cell: Cell) -> Measured:
    data = trace_input(cell.trace)
    began = time.perf_counter()
    began_cpu = time.process_time()
    result = simulate_interruptible(data, cell.settings, cell.rules)
    cpu = time.process_time() - began_cpu
    wall = time.perf_counter() - began
    single = simulate(data, cell.settings).savings * 100
    extra = {}
    if cell.keep_segments:
        extra = rescore(cell.trace, cell.settings.duration, decisions_csv(result))
    return Measured(cell.trace, cell.label, result.summary(), single, cpu, wall, extra)


def rescore(trace: str, duration: timedelta, segments: str) -> dict[str, float]:
    """What the segments file and the trace alone say: the policy's mean intensity per hour
    of work (every segment charged the actual value of each slot it overlaps), the jobs that
    ran outside [arrival, latest finish], and the jobs that ran for less than ``duration``."""
    data = trace_input(trace)
    slot_of = {start: i for i, start in enumerate(data.starts)}
    step = data.step
    first = data.starts[0]
    total = 0.0
    ran: dict[str, timedelta] = {}
    outside: set[str] = set()
    for row in csv.DictReader(io.StringIO(segments)):
        job = row["arrival"]
        moment = parse(row["segment_start"])
        end = parse(row["segment_end"])
        ran[job] = ran.get(job, timedelta(0)) + (end - moment)
        if end > parse(row["latest_finish"]) or moment < parse(job):
            outside.add(job)
        while moment < end:
            slot_start = first + ((moment - first) // step) * step
            upto = min(end, slot_start + step)
            total += data.actual[slot_of[slot_start]] * ((upto - moment) / HOUR)
            moment = upto
    return {
        "recomputed": total / (len(ran) * (duration / HOUR)),
        "jobs_in_file": len(ran),
        "outside_in_file": len(outside),
        "short_in_file": sum(1 for length in ran.values() if length < duration),
    }


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=MATRIX_TRACES, action="append")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--no-extras", action="store_true", help="the matrix only")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--results",
        help="append each measured cell to this JSON-lines file and skip the cells already in "
        "it (a run that was stopped resumes; delete the file after changing the code)",
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    traces = args.only or list(MATRIX_TRACES)
    print(ATTRIBUTION)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(machine_load())
    print("label |", " | ".join(MATRIX_HEADERS))
    cells = matrix(traces)
    if not args.no_extras and "gb-2024" in traces:
        cells += extras()

    # The longest cells first, so two processes finish together: the work per tick grows
    # with the job's length and the part of the window the forecast covers, several times
    # over with an overhead (work in sixths of a slot) or a pause limit (one layer a pause).
    def cost(cell: Cell) -> float:
        weight = 8.0 if cell.rules.resume_overhead else 1.0
        weight *= 1 + (cell.rules.max_interruptions or 0)
        hours = cell.settings.duration / HOUR
        return weight * hours * min(cell.settings.window / HOUR, 48)

    order = sorted(cells, key=lambda cell: -cost(cell))
    done = load_results(args.results)
    measured = {id(c): done[cell_key(c)] for c in order if cell_key(c) in done}
    todo = [c for c in order if id(c) not in measured]
    for m in measured.values():
        print(m.label, "|", " | ".join(matrix_row(m)), "(from --results)", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for cell, m in zip(todo, pool.map(run_cell, todo), strict=True):
            print(m.label, "|", " | ".join(matrix_row(m)), flush=True)
            save_result(args.results, cell, m)
            measured[id(cell)] = m
    rows = [measured[id(c)] for c in cells]
    misses = sum(int(m.summary["misses"]) for m in measured.values())
    print(f"deadline misses over {len(measured)} runs: {misses}")
    failures = misses
    for m in measured.values():
        if "recomputed" in m.extra:
            print(
                f"{m.trace} policy mean recomputed from the segments file: "
                f"{m.extra['recomputed']:.4f} (simulator "
                f"{m.summary['mean_intensity']['policy']:.4f}); jobs in the file "
                f"{m.extra['jobs_in_file']:.0f} of {m.summary['jobs']}, outside their window "
                f"{m.extra['outside_in_file']:.0f}, short {m.extra['short_in_file']:.0f}"
            )
            failures += int(m.extra["outside_in_file"] + m.extra["short_in_file"])
            failures += int(m.extra["jobs_in_file"] != m.summary["jobs"])
    if not args.no_write:
        # After the pool has shut down, the children's CPU time includes all its workers.
        cpu = sum(
            resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        wall = (time.perf_counter() - began) / 60
        total = f"this run, `--jobs {args.jobs}`: {wall:.0f} min wall, {cpu / 60:.0f} min CPU"
        written = [write_section(section(rows, total))]
        plot = write_plot([m for m in rows if m.label == "matrix"])
        if plot is not None:
            written.append(plot)
        for path in written:
            print(f"wrote {path.relative_to(ROOT)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
