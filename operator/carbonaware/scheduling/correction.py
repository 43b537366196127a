"""Correct a provider's forecast with its own recent errors, and say how far to trust it.

The model is fitted on the last ``fit_days`` days of (published forecast, actual) pairs, only
from slots that have ended, and applied to the forecast as it stands now:

0. Timing: each slot's forecast is replaced by a linear map of it and its neighbours up to
   ``align_hours`` either side (:mod:`~carbonaware.scheduling.alignment`), fitted to the
   actuals; it mends a forecast that is systematically early or late (GB's ran about an hour
   late in 2024). Every later stage works on the aligned forecast.
1. Time-of-day bias: the mean error (actual - forecast) at each slot of the day is added to
   every forecast slot. The GB national forecast, for instance, ran about 13 g low around
   05:30 UTC and 14 g high around 22:30 UTC in 2024 (measured by ``bench/scheduling.py``).
2. Short-lead correction (model output statistics, Glahn & Lowry 1972): for each of the next
   ``near_slots`` slots a ridge regression predicts the remaining error from what is known
   now: the last slot's error, the error at the same slot a day earlier, the last change
   of the actual and the forecast's change from the last ended slot. Forecast errors
   persist (lag-1 autocorrelation about 0.77 in GB 2024), so the near future is known far
   better than the forecast alone says.
3. Uncertainty: each slot gets the residual standard deviation of its lead (the regression's
   for near slots, the bias-corrected error's beyond). The policy adds ``risk_weight`` times
   it to a window's score, so a far-off window must be clearly better than a near one, whose
   value is much surer, before the job waits for it. With a perfect forecast every error is
   zero and the correction changes nothing.

All functions are pure; the operator refits once a day (cheap: a few milliseconds) and
applies the model at every tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import mul, sub

from carbonaware.api.intensity import IntensityPoint
from carbonaware.scheduling.alignment import aligned, fit_alignment, means_by_position
from carbonaware.scheduling.leastsquares import known_rows, ridge, rms
from carbonaware.scheduling.series import NAN, SlotSeries, slot_of_day, slots_per_day
from carbonaware.scheduling.view import ForecastView

FEATURES = 4  # last error, error a day earlier, last change of actual, forecast change


@dataclass(frozen=True, slots=True)
class CorrectionSettings:
    """Tuning of the forecast correction. The defaults are the best of 36 settings on the
    first half of GB 2024 (``bench/forecasts.py``, which reports the second half on its
    own); ``bench/scheduling.py`` reports how the result moves around them."""

    fit_days: int = 28
    near_slots: int = 12
    ridge: float = 1.0
    risk_weight: float = 0.3
    align_hours: float = 2.0

    def __post_init__(self) -> None:
        if self.fit_days < 2:
            raise ValueError("fit_days must be at least 2")
        if self.near_slots < 0:
            raise ValueError("near_slots must not be negative")
        if self.ridge < 0 or self.risk_weight < 0 or self.align_hours < 0:
            raise ValueError("ridge, risk_weight and align_hours must not be negative")

    def align_offsets(self, day_slots: int) -> tuple[int, ...]:
        """The neighbouring slots the alignment reads: ``align_hours`` either side."""
        reach = round(self.align_hours * day_slots / 24)
        return tuple(k for k in range(-reach, reach + 1) if k)


DEFAULT_CORRECTION = CorrectionSettings()


@dataclass(frozen=True, slots=True)
class CorrectedForecast:
    """Corrected expected intensity per slot and the risk penalty for ranking windows."""

    values: list[float]
    risk: list[float]


@dataclass(frozen=True, slots=True)
class ForecastCorrection:
    """A fitted correction; see the module docstring. Errors are actual - forecast."""

    day_slots: int
    offsets: tuple[int, ...]
    """The neighbouring slots (relative to each slot) the alignment reads."""
    alignment: tuple[float, ...]
    """Their weights: the aligned forecast of slot ``s`` is ``f[s] + sum(w * (f[s+k] - f[s]))``."""
    bias: tuple[float, ...]
    coefficients: tuple[tuple[float, ...], ...]
    near_sigma: tuple[float, ...]
    far_sigma: float
    samples: int

    @classmethod
    def fit(
        cls,
        forecast: Sequence[float],
        actual: Sequence[float],
        now_slot: int,
        *,
        day_slots: int,
        day_offset: int = 0,
        settings: CorrectionSettings = DEFAULT_CORRECTION,
    ) -> ForecastCorrection | None:
        """Fit from ``forecast`` and ``actual`` on one grid, reading only slots before
        ``now_slot``. ``day_offset`` is the slot of day of index 0. None when fewer than two
        days of pairs are known."""
        first = max(0, now_slot - settings.fit_days * day_slots)
        # Aligning leaves a slot known or unknown as it was: the known pairs are counted once,
        # before it is fitted.
        known_slots = [
            slot
            for slot in range(first, now_slot)
            if forecast[slot] == forecast[slot] and actual[slot] == actual[slot]
        ]
        known = len(known_slots)
        if known < 2 * day_slots:
            return None
        offsets = settings.align_offsets(day_slots)
        alignment = fit_alignment(
            forecast,
            actual,
            first,
            now_slot,
            offsets,
            settings.ridge,
            day_slots=day_slots,
            day_offset=day_offset,
        )
        forecast = aligned(forecast, offsets, alignment, 0, len(forecast))
        errors = [NAN] * first + [actual[s] - forecast[s] for s in range(first, now_slot)]
        bias = tuple(
            means_by_position(
                [errors[slot] for slot in known_slots],
                [(slot + day_offset) % day_slots for slot in known_slots],
                day_slots,
            )
        )
        residual = [
            error - bias[(slot + day_offset) % day_slots] if error == error else NAN
            for slot, error in enumerate(errors)
        ]
        known_residuals = [r for r in residual[first:] if r == r]
        far_sigma = rms(known_residuals)
        # Columns are slices over the fit range, so a fit is a handful of C-level passes.
        change = [NAN, NAN] + [actual[s - 1] - actual[s - 2] for s in range(2, now_slot)]
        coefficients: list[tuple[float, ...]] = []
        near_sigma: list[float] = []
        begin = first + day_slots
        for lead in range(1, settings.near_slots + 1):
            stop = now_slot - lead + 1  # origins begin..stop-1
            if stop - begin < 4 * FEATURES:
                coefficients.append((0.0,) * FEATURES)
                near_sigma.append(far_sigma)
                continue
            columns = [
                residual[begin - 1 : stop - 1],
                residual[begin - day_slots + lead - 1 : stop - day_slots + lead - 1],
                change[begin:stop],
                list(
                    map(
                        sub,
                        forecast[begin + lead - 1 : stop + lead - 1],
                        forecast[begin - 1 : stop - 1],
                    )
                ),
            ]
            target = residual[begin + lead - 1 : stop + lead - 1]
            *columns, target = known_rows([*columns, target])
            if len(target) < 4 * FEATURES:
                coefficients.append((0.0,) * FEATURES)
                near_sigma.append(far_sigma)
                continue
            solved, sigma = ridge(columns, target, settings.ridge)
            coefficients.append(solved)
            near_sigma.append(sigma)
        return cls(
            day_slots=day_slots,
            offsets=offsets,
            alignment=alignment,
            bias=bias,
            coefficients=tuple(coefficients),
            near_sigma=tuple(near_sigma),
            far_sigma=far_sigma,
            samples=known,
        )

    def apply(
        self,
        forecast: Sequence[float],
        actual: Sequence[float],
        now_slot: int,
        horizon_slots: int,
        *,
        day_offset: int = 0,
        risk_weight: float = DEFAULT_CORRECTION.risk_weight,
    ) -> CorrectedForecast:
        """Corrected values for slots ``now_slot .. now_slot+horizon_slots-1``.

        Reads ``actual`` only before ``now_slot``; ``forecast`` past slots are the values
        that were published for them. When the latest actuals have not been published yet,
        the short-lead correction starts from the last slot that has one (its leads count
        from there), as long as that is within the near slots.
        """
        day_slots = self.day_slots
        bias = self.bias
        near = len(self.coefficients)
        origin = now_slot  # first slot without a measured actual
        while origin > 0 and now_slot - origin < near:
            last = origin - 1
            if last < len(actual) and actual[last] == actual[last]:
                break
            origin -= 1
        low = max(0, origin - day_slots - 1)
        high = min(len(forecast), now_slot + horizon_slots)
        forecast = [
            *forecast[:low],
            *aligned(forecast, self.offsets, self.alignment, low, high),
            *forecast[high:],
        ]
        residual: dict[int, float] = {}
        for slot in range(low, origin):
            inside = slot < len(forecast) and slot < len(actual)
            error = actual[slot] - forecast[slot] if inside else NAN
            residual[slot] = error - bias[(slot + day_offset) % day_slots]
        # Bias per horizon slot: the daily bias rotated to start at the current slot.
        shift = (now_slot + day_offset) % day_slots
        repeats = horizon_slots // day_slots + 2
        slot_bias = (bias[shift:] + bias * repeats)[:horizon_slots]
        raw = list(forecast[now_slot : now_slot + horizon_slots])
        raw += [NAN] * (horizon_slots - len(raw))
        values = [
            f + b if f + b > 0 else (0.0 if f == f else NAN)
            for f, b in zip(raw, slot_bias, strict=True)
        ]
        far_risk = risk_weight * self.far_sigma
        risk = [far_risk if f == f else 0.0 for f in raw]
        for offset in range(min(horizon_slots, near)):
            lead = now_slot - origin + offset + 1
            if lead > near or values[offset] != values[offset]:
                continue
            features = _features_at(forecast, actual, residual, origin, lead, day_slots)
            if features is None:
                continue
            value = raw[offset] + slot_bias[offset]
            value += sum(map(mul, features, self.coefficients[lead - 1]))
            values[offset] = max(0.0, value)
            risk[offset] = risk_weight * self.near_sigma[lead - 1]
        return CorrectedForecast(values=values, risk=risk)

    @classmethod
    def fit_points(
        cls,
        forecast: Sequence[IntensityPoint],
        actual: Sequence[IntensityPoint],
        now: datetime,
        *,
        settings: CorrectionSettings = DEFAULT_CORRECTION,
    ) -> ForecastCorrection | None:
        """:meth:`fit` from points: the forecasts published for past slots and the actuals."""
        grid = _PairedGrid.make(forecast, actual, now)
        if grid is None:
            return None
        return cls.fit(
            grid.forecast,
            grid.actual,
            grid.now_slot,
            day_slots=grid.day_slots,
            day_offset=grid.day_offset,
            settings=settings,
        )


def corrected_view(
    forecast: Sequence[IntensityPoint],
    actual: Sequence[IntensityPoint],
    now: datetime,
    correction: ForecastCorrection | None,
    *,
    risk_weight: float = DEFAULT_CORRECTION.risk_weight,
) -> ForecastView | None:
    """The region's view for this tick with ``correction`` applied (plain if None).

    ``forecast`` may include the forecasts published for slots that have ended (they are
    needed for the current error); ``actual`` holds the measured values of ended slots.
    """
    if correction is None:
        return ForecastView.build([p for p in forecast if p.end > now], now)
    grid = _PairedGrid.make(forecast, actual, now)
    if grid is None or grid.day_slots != correction.day_slots:
        return ForecastView.build([p for p in forecast if p.end > now], now)
    horizon = len(grid.forecast) - grid.now_slot
    if horizon <= 0:
        return None
    corrected = correction.apply(
        grid.forecast,
        grid.actual,
        grid.now_slot,
        horizon,
        day_offset=grid.day_offset,
        risk_weight=risk_weight,
    )
    return ForecastView(
        now=now,
        origin=grid.start + grid.now_slot * grid.step,
        step=grid.step,
        values=corrected.values,
        risk=corrected.risk,
        source="+".join(sorted({p.source for p in forecast})) + "+corrected",
    )


# ---------------------------------------------------------------------------- helpers


def _features_at(
    forecast: Sequence[float],
    actual: Sequence[float],
    residual: dict[int, float],
    origin: int,
    lead: int,
    day_slots: int,
) -> tuple[float, float, float, float] | None:
    """The regression's features at ``origin`` (first slot without an actual) for the slot
    ``lead - 1`` after it; None when one is unknown."""
    target = origin + lead - 1
    if origin < 2 or origin > len(actual) or target >= len(forecast):
        return None
    row = (
        residual.get(origin - 1, NAN),
        residual.get(origin - day_slots + lead - 1, NAN),
        actual[origin - 1] - actual[origin - 2],
        forecast[target] - forecast[origin - 1],
    )
    if any(value != value for value in row):
        return None
    return row


@dataclass(frozen=True, slots=True)
class _PairedGrid:
    """Forecast and actual points on one grid reaching from the earliest point to the end of
    the forecast."""

    start: datetime
    step: timedelta
    forecast: list[float]
    actual: list[float]
    now_slot: int
    day_slots: int
    day_offset: int

    @classmethod
    def make(
        cls,
        forecast: Sequence[IntensityPoint],
        actual: Sequence[IntensityPoint],
        now: datetime,
    ) -> _PairedGrid | None:
        ended_actual = [p for p in actual if p.end <= now]
        both = SlotSeries.from_points([*forecast, *ended_actual])
        if both is None:
            return None
        day_slots = slots_per_day(both.step)
        if day_slots is None:
            return None
        forecast_series = SlotSeries.from_points(forecast, step=both.step)
        actual_series = SlotSeries.from_points(ended_actual, step=both.step)
        size = len(both)
        now_slot = both.slot_at(now)
        return cls(
            start=both.start,
            step=both.step,
            forecast=_on_grid(forecast_series, both.start, size),
            actual=_on_grid(actual_series, both.start, size),
            now_slot=now_slot,
            day_slots=day_slots,
            day_offset=slot_of_day(both.start, both.step),
        )


def _on_grid(series: SlotSeries | None, start: datetime, size: int) -> list[float]:
    if series is None:
        return [NAN] * size
    return series.window(series.slot_at(start), size)
