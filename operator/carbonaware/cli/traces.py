"""Traces as the simulator and the backtest take them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from carbonaware.providers.tracefile import Trace
    from carbonaware.scheduling import TraceInput


def trace_input(loaded: Trace, vintages: str | Path | None) -> TraceInput:
    """A loaded trace (and its vintages' CSV, if any) as the simulator takes it."""
    from carbonaware.providers.tracefile import load_vintages
    from carbonaware.scheduling import TraceInput

    return TraceInput(
        starts=loaded.starts,
        step=loaded.step,
        actual=loaded.actual,
        forecast=loaded.forecast,
        index=loaded.index,
        vintages=load_vintages(vintages) if vintages else None,
    )
