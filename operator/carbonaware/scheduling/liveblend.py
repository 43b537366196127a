"""The operator's forecast for one region: the provider's, our own and seasonal-naive, blended.

The simulator's blend (:mod:`~carbonaware.scheduling.blendsource`) on the operator's clock. Slots
are the provider view's grid counted from the Unix epoch, so a slot keeps its number from tick
to tick and across a change of day. Each tick the sources forecast from the slot containing
now: the provider's (corrected) view, the profile forecaster and seasonal-naive from the
actuals held; every ``record_every_hours`` their forecasts are kept, and each slot's actual is
scored against them once the provider reports it (late actuals are waited for up to
``LATE_ACTUAL``). The policy reads the blend with its risk penalty.

At the first tick the own forecasters are scored on the actuals already held (the last
``window_days`` of history), so their skill is known at once; the provider's past forecasts are
not served by the APIs, so it is scored from then on. Until every source has been scored in a
lead bucket (about two days after a start: nothing is kept across restarts) the blend trusts the
provider alone there, as the operator did before it blended. Nothing here does I/O;
:mod:`carbonaware.handlers.intensity` feeds it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.blendsource import PROVIDER
from carbonaware.scheduling.forecaster import (
    DEFAULT_PROFILE,
    ProfileSettings,
    profile_values,
    seasonal_naive_values,
)
from carbonaware.scheduling.series import NAN, slots_per_day
from carbonaware.scheduling.skill import (
    BLEND,
    DEFAULT_SKILL,
    LEAD_EDGES_HOURS,
    NAIVE,
    LeadSkill,
    SkillSettings,
    SkillTracker,
)
from carbonaware.scheduling.view import ForecastView

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OWN = "own"
SOURCES = (PROVIDER, OWN, NAIVE)
# A slot whose actual has not come this long after it ended is skipped, not waited for.
LATE_ACTUAL = timedelta(hours=3)


class LiveBlend:
    """One region's sources blended by recent skill on a grid of ``step`` (module docstring)."""

    def __init__(
        self,
        step: timedelta,
        horizon: timedelta,
        *,
        skill: SkillSettings = DEFAULT_SKILL,
        profile: ProfileSettings = DEFAULT_PROFILE,
    ) -> None:
        day_slots = slots_per_day(step)
        if day_slots is None:
            raise ValueError(f"a blend needs a step that divides a day, not {step}")
        self.step = step
        self.day_slots = day_slots
        self.profile = profile
        self.horizon_slots = math.ceil(horizon / step)
        self.tracker = SkillTracker(
            sources=SOURCES,
            step=step,
            horizon_slots=self.horizon_slots,
            settings=skill,
            prior=PROVIDER,
        )
        self.keep_slots = (profile.history_days + 1) * day_slots
        self.record_every = max(1, round(timedelta(hours=skill.record_every_hours) / step))
        self.actual: dict[int, float] = {}
        self.scored_to: int | None = None  # slots before this one were scored or skipped
        self.issued_at: int | None = None

    def slot_of(self, moment: datetime) -> int:
        return (moment - EPOCH) // self.step

    def record_actuals(self, points: Iterable[IntensityPoint], now: datetime) -> None:
        """Measured values of periods that ended by ``now``, laid on the grid (a period
        longer than a slot fills each slot it covers; shorter ones are averaged)."""
        sums: dict[int, list[float]] = {}
        for point in points:
            if point.is_forecast or point.end > now or point.end <= point.start:
                continue
            value = point.intensity
            if not (math.isfinite(value) and value >= 0):
                continue
            first, last = self.slot_of(point.start), self.slot_of(point.end - timedelta.resolution)
            for slot in range(first, last + 1):
                weight = point.duration / self.step if first == last else 1.0
                total = sums.setdefault(slot, [0.0, 0.0])
                total[0] += value * weight
                total[1] += weight
        for slot, (weighted, weights) in sums.items():
            self.actual[slot] = weighted / weights
        horizon = self.slot_of(now) - self.keep_slots
        for slot in [s for s in self.actual if s < horizon]:
            del self.actual[slot]

    def view(self, provider: ForecastView, now: datetime) -> ForecastView:
        """The blend of the sources from the slot containing ``now``, on ``provider``'s grid
        (``provider`` itself when its grid is not this blend's)."""
        tick = self.slot_of(now)
        if provider.step != self.step or provider.origin != EPOCH + tick * self.step:
            return provider
        if self.scored_to is None:
            self._backfill(tick)
        self._score(tick)
        forecasts = {PROVIDER: list(provider.values), **self._own(tick, len(provider.values))}
        values, risk = self.tracker.blend(forecasts, {PROVIDER: provider.risk})
        if self.issued_at is None or tick - self.issued_at >= self.record_every:
            self.tracker.issue(tick, {**forecasts, BLEND: values})
            self.issued_at = tick
        return ForecastView(
            now=now,
            origin=provider.origin,
            step=self.step,
            values=values,
            risk=risk,
            indexes=provider.indexes,
            source=f"blend trusting {self.trusted()}",
        )

    def _own(self, tick: int, count: int) -> dict[str, list[float]]:
        """The own forecasters' forecasts of ``count`` slots from ``tick``, from the actuals
        of the slots before it."""
        known = [self.actual.get(slot, NAN) for slot in range(tick - self.keep_slots, tick)]
        return {
            OWN: profile_values(
                known,
                len(known),
                count,
                day_slots=self.day_slots,
                step=self.step,
                settings=self.profile,
            ),
            NAIVE: seasonal_naive_values(known, len(known), count, self.day_slots),
        }

    def _backfill(self, tick: int) -> None:
        """Score the own forecasters on the actuals already held, as if they had run over the
        last ``window_days`` (from a day after the first actual), so their skill is known from
        the start. The provider's forecasts of those days are gone (the APIs serve actuals for
        past periods): it is scored from now on, and trusted alone until then."""
        if not self.actual:
            return
        days = self.tracker.settings.window_days
        first = max(tick - days * self.day_slots, min(self.actual) + self.day_slots)
        for slot in range(first, tick):
            if (slot - first) % self.record_every == 0:
                self.tracker.issue(slot, self._own(slot, self.horizon_slots))
            value = self.actual.get(slot)
            if value is not None:
                self.tracker.observe(slot, value, slot // self.day_slots)
        self.scored_to = tick

    def _score(self, tick: int) -> None:
        """Score every slot before ``tick`` whose actual is known, in order; wait for a late
        one up to ``LATE_ACTUAL``."""
        slot = tick if self.scored_to is None else self.scored_to
        late = LATE_ACTUAL // self.step
        while slot < tick:
            value = self.actual.get(slot)
            if value is not None:
                self.tracker.observe(slot, value, slot // self.day_slots)
            elif tick - slot <= late:
                break
            slot += 1
        self.scored_to = slot

    def weights(self) -> list[dict[str, float]]:
        """Per lead bucket, the weight of each blended source."""
        return self.tracker.weights(self.tracker.blended)

    def trusted(self) -> str:
        """Which sources the blend trusts at which leads (:func:`describe_trust`)."""
        return describe_trust(self.tracker)

    def skill(self) -> list[LeadSkill]:
        """Every source's recent skill by lead bucket (``nan`` where not scored yet)."""
        return self.tracker.table()


def describe_trust(tracker: SkillTracker) -> str:
    """Which sources a tracker's blend trusts at which leads, e.g. ``0-12h provider; 12-48h
    provider 60 %, own 40 %`` (adjacent lead buckets with the same weights merged)."""
    used = sorted({tracker.bucket_of(k) for k in range(tracker.horizon_slots)})
    weights = tracker.weights(tracker.blended)
    parts: list[tuple[int, int, str]] = []
    for bucket in used:
        shares = sorted(
            ((w, name) for name, w in weights[bucket].items() if w >= 0.05), reverse=True
        )
        if len(shares) == 1:
            text = shares[0][1]
        else:
            text = ", ".join(f"{name} {round(w * 100)} %" for w, name in shares)
        if parts and parts[-1][2] == text:
            parts[-1] = (parts[-1][0], bucket, text)
        else:
            parts.append((bucket, bucket, text))
    return "; ".join(f"{_span(first, last)} {text}" for first, last, text in parts)


def _span(first: int, last: int) -> str:
    """``"0-12h"`` for buckets ``first..last``, ``"24h+"`` when ``last`` is open-ended."""
    edges = LEAD_EDGES_HOURS
    if last + 1 < len(edges):
        return f"{edges[first]:g}-{edges[last + 1]:g}h"
    return f"{edges[first]:g}h+"


def describe_skill(table: Iterable[LeadSkill]) -> str:
    """``leads 0-3h/3-6h: provider 8/12, own 15/16`` from a skill table (``-`` not scored)."""
    rows = list(table)
    buckets = list(dict.fromkeys(row.bucket for row in rows if row.mae == row.mae))
    if not buckets:
        return "not scored yet"
    maes = {(row.source, row.bucket): row.mae for row in rows}
    sources = list(dict.fromkeys(row.source for row in rows))
    parts = []
    for source in sources:
        figures = [maes.get((source, bucket), NAN) for bucket in buckets]
        parts.append(source + " " + "/".join(f"{v:.0f}" if v == v else "-" for v in figures))
    return f"leads {'/'.join(buckets)}: " + ", ".join(parts)
