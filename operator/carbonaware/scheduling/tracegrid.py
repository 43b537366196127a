"""Traces on a regular time grid, as the simulator replays them.

A trace arrives as parallel columns (:class:`TraceInput`); :class:`TraceGrid` lays it on a
regular grid with ``nan`` where the trace has no row, never filling a gap. Several traces
replayed side by side (one per region) must sit on the same grid: :func:`align_traces`
refuses them, saying why, when their steps or their timestamps differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.scheduling.series import NAN
from carbonaware.scheduling.vintages import VintageGrid

VintageRows = Sequence[tuple[datetime, datetime, float]]


@dataclass(frozen=True, slots=True)
class TraceInput:
    """A trace as parallel columns (``carbonaware.providers.tracefile.Trace`` fits)."""

    starts: Sequence[datetime]
    step: timedelta
    actual: Sequence[float]
    forecast: Sequence[float] | None = None
    index: Sequence[IntensityIndex | None] | None = None
    # Forecasts as published: ``(issued_at, slot_start, value)`` rows, or vintages already
    # laid on this trace's grid (:mod:`carbonaware.scheduling.vintages`).
    vintages: VintageRows | VintageGrid | None = None


@dataclass(frozen=True, slots=True)
class TraceGrid:
    """The trace on a regular grid; slots missing from the trace are ``nan``. ``published``
    is the vintages' forecast of each slot as seen at its start (their forecast column)."""

    start: datetime
    step: timedelta
    actual: list[float]
    forecast: list[float] | None
    index: list[IntensityIndex | None] | None
    vintages: VintageGrid | None = None
    published: list[float] | None = None

    @classmethod
    def make(cls, trace: TraceInput) -> TraceGrid:
        if len(trace.starts) < 2:
            raise ValueError("a trace needs at least two rows")
        if len(trace.actual) != len(trace.starts):
            raise ValueError("the actual column must have one value per row")
        step = trace.step
        first = trace.starts[0]
        size = (trace.starts[-1] - first) // step + 1
        actual = [NAN] * size
        forecast = [NAN] * size if trace.forecast is not None else None
        index: list[IntensityIndex | None] | None = (
            [None] * size if trace.index is not None else None
        )
        for row, moment in enumerate(trace.starts):
            offset = moment - first
            if offset % step:
                raise ValueError(f"trace row at {moment.isoformat()} is off the {step} grid")
            slot = offset // step
            actual[slot] = float(trace.actual[row])
            if forecast is not None and trace.forecast is not None:
                forecast[slot] = float(trace.forecast[row])
            if index is not None and trace.index is not None:
                index[slot] = trace.index[row]
        vintages = trace.vintages
        if vintages is not None and not isinstance(vintages, VintageGrid):
            vintages = VintageGrid.from_rows(vintages, start=first, step=step, size=size)
        if vintages is not None and (vintages.start, vintages.step, vintages.size) != (
            first,
            step,
            size,
        ):
            raise ValueError("the vintages are on another grid than the trace")
        return cls(
            start=first,
            step=step,
            actual=actual,
            forecast=forecast,
            index=index,
            vintages=vintages,
            published=vintages.as_published() if vintages is not None else None,
        )

    def vintage_forecast(self, base: int, tick: int, end: int) -> list[float]:
        """Slots ``base .. end-1`` as a step at ``tick`` sees the vintages: before ``tick`` the
        forecast each slot had at its start, from ``tick`` on the latest issue's."""
        assert self.vintages is not None
        assert self.published is not None
        end = min(end, len(self.actual))
        return self.published[base:tick] + self.vintages.values_at(tick, end - tick)

    def time_of(self, slot: int) -> datetime:
        return self.start + slot * self.step

    def current_point(self, tick: int) -> IntensityPoint | None:
        """The latest actual at ``tick``: the slot that ended then (the current one is not
        known yet)."""
        if tick < 1:
            return None
        value = self.actual[tick - 1]
        if value != value:
            return None
        return IntensityPoint(
            start=self.time_of(tick - 1),
            end=self.time_of(tick),
            intensity=value,
            source="trace",
            is_forecast=False,
            index=self.index[tick - 1] if self.index is not None else None,
        )


def align_traces(traces: Sequence[tuple[str, TraceInput]]) -> list[TraceGrid]:
    """Grids for traces read side by side, one per named region, on the same timestamps.

    Raises ValueError naming the regions at fault when two traces differ in step or in the
    set of slot starts they hold (a slot missing from every trace is a gap, as in one trace).
    """
    if not traces:
        raise ValueError("at least one region is needed")
    names = [name for name, _ in traces]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"each region may be named once; repeated: {', '.join(repeated)}")
    first_name, first = traces[0]
    first_starts = set(first.starts)
    for name, trace in traces[1:]:
        if trace.step != first.step:
            raise ValueError(
                f"the traces must have the same step: {first_name} has {first.step}, "
                f"{name} has {trace.step}"
            )
        starts = set(trace.starts)
        if starts != first_starts:
            raise ValueError(
                f"the traces must cover the same slots: {first_name} has "
                f"{_coverage(first.starts)}, {name} has {_coverage(trace.starts)}"
                f"{_first_difference(first_name, first_starts, name, starts)}"
            )
    return [TraceGrid.make(trace) for _, trace in traces]


def _coverage(starts: Sequence[datetime]) -> str:
    if not starts:
        return "no rows"
    return f"{len(starts)} rows from {iso_utc(min(starts))} to {iso_utc(max(starts))}"


def _first_difference(
    name_a: str, starts_a: set[datetime], name_b: str, starts_b: set[datetime]
) -> str:
    only_a = starts_a - starts_b
    only_b = starts_b - starts_a
    first_a = min(only_a) if only_a else None
    first_b = min(only_b) if only_b else None
    if first_a is not None and (first_b is None or first_a <= first_b):
        return f"; the first slot in one and not the other: {iso_utc(first_a)} (in {name_a})"
    if first_b is not None:
        return f"; the first slot in one and not the other: {iso_utc(first_b)} (in {name_b})"
    return ""


def whole_slots(length: timedelta, step: timedelta, what: str) -> int:
    """``length`` in trace steps; ValueError unless it is a positive whole number of them."""
    if length <= timedelta(0) or length % step:
        raise ValueError(f"the {what} must be a positive whole number of trace steps ({step})")
    return length // step


def window_means(values: Sequence[float], slots: int) -> list[float]:
    """Mean over ``values[i : i+slots]`` for each i (``nan`` where any value is unknown)."""
    unknown = unknown_prefix(values)
    out: list[float] = []
    clean_sums = [0.0]
    total = 0.0
    for value in values:
        total += 0.0 if value != value else value
        clean_sums.append(total)
    for start in range(len(values) - slots + 1):
        end = start + slots
        if unknown[end] != unknown[start]:
            out.append(NAN)
        else:
            out.append((clean_sums[end] - clean_sums[start]) / slots)
    return out


def unknown_prefix(values: Sequence[float]) -> list[int]:
    """``counts[i]``: how many of ``values[:i]`` are unknown (``nan``)."""
    counts = [0]
    missing = 0
    for value in values:
        if value != value:
            missing += 1
        counts.append(missing)
    return counts


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as ``--decisions-out`` writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
