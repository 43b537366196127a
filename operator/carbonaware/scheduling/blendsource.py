"""The simulator's blended forecast: every source of a region, weighted by recent skill.

At each step the provider's forecast (the trace's column or its vintages, corrected as in the
``column`` mode), the profile forecaster's and seasonal-naive's are computed as their own modes
would; the actual that has just ended is scored against what each source forecast for it
(:class:`~carbonaware.scheduling.skill.SkillTracker`), and the policy sees their blend with its
risk penalty. As in the operator, the provider's forecast is trusted alone in a lead bucket
until every source has been scored there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from carbonaware.scheduling.skill import BLEND, LeadSkill, SkillSettings, SkillTracker

PROVIDER = "provider"  # the provider's forecast, trusted alone until the sources are scored
# A component: the forecast from slot ``tick`` on, and its risk penalty if it has one.
Component = Callable[[int], tuple[list[float], list[float] | None]]


class BlendedSource:
    """Blends ``components`` (by source name) over ``actual``'s grid, scoring them as it goes."""

    def __init__(
        self,
        components: Mapping[str, Component],
        actual: Sequence[float],
        *,
        step: timedelta,
        horizon_slots: int,
        day_slots: int,
        settings: SkillSettings,
    ) -> None:
        self.components = dict(components)
        self.actual = actual
        self.day_slots = day_slots
        self.tracker = SkillTracker(
            sources=tuple(self.components),
            step=step,
            horizon_slots=horizon_slots,
            settings=settings,
            prior=PROVIDER if PROVIDER in self.components else None,
        )
        self.scored_to = 0  # slots before this one were scored

    def values(self, tick: int) -> tuple[list[float], list[float]]:
        self._score(tick)
        computed = {name: component(tick) for name, component in self.components.items()}
        forecasts = {name: values for name, (values, _) in computed.items()}
        values, risk = self.tracker.blend(
            forecasts, {name: risk for name, (_, risk) in computed.items()}
        )
        if self.tracker.records_at(tick):
            self.tracker.issue(tick, {**forecasts, BLEND: values})
        return values, risk

    def _score(self, tick: int) -> None:
        # Jumps over idle stretches score only the slots the kept forecasts still cover.
        first = max(self.scored_to, tick - self.tracker.horizon_slots)
        for slot in range(first, tick):
            self.tracker.observe(slot, self.actual[slot], slot // self.day_slots)
        self.scored_to = tick

    def skill(self) -> list[LeadSkill]:
        return self.tracker.table()
