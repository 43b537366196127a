"""Skill by lead, rank correlation and blending by recent skill."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from carbonaware.scheduling.rankcorr import spearman
from carbonaware.scheduling.skill import (
    BLEND,
    LeadSkill,
    SkillSettings,
    SkillTracker,
    bucket_label,
)

HOUR = timedelta(hours=1)
DAY = 24


def tracker(sources: tuple[str, ...], **settings: float | str | bool) -> SkillTracker:
    return SkillTracker(
        sources=sources,
        step=HOUR,
        horizon_slots=48,
        settings=SkillSettings(record_every_hours=1, min_samples=10, **settings),  # type: ignore[arg-type]
    )


def feed(
    skill: SkillTracker,
    actual: list[float],
    forecast_of: dict[str, list[float]],
    ticks: range,
) -> None:
    """Issue at every tick each source's forecast (its series from the tick on), after the
    actuals before the tick are observed."""
    for tick in ticks:
        if tick:
            skill.observe(tick - 1, actual[tick - 1], (tick - 1) // DAY)
        forecasts = {name: series[tick : tick + 48] for name, series in forecast_of.items()}
        values, _ = skill.blend(forecasts)
        skill.issue(tick, {**forecasts, BLEND: values})


def row_of(skill: SkillTracker, source: str, bucket: str) -> LeadSkill:
    return next(s for s in skill.table() if s.source == source and s.bucket == bucket)


def test_mae_by_lead_bucket_is_the_mean_absolute_error_of_forecasts_at_those_leads() -> None:
    actual = [100.0] * 200
    skill = tracker(("high",))
    feed(skill, actual, {"high": [110.0] * 248}, range(150))
    table = {(s.source, s.bucket): s for s in skill.table()}
    for bucket in ("0-3h", "3-6h", "6-12h", "12-24h", "24-48h"):
        assert table[("high", bucket)].mae == pytest.approx(10.0)
        assert table[("high", bucket)].samples > 0
    assert math.isnan(table[("high", "48h+")].mae)  # no lead reaches 48 h here
    assert bucket_label(5) == "48h+"


def test_a_poor_source_gets_no_weight_and_the_blend_follows_the_good_one() -> None:
    rng = random.Random(4)
    actual = [200 + 80 * math.sin(2 * math.pi * i / DAY) for i in range(24 * 30)]
    good = [a + rng.gauss(0, 5) for a in actual] + [200.0] * 48
    poor = [a + rng.gauss(0, 80) for a in actual] + [200.0] * 48
    skill = tracker(("poor", "good"))
    feed(skill, actual, {"poor": poor, "good": good}, range(24 * 20))
    for weights in skill.weights(["poor", "good"])[:5]:
        assert weights["good"] >= 0.9
        assert sum(weights.values()) == pytest.approx(1.0)
    tick = 24 * 20
    values, risk = skill.blend({"poor": poor[tick : tick + 48], "good": good[tick : tick + 48]})
    blend_error = sum(abs(v - a) for v, a in zip(values, actual[tick:], strict=False)) / 48
    assert blend_error < 8
    assert all(r > 0 for r in risk)  # the recent error, weighted by risk_weight


def test_two_sources_with_independent_errors_are_averaged() -> None:
    rng = random.Random(9)
    actual = [150.0 + 30 * math.sin(i / 5) for i in range(24 * 30)]
    first = [a + rng.gauss(0, 20) for a in actual] + [150.0] * 48
    second = [a + rng.gauss(0, 20) for a in actual] + [150.0] * 48
    skill = tracker(("first", "second"))
    feed(skill, actual, {"first": first, "second": second}, range(24 * 25))
    weights = skill.weights(["first", "second"])[4]
    assert weights["first"] == pytest.approx(0.5, abs=0.21)
    blended = row_of(skill, BLEND, "24-48h")
    alone = row_of(skill, "first", "24-48h")
    assert blended.mae < alone.mae  # averaging independent errors helps


def test_a_mix_that_errs_less_than_its_sources_carries_less_risk() -> None:
    """Two sources with independent errors: the even mix errs less than either, so its risk
    penalty is the sources' weighted risk scaled by the mix's MAE over theirs."""
    rng = random.Random(9)
    actual = [150.0 + 30 * math.sin(i / 5) for i in range(24 * 30)]
    first = [a + rng.gauss(0, 20) for a in actual] + [150.0] * 48
    second = [a + rng.gauss(0, 20) for a in actual] + [150.0] * 48
    series = {"first": first, "second": second}
    scaled = tracker(("first", "second"))
    weighted = tracker(("first", "second"), diversified_risk=False)
    for skill in (scaled, weighted):
        feed(skill, actual, series, range(24 * 25))
    tick = 24 * 25
    now = {name: values[tick : tick + 48] for name, values in series.items()}
    _, scaled_risk = scaled.blend(now)
    _, weighted_risk = weighted.blend(now)
    bucket = 4  # 24-48 h
    blend_mae = row_of(scaled, BLEND, "24-48h").mae
    weights = scaled.weights(["first", "second"])[bucket]
    mean_mae = sum(w * row_of(scaled, name, "24-48h").mae for name, w in weights.items())
    ratio = scaled.diversification(["first", "second"])[bucket]  # as of the day's start
    assert ratio == pytest.approx(blend_mae / mean_mae, rel=0.02)
    assert ratio < 0.9
    assert scaled_risk[30] == pytest.approx(weighted_risk[30] * ratio)


def test_a_source_trusted_alone_keeps_its_own_risk() -> None:
    """With all the weight on one source the mix is that source: the scale is 1."""
    rng = random.Random(4)
    actual = [200 + 80 * math.sin(2 * math.pi * i / DAY) for i in range(24 * 30)]
    good = [a + rng.gauss(0, 5) for a in actual] + [200.0] * 48
    poor = [a + rng.gauss(0, 80) for a in actual] + [200.0] * 48
    skill = tracker(("poor", "good"), weight_step=1.0)
    feed(skill, actual, {"poor": poor, "good": good}, range(24 * 20))
    assert all(weights["good"] == 1.0 for weights in skill.weights(["poor", "good"])[:5])
    assert skill.diversification(["poor", "good"])[:5] == pytest.approx([1.0] * 5)


def test_a_source_without_a_value_is_left_out_of_that_slot() -> None:
    skill = tracker(("a", "b"))
    values, _ = skill.blend({"a": [10.0, math.nan, math.nan], "b": [20.0, 30.0]})
    assert values[0] == pytest.approx(15.0)  # equal weights before any score
    assert values[1] == pytest.approx(30.0)
    assert math.isnan(values[2])


def test_rank_correlation_rewards_the_order_of_clean_and_dirty_hours() -> None:
    assert spearman([(1, 10), (2, 20), (3, 35)]) == pytest.approx(1.0)
    assert spearman([(1, 10), (2, 5), (3, 1)]) == pytest.approx(-1.0)
    assert math.isnan(spearman([(1, 1), (2, 1), (3, 1)]))
    assert math.isnan(spearman([(1, 2), (2, 3)]))
    # A forecast 50 g too high everywhere orders the hours perfectly.
    actual = [100 + 40 * math.sin(2 * math.pi * i / DAY) for i in range(24 * 10)]
    skill = tracker(("biased",))
    feed(skill, actual, {"biased": [a + 50 for a in actual] + [0.0] * 48}, range(24 * 8))
    row = row_of(skill, "biased", "12-24h")
    assert row.mae == pytest.approx(50.0)
    assert row.rank_correlation == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("field", "value"),
    [("window_days", 0), ("weight_step", 0), ("risk_weight", -1), ("min_samples", 0)],
)
def test_bad_settings_are_refused(field: str, value: float | str) -> None:
    with pytest.raises(ValueError, match=field):
        SkillSettings(**{field: value})  # type: ignore[arg-type]
