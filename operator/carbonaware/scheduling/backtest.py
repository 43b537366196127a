"""What the blend would have done lately: each source's skill by lead and the jobs' outcome.

``carbonaware forecast --backtest`` replays the last ``days`` of a trace up to ``until``
(with the history the forecasters need before them): the blend's sources are scored as the
operator scores them (:mod:`~carbonaware.scheduling.skill`) and 1 h jobs in 24 h windows
arriving hourly are planned on the provider's forecast alone, on the own forecaster alone and
on the blend. Captured share is ``(immediate - policy) / (immediate - oracle)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from carbonaware.scheduling.blendsource import PROVIDER
from carbonaware.scheduling.liveblend import describe_trust
from carbonaware.scheduling.replay import (
    ForecastMode,
    ForecastSource,
    SimulationSettings,
    provider_mode,
)
from carbonaware.scheduling.series import slots_per_day
from carbonaware.scheduling.simulate import simulate
from carbonaware.scheduling.skill import LeadSkill
from carbonaware.scheduling.tracegrid import TraceGrid, TraceInput

# Vintages issued this long before the replayed stretch still reach into it.
VINTAGE_REACH = timedelta(days=3)


@dataclass(frozen=True, slots=True)
class Outcome:
    """Jobs planned on one forecast: the captured share of the oracle's saving and misses."""

    forecast: str
    jobs: int
    captured_share: float
    deadline_misses: int


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """``start``: the first arrival; ``until``: the end of the last window."""

    start: datetime
    until: datetime
    days: int
    skill: tuple[LeadSkill, ...]
    trusted: str
    outcomes: tuple[Outcome, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "until": self.until.isoformat(),
            "days": self.days,
            "trusted": self.trusted,
            "skill": [
                {
                    "source": row.source,
                    "lead": row.bucket,
                    "mae": _finite(row.mae),
                    "rank_correlation": _finite(row.rank_correlation),
                    "samples": row.samples,
                }
                for row in self.skill
            ],
            "outcomes": [dataclasses.asdict(outcome) for outcome in self.outcomes],
        }


def _finite(value: float) -> float | None:
    return value if value == value else None


def backtest(
    trace: TraceInput,
    until: datetime,
    *,
    days: int = 14,
    settings: SimulationSettings | None = None,
) -> BacktestResult:
    """The last ``days`` of ``trace`` before ``until`` (module docstring). Raises ValueError
    when the trace does not hold them or its step does not divide a day."""
    if days < 1:
        raise ValueError("the backtest needs at least one day")
    base = settings or SimulationSettings(arrival_every=timedelta(hours=1))
    if slots_per_day(trace.step) is None:
        raise ValueError(f"the trace's step {trace.step} does not divide a day")
    history = timedelta(days=max(base.profile.history_days, base.correction.fit_days) + 1)
    first_arrival = until - timedelta(days=days) - base.window
    sliced = _slice(trace, first_arrival - history, until)
    if not sliced.starts or sliced.starts[0] > first_arrival - timedelta(days=1):
        raise ValueError(
            f"the trace holds no data from {first_arrival - timedelta(days=1):%Y-%m-%d} "
            f"to {until:%Y-%m-%d %H:%M}: choose --until within it"
        )
    warmup = first_arrival - sliced.starts[0]
    skill_settings = dataclasses.replace(base.skill, window_days=days)
    common = dataclasses.replace(base, warmup=warmup, skill=skill_settings)
    grid = TraceGrid.make(sliced)
    provider = provider_mode(grid)
    modes = [m for m in (provider, ForecastMode.OWN, ForecastMode.BLEND) if m is not None]
    outcomes = []
    for mode in modes:
        result = simulate(sliced, dataclasses.replace(common, forecast=mode))
        name = PROVIDER if mode is provider else mode.value
        outcomes.append(Outcome(name, result.jobs, result.captured_share, result.deadline_misses))
    day_slots = slots_per_day(grid.step)
    horizon_slots = max(1, -(-common.horizon // grid.step))
    source = ForecastSource(grid, common, ForecastMode.BLEND, horizon_slots, day_slots)
    for tick in range(len(grid.actual)):
        source.view(tick, grid.time_of(tick))
    assert source.blended is not None
    tracker = source.blended.tracker
    return BacktestResult(
        start=first_arrival,
        until=until,
        days=days,
        skill=tuple(source.blended.skill()),
        trusted=describe_trust(tracker),
        outcomes=tuple(outcomes),
    )


def _slice(trace: TraceInput, start: datetime, end: datetime) -> TraceInput:
    """The rows of ``trace`` in ``[start, end)``, with the vintages that reach them."""
    keep = [i for i, moment in enumerate(trace.starts) if start <= moment < end]
    vintages = trace.vintages
    if vintages is not None and not isinstance(vintages, list | tuple):
        raise ValueError("a backtest takes vintages as rows, not laid on a grid")
    rows = None
    if vintages is not None:  # none reaching the stretch: the column is the provider's
        rows = [row for row in vintages if start - VINTAGE_REACH <= row[0] < end and row[1] < end]
        rows = rows or None
    return TraceInput(
        starts=[trace.starts[i] for i in keep],
        step=trace.step,
        actual=[trace.actual[i] for i in keep],
        forecast=[trace.forecast[i] for i in keep] if trace.forecast is not None else None,
        index=[trace.index[i] for i in keep] if trace.index is not None else None,
        vintages=rows,
    )
