"""Pure scheduling: (job, forecast, now) -> decision, where as well as when across regions,
interruptible work (run or pause at every tick), release ordering, own forecasts, and the
what-if simulator that runs the same code over a year of real data.

No I/O and no clock: ``now`` is always a parameter (see docs/scheduling.md).
"""

from __future__ import annotations

from carbonaware.scheduling.correction import (
    CorrectedForecast,
    CorrectionSettings,
    ForecastCorrection,
    corrected_view,
)
from carbonaware.scheduling.forecaster import (
    ForecastMethod,
    ProfileSettings,
    daily_profile,
    forecast_from_history,
    profile_values,
    seasonal_naive_values,
)
from carbonaware.scheduling.interruptible import (
    InterruptibleDecision,
    InterruptibleJob,
    RunReason,
    RunState,
    Segment,
    decide_interruptible,
    decide_interruptible_jobs,
)
from carbonaware.scheduling.interruptsim import (
    InterruptibleResult,
    InterruptibleSettings,
    simulate_interruptible,
)
from carbonaware.scheduling.ordering import (
    Deferred,
    ReleaseCandidate,
    ReleasePlan,
    order_releases,
    plan_releases,
    release_order_key,
)
from carbonaware.scheduling.placement import (
    Place,
    PlaceEstimate,
    RegionDecision,
    RegionPlan,
    best_region_window,
    decide_region,
    rank_places,
)
from carbonaware.scheduling.policy import Decision, JobRequest, decide
from carbonaware.scheduling.regions import (
    RegionJobOutcome,
    RegionsResult,
    RegionTrace,
    simulate_regions,
)
from carbonaware.scheduling.series import SlotSeries
from carbonaware.scheduling.simulate import (
    ForecastMode,
    JobOutcome,
    SimulationResult,
    SimulationSettings,
    TraceInput,
    simulate,
)
from carbonaware.scheduling.tracegrid import align_traces
from carbonaware.scheduling.view import ForecastView, PlannedWindow, WindowTable

__all__ = [
    "CorrectedForecast",
    "CorrectionSettings",
    "Decision",
    "Deferred",
    "ForecastCorrection",
    "ForecastMethod",
    "ForecastMode",
    "ForecastView",
    "InterruptibleDecision",
    "InterruptibleJob",
    "InterruptibleResult",
    "InterruptibleSettings",
    "JobOutcome",
    "JobRequest",
    "Place",
    "PlaceEstimate",
    "PlannedWindow",
    "ProfileSettings",
    "RegionDecision",
    "RegionJobOutcome",
    "RegionPlan",
    "RegionTrace",
    "RegionsResult",
    "ReleaseCandidate",
    "ReleasePlan",
    "RunReason",
    "RunState",
    "Segment",
    "SimulationResult",
    "SimulationSettings",
    "SlotSeries",
    "TraceInput",
    "WindowTable",
    "align_traces",
    "best_region_window",
    "corrected_view",
    "daily_profile",
    "decide",
    "decide_interruptible",
    "decide_interruptible_jobs",
    "decide_region",
    "forecast_from_history",
    "order_releases",
    "plan_releases",
    "profile_values",
    "rank_places",
    "release_order_key",
    "seasonal_naive_values",
    "simulate",
    "simulate_interruptible",
    "simulate_regions",
]
