"""Embodied emissions: the share of a machine's manufacturing emissions a piece of software uses."""

from __future__ import annotations

from carbonaware.sci.coefficients import HOURS_PER_YEAR


def lifespan_hours(years: float) -> float:
    """Expected lifespan EL in hours (CCF counts 8760 h a year: 4 years = 35,040 h)."""
    return years * HOURS_PER_YEAR


def embodied_grams(
    total_embodied_kg: float,
    time_reserved_hours: float,
    expected_lifespan_hours: float,
    resources_reserved: float,
    total_resources: float,
) -> float:
    """M in gCO2e: ``TE`` kg, reserved ``TR`` of ``EL`` hours and ``RR`` of ``TR`` resources.

    ``total_resources`` and ``expected_lifespan_hours`` must be positive.
    """
    if expected_lifespan_hours <= 0 or total_resources <= 0:
        raise ValueError("expected lifespan and total resources must be positive")
    # GSF SCI specification: M = TE x (TR/EL) x (RR/TR).
    return (
        total_embodied_kg
        * 1000.0
        * (time_reserved_hours / expected_lifespan_hours)
        * (resources_reserved / total_resources)
    )
