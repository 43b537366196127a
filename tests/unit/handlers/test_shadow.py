"""What a Shadow policy records: its plan at creation, and the run's figures at the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carbonaware.api import labels
from carbonaware.api.conditions import Reason
from carbonaware.handlers.measure import RunMeasurement
from carbonaware.handlers.shadow import outcome_annotations, plan_annotations
from carbonaware.scheduling.policy import Decision
from carbonaware.sci.estimate import SciEstimate

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def estimate(avoided: float | None) -> SciEstimate:
    # 0.1 kWh at 300 g/kWh plus 2 g embodied; as planned (40 g/kWh) it would be 4 + 2 g.
    return SciEstimate(
        energy_kwh=0.1, operational_grams=30.0, embodied_grams=2.0, total_grams=32.0,
        per_unit_grams=32.0, functional_unit="1 run", avoided_grams=avoided, method="m",
        cpu_core_seconds=100.0, intensity_g_per_kwh=300.0,
    )  # fmt: skip


def test_the_plan_says_when_and_at_what_intensity() -> None:
    decision = Decision(
        release=False,
        reason=Reason.WAITING_FOR_LOWER_INTENSITY,
        planned_start=NOW + timedelta(hours=2),
        planned_window_mean=40.0,
        latest_start=NOW + timedelta(hours=6),
        expected_duration=timedelta(hours=1),
        mean_now=300.0,
    )
    assert plan_annotations(decision) == {
        labels.SHADOW_PLANNED_START: "2026-12-07T11:00:00Z",
        labels.SHADOW_REASON: "WaitingForLowerIntensity",
        labels.SHADOW_INTENSITY_NOW: "300",
        labels.SHADOW_INTENSITY_PLANNED: "40",
    }


def test_the_run_avoided_nothing_and_would_have_emitted_the_planned_figure() -> None:
    # avoided is against the planned start: 6 g there - 32 g emitted = -26 g.
    found, ran = outcome_annotations(RunMeasurement(estimate(-26.0), 300.0, "metrics"))
    assert ran.estimate.avoided_grams == 0.0
    assert float(found[labels.AVOIDED_GRAMS]) == 0.0
    assert float(found[labels.SCI_GRAMS]) == 32.0
    assert float(found[labels.SHADOW_WOULD_HAVE_GRAMS]) == pytest.approx(6.0)
    assert float(found[labels.SHADOW_WOULD_HAVE_SAVED_GRAMS]) == pytest.approx(26.0)


def test_without_an_intensity_for_the_planned_window_no_would_have_figure() -> None:
    found, _ = outcome_annotations(RunMeasurement(estimate(None), 300.0, "metrics"))
    assert labels.SCI_GRAMS in found
    assert labels.SHADOW_WOULD_HAVE_GRAMS not in found
    assert labels.SHADOW_WOULD_HAVE_SAVED_GRAMS not in found
