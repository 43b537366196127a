"""How good each forecast source has been lately, by lead time, and one forecast from all of them.

Every few steps each source's forecast is kept as it was issued; once the actual of a slot is
known, every kept forecast of that slot is scored at its lead (the slot's start minus the issue
time). Per source and lead bucket the tracker keeps, for each of the last ``window_days`` days,
the sum of absolute errors and their count (the MAE), and the Spearman rank correlation of each
issue's forecast with the actuals over the bucket's slots (how well it ordered clean and dirty
hours, which is what a scheduler acts on).

:meth:`SkillTracker.blend` combines the sources slot by slot with weights from recent skill,
by lead: in each bucket, the non-negative weights summing to 1 whose combination had the least
squared error over the recent days (the minimum-variance combination of Bates and Granger,
1969, computed from the sources' joint errors, so two sources that err together are not
counted twice; the simplex searched in steps of ``weight_step``); while the sources are not all
scored, equal weights or the ``prior`` source alone. Seasonal-naive is scored but left out of
the blend unless ``blend_naive``: on DE 2023 it lowered the blend's squared error and its
captured share (79.7 % against 81.0 % for the own forecaster alone). A poor source gets weight
0, so on the recent days the blend is never worse than the best source alone. The blend is
scored as a source of its own. The risk penalty the policy adds when ranking windows (a far
window must beat a near one by more than the error usually made that far ahead) is the
weighted risk of the sources: a source's own (the corrected provider forecast's, from its
recent residuals) or its recent MAE at the slot's lead times ``risk_weight``; scaled
(``diversified_risk``) by the blend's recent MAE over its sources' weighted MAE, at most 1. A
mix of sources that err apart errs less than they do, and without the scale the blend paid a
penalty for errors it did not make: against a good provider it then captured a little less
than the provider alone (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from carbonaware.scheduling.rankcorr import spearman
from carbonaware.scheduling.series import NAN

BLEND = "blend"
NAIVE = "naive"

# Lead buckets (hours from the issue to the slot's start): [0, 3), [3, 6), [6, 12), [12, 24),
# [24, 48) and beyond.
LEAD_EDGES_HOURS: tuple[float, ...] = (0.0, 3.0, 6.0, 12.0, 24.0, 48.0)


def bucket_label(bucket: int) -> str:
    """``"0-3h"`` ... ``"48h+"``, as the metric's ``lead`` label."""
    low = LEAD_EDGES_HOURS[bucket]
    if bucket + 1 < len(LEAD_EDGES_HOURS):
        return f"{low:g}-{LEAD_EDGES_HOURS[bucket + 1]:g}h"
    return f"{low:g}h+"


@dataclass(frozen=True, slots=True)
class SkillSettings:
    """Tuning of skill tracking and blending (chosen on DE 2023 and the first half of GB
    2024; ``docs/benchmarks.md`` reports on the second half)."""

    window_days: int = 14
    record_every_hours: float = 2.0
    min_samples: int = 24
    weight_step: float = 0.1
    risk_weight: float = 0.3
    blend_naive: bool = False
    diversified_risk: bool = True

    def __post_init__(self) -> None:
        if self.window_days < 1:
            raise ValueError("window_days must be at least 1")
        if self.record_every_hours <= 0:
            raise ValueError("record_every_hours must be positive")
        if not 0 < self.weight_step <= 1 or self.risk_weight < 0 or self.min_samples < 1:
            raise ValueError("weight_step must be in (0, 1], risk_weight >= 0, min_samples >= 1")


DEFAULT_SKILL = SkillSettings()


@dataclass(slots=True)
class _Day:
    """One day's scores, per bucket: each source's sum of |error|, count, sum of rank
    correlations and their count, and each pair of sources' sum of error products (the
    squared errors on the diagonal) with the count of slots both forecast."""

    abs_sum: list[dict[str, float]]
    count: list[dict[str, int]]
    rank_sum: list[dict[str, float]]
    rank_count: list[dict[str, int]]
    cross: list[dict[tuple[str, str], float]]
    cross_count: list[dict[tuple[str, str], int]]

    @classmethod
    def empty(cls, buckets: int) -> _Day:
        return cls(
            abs_sum=[{} for _ in range(buckets)],
            count=[{} for _ in range(buckets)],
            rank_sum=[{} for _ in range(buckets)],
            rank_count=[{} for _ in range(buckets)],
            cross=[{} for _ in range(buckets)],
            cross_count=[{} for _ in range(buckets)],
        )


@dataclass(frozen=True, slots=True)
class LeadSkill:
    """One source's recent skill in one lead bucket (``nan`` when not scored yet)."""

    source: str
    bucket: str
    mae: float
    rank_correlation: float
    samples: int


@dataclass(slots=True)
class SkillTracker:
    """Recent skill per source and lead bucket on a grid of ``step`` (module docstring)."""

    sources: tuple[str, ...]
    step: timedelta
    horizon_slots: int
    settings: SkillSettings = DEFAULT_SKILL
    prior: str | None = None
    """The source trusted alone in a bucket until every source is scored (None: equal
    weights), for a caller that trusted one source before it blended."""
    _issued: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    _days: deque[_Day] = field(default_factory=deque)
    _day: int | None = None
    _slot_bucket: list[int] = field(default_factory=list)
    _actual: dict[int, float] = field(default_factory=dict)
    _cached: dict[Any, Any] = field(default_factory=dict)
    _bucket_first: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hours = self.step / timedelta(hours=1)
        edges = LEAD_EDGES_HOURS
        self._slot_bucket = [
            max(i for i, edge in enumerate(edges) if k * hours >= edge)
            for k in range(self.horizon_slots)
        ]
        self._days = deque(maxlen=self.settings.window_days)
        for lead, bucket in enumerate(self._slot_bucket):
            self._bucket_first.setdefault(bucket, lead)

    @property
    def blended(self) -> tuple[str, ...]:
        """The sources the blend combines: all but seasonal-naive unless ``blend_naive``."""
        if self.settings.blend_naive:
            return self.sources
        return tuple(name for name in self.sources if name != NAIVE) or self.sources

    @property
    def buckets(self) -> int:
        return len(LEAD_EDGES_HOURS)

    def bucket_of(self, lead: int) -> int:
        return self._slot_bucket[min(lead, self.horizon_slots - 1)]

    def records_at(self, tick: int) -> bool:
        every = max(1, round(timedelta(hours=self.settings.record_every_hours) / self.step))
        return tick % every == 0

    def issue(self, tick: int, forecasts: Mapping[str, Sequence[float]]) -> None:
        """Keep the forecasts issued at ``tick`` (slot ``tick + k`` at lead ``k``), to be
        scored as the actuals come in."""
        self._issued[tick] = {name: list(values) for name, values in forecasts.items()}

    def observe(self, slot: int, actual: float, day: int) -> None:
        """The actual of ``slot`` is known (on ``day``, a day count): score every kept
        forecast of it, and the rank correlation of each issue whose bucket it completes."""
        if actual != actual:
            return
        self._actual[slot] = actual
        if day != self._day:
            self._day = day
            self._days.append(_Day.empty(self.buckets))
            self._cached.clear()  # weights and risk are recomputed once a day
        today = self._days[-1]
        for tick in [t for t in self._issued if t <= slot - self.horizon_slots]:
            del self._issued[tick]
        for key in [s for s in self._actual if s <= slot - self.horizon_slots]:
            del self._actual[key]
        for tick, forecasts in self._issued.items():
            lead = slot - tick
            if lead < 0:
                continue
            bucket = self._slot_bucket[lead]
            ends_bucket = lead + 1 == self.horizon_slots or self._slot_bucket[lead + 1] != bucket
            first = self._bucket_first[bucket]
            errors: dict[str, float] = {}
            for name, values in forecasts.items():
                if lead < len(values) and values[lead] == values[lead]:
                    errors[name] = values[lead] - actual
                if ends_bucket:
                    rho = self._rank_correlation(values, tick, first, lead)
                    if rho == rho:
                        _add(today.rank_sum[bucket], name, rho)
                        _add(today.rank_count[bucket], name, 1)
            for name, error in errors.items():
                _add(today.abs_sum[bucket], name, abs(error))
                _add(today.count[bucket], name, 1)
                for other, other_error in errors.items():
                    _add(today.cross[bucket], (name, other), error * other_error)
                    _add(today.cross_count[bucket], (name, other), 1)

    def _rank_correlation(self, values: Sequence[float], tick: int, first: int, last: int) -> float:
        pairs = [
            (values[k], self._actual[tick + k])
            for k in range(first, min(last + 1, len(values)))
            if values[k] == values[k] and tick + k in self._actual
        ]
        return spearman(pairs)

    def skill(self, source: str, bucket: int) -> LeadSkill:
        days = self._days
        total = math.fsum(day.abs_sum[bucket].get(source, 0.0) for day in days)
        count = sum(day.count[bucket].get(source, 0) for day in days)
        ranks = math.fsum(day.rank_sum[bucket].get(source, 0.0) for day in days)
        rank_count = sum(day.rank_count[bucket].get(source, 0) for day in days)
        enough = count >= self.settings.min_samples
        return LeadSkill(
            source=source,
            bucket=bucket_label(bucket),
            mae=total / count if enough else NAN,
            rank_correlation=ranks / rank_count if rank_count and enough else NAN,
            samples=count,
        )

    def table(self) -> list[LeadSkill]:
        """Every source's (the blend's last) skill in every bucket."""
        return [
            self.skill(source, bucket)
            for source in (*self.sources, BLEND)
            for bucket in range(self.buckets)
        ]

    def weights(self, names: Sequence[str]) -> list[dict[str, float]]:
        """Per bucket, the weight of each of ``names`` (summing to 1; module docstring),
        from the days scored so far (recomputed when a new day starts)."""
        key = ("weights", *names)
        if key not in self._cached:
            self._cached[key] = self._weights(names)
        weights: list[dict[str, float]] = self._cached[key]
        return weights

    def risk(self, source: str) -> list[float]:
        """Per bucket, the source's recent MAE times ``risk_weight`` (0 until scored)."""
        key = ("risk", source)
        if key not in self._cached:
            maes = [self.skill(source, b).mae for b in range(self.buckets)]
            self._cached[key] = [
                self.settings.risk_weight * mae if mae == mae else 0.0 for mae in maes
            ]
        risk: list[float] = self._cached[key]
        return risk

    def _weights(self, names: Sequence[str]) -> list[dict[str, float]]:
        candidates = _simplex(len(names), self.settings.weight_step)
        out: list[dict[str, float]] = []
        for bucket in range(self.buckets):
            moments = self._mean_products(names, bucket)
            if moments is None:
                if self.prior in names:
                    out.append({name: float(name == self.prior) for name in names})
                else:
                    out.append({name: 1.0 / len(names) for name in names})
                continue
            best = min(candidates, key=lambda w: _quadratic(w, moments))
            out.append(dict(zip(names, best, strict=True)))
        return out

    def _mean_products(self, names: Sequence[str], bucket: int) -> list[list[float]] | None:
        """The mean product of the errors of each pair of ``names`` over the recent days
        (None until every pair has ``min_samples``)."""
        matrix: list[list[float]] = []
        for a in names:
            row: list[float] = []
            for b in names:
                total = math.fsum(day.cross[bucket].get((a, b), 0.0) for day in self._days)
                count = sum(day.cross_count[bucket].get((a, b), 0) for day in self._days)
                if count < self.settings.min_samples:
                    return None
                row.append(total / count)
            matrix.append(row)
        return matrix

    def blend(
        self,
        forecasts: Mapping[str, Sequence[float]],
        risks: Mapping[str, Sequence[float] | None] | None = None,
    ) -> tuple[list[float], list[float]]:
        """The weighted forecast per slot (lead ``k`` = slot ``k`` from now) and its risk
        penalty, the weighted risk of the sources: a source's own (``risks``, as the
        corrected provider forecast has) or its recent MAE times ``risk_weight``, scaled by
        :meth:`diversification` when ``diversified_risk``. A source without a value for a
        slot is left out of that slot."""
        names = [name for name in forecasts if name in self.blended]
        weights = self.weights(names)
        shrink = self.diversification(names) if self.settings.diversified_risk else None
        count = max((len(v) for v in forecasts.values()), default=0)
        own_risk = risks or {}
        values: list[float] = []
        risk: list[float] = []
        for k in range(count):
            bucket = self.bucket_of(k)
            total = 0.0
            risk_total = 0.0
            weight_sum = 0.0
            for name in names:
                series = forecasts[name]
                value = series[k] if k < len(series) else NAN
                weight = weights[bucket][name]
                if value == value and weight > 0:
                    total += weight * value
                    weight_sum += weight
                    given = own_risk.get(name)
                    if given is not None and k < len(given):
                        risk_total += weight * given[k]
                    else:
                        risk_total += weight * self.risk(name)[bucket]
            if weight_sum == 0:  # the trusted sources are silent here: any that speaks
                known = [s[k] for s in forecasts.values() if k < len(s) and s[k] == s[k]]
                values.append(math.fsum(known) / len(known) if known else NAN)
                risk.append(self.risk(BLEND)[bucket])
            else:
                values.append(total / weight_sum)
                risk.append(risk_total / weight_sum * (shrink[bucket] if shrink else 1.0))
        return values, risk

    def diversification(self, names: Sequence[str]) -> list[float]:
        """Per bucket, the blend's recent MAE over the weighted MAE of its sources, at most
        1 (1 until all are scored): a mix errs less than its sources do on average, so its
        risk is the sources' weighted risk scaled by that."""
        key = ("diversification", *names)
        if key not in self._cached:
            weights = self.weights(names)
            out: list[float] = []
            for bucket in range(self.buckets):
                blend_mae = self.skill(BLEND, bucket).mae
                mean = math.fsum(
                    weights[bucket][name] * self.skill(name, bucket).mae for name in names
                )
                ratio = blend_mae / mean if blend_mae == blend_mae and mean > 0 else 1.0
                out.append(min(ratio, 1.0) if ratio == ratio else 1.0)
            self._cached[key] = out
        shrink: list[float] = self._cached[key]
        return shrink


def _add(table: dict[Any, Any], key: Any, value: float) -> None:
    table[key] = table.get(key, 0) + value


def _simplex(size: int, step: float) -> list[tuple[float, ...]]:
    """Every vector of ``size`` non-negative multiples of ``step`` summing to 1."""
    units = round(1 / step)

    def parts(left: int, count: int) -> list[tuple[int, ...]]:
        if count == 1:
            return [(left,)]
        return [
            (first, *rest) for first in range(left + 1) for rest in parts(left - first, count - 1)
        ]

    return [tuple(p / units for p in combo) for combo in parts(units, size)]


def _quadratic(weights: Sequence[float], matrix: Sequence[Sequence[float]]) -> float:
    """``w^T M w``: the mean squared error of the combination with weights ``w``."""
    return math.fsum(
        wa * wb * matrix[i][j]
        for i, wa in enumerate(weights)
        if wa
        for j, wb in enumerate(weights)
        if wb
    )
