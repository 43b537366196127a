"""Reading grid-intensity traces from CSV files.

Used by the Trace provider, the simulator (through the CLI) and the benchmarks, so that a
trace is parsed one way everywhere. The shipped traces are described in
``docs/data.md`` (GB: Carbon Intensity API, NESO, CC BY 4.0; DE: Electricity Maps, ODbL).
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from carbonaware.api.intensity import IntensityIndex, IntensityPoint
from carbonaware.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace as parallel columns: period starts (UTC), actuals, optional forecasts.

    ``step`` is the period length (30 min for GB, 1 h for DE). Periods are sorted and
    unique; gaps (GB 2024 lacks 29 February) are kept as gaps, never filled.
    """

    name: str
    starts: tuple[datetime, ...]
    actual: tuple[float, ...]
    forecast: tuple[float, ...] | None
    index: tuple[IntensityIndex | None, ...] | None
    step: timedelta

    def __len__(self) -> int:
        return len(self.starts)

    def points(self, *, use_forecast: bool = False, source: str = "trace") -> list[IntensityPoint]:
        """The trace as :class:`IntensityPoint` values (actuals, or the forecast column)."""
        values = self.forecast if use_forecast else self.actual
        if values is None:
            raise ConfigError(f"trace {self.name} has no forecast column")
        indexes = self.index or (None,) * len(self.starts)
        return [
            IntensityPoint(
                start=start,
                end=start + self.step,
                intensity=value,
                source=source,
                is_forecast=use_forecast,
                index=idx,
            )
            for start, value, idx in zip(self.starts, values, indexes, strict=True)
        ]


def parse_time(text: str) -> datetime:
    """Parse the time formats seen in traces (``2024-01-01T00:00Z``, ``2023-01-01 00:00:00``).

    Naive times are taken as UTC, as both shipped traces document.
    """
    cleaned = text.strip().replace("Z", "+00:00")
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def load_trace(
    path: str | Path,
    *,
    time_column: str,
    actual_column: str,
    forecast_column: str | None = None,
    index_column: str | None = None,
) -> Trace:
    """Load a trace CSV. Raises :class:`ConfigError` naming the file, row and column at fault."""
    file = Path(path)
    rows: dict[datetime, tuple[float, float | None, IntensityIndex | None]] = {}
    wanted = [c for c in (time_column, actual_column, forecast_column, index_column) if c]
    with _csv_rows(file, "trace", wanted) as reader:
        for line, row in reader:
            try:
                start = parse_time(row[time_column])
                actual = float(row[actual_column])
                forecast = float(row[forecast_column]) if forecast_column else None
                raw_index = row[index_column].strip() if index_column else ""
                index = IntensityIndex.parse(raw_index) if raw_index else None
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"trace {file} line {line}: {exc}") from exc
            rows[start] = (actual, forecast, index)
    if len(rows) < 2:
        raise ConfigError(f"trace {file} has fewer than two rows")
    starts = tuple(sorted(rows))
    steps = sorted(b - a for a, b in itertools.pairwise(starts))
    step = steps[0]
    if step <= timedelta(0):
        raise ConfigError(f"trace {file} has a non-positive period")
    return Trace(
        name=file.name,
        starts=starts,
        actual=tuple(rows[s][0] for s in starts),
        forecast=tuple(rows[s][1] or 0.0 for s in starts) if forecast_column else None,
        index=tuple(rows[s][2] for s in starts) if index_column else None,
        step=step,
    )


VINTAGE_COLUMNS = ("issued_at", "slot_start", "value")


def load_vintages(path: str | Path) -> list[tuple[datetime, datetime, float]]:
    """Load forecasts as published: a CSV with one row per issue and slot, columns
    ``issued_at, slot_start, value`` (each issue's whole horizon; times as in traces).
    Raises :class:`ConfigError` naming the file, line or column at fault."""
    file = Path(path)
    rows: list[tuple[datetime, datetime, float]] = []
    with _csv_rows(file, "vintages", VINTAGE_COLUMNS) as reader:
        for line, row in reader:
            try:
                issued = parse_time(row["issued_at"])
                slot = parse_time(row["slot_start"])
                value = float(row["value"])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"vintages {file} line {line}: {exc}") from exc
            if value != value or value < 0:
                raise ConfigError(f"vintages {file} line {line}: value must be a number >= 0")
            rows.append((issued, slot, value))
    if not rows:
        raise ConfigError(f"vintages {file} have no rows")
    return rows


@contextlib.contextmanager
def _csv_rows(
    file: Path, kind: str, wanted: Sequence[str]
) -> Iterator[Iterator[tuple[int, dict[str, str]]]]:
    """The CSV's rows with their line numbers, once it has every ``wanted`` column
    (:class:`ConfigError` naming the file and what is missing otherwise)."""
    try:
        handle = file.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {kind} {file}: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{kind} {file} has no column(s) {', '.join(map(repr, missing))}; "
                f"columns are {', '.join(map(repr, reader.fieldnames or []))}"
            )
        yield enumerate(reader, start=2)


class TraceVintages:
    """Forecasts as they were issued, for the Trace provider: the value of a slot as known at
    a moment is the one of the latest issue out by then that covers the slot."""

    def __init__(self, rows: Sequence[tuple[datetime, datetime, float]]) -> None:
        issues: dict[datetime, dict[datetime, float]] = {}
        for issued, slot, value in rows:
            issues.setdefault(issued, {})[slot] = value
        self._times = sorted(issues)
        self._issues = [issues[t] for t in self._times]
        self._reach = max(max(i) - t for t, i in zip(self._times, self._issues, strict=True))

    def __len__(self) -> int:
        return len(self._times)

    def value(self, slot: datetime, known_at: datetime) -> float | None:
        """The forecast of ``slot`` as known at ``known_at`` (None if no issue out by then
        covers it)."""
        index = bisect.bisect_right(self._times, known_at) - 1
        while index >= 0 and self._times[index] + self._reach >= slot:
            found = self._issues[index].get(slot)
            if found is not None:
                return found
            index -= 1
        return None
