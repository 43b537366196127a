"""How release-now and hold change the policy's decision (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from carbonaware.api.conditions import Reason
from carbonaware.api.overrides import HoldMode, Overrides
from carbonaware.scheduling.policy import Decision, with_overrides

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATEST = NOW + timedelta(hours=6)


def decision(release: bool, reason: Reason) -> Decision:
    return Decision(
        release=release,
        reason=reason,
        planned_start=NOW if release else NOW + timedelta(hours=3),
        planned_window_mean=120.0,
        latest_start=LATEST,
        expected_duration=timedelta(hours=1),
        mean_now=175.0,
        intensity_now=180.0,
    )


HELD = decision(False, Reason.WAITING_FOR_LOWER_INTENSITY)
WINDOW = decision(True, Reason.LOW_CARBON_WINDOW)
DEADLINE = decision(True, Reason.DEADLINE_REACHED)


def test_no_overrides_change_nothing() -> None:
    assert with_overrides(HELD, Overrides(), NOW) is HELD


def test_release_now_releases_a_held_job_and_says_who_asked() -> None:
    got = with_overrides(HELD, Overrides(release_now=True, release_now_by="kubectl-annotate"), NOW)
    assert got.release
    assert got.reason is Reason.MANUAL_RELEASE
    assert got.planned_start == NOW
    assert "kubectl-annotate" in got.message
    assert "carbonaware.io/release-now" in got.message
    assert "180 gCO2e/kWh" in got.message


def test_hold_keeps_a_due_job_held_until_the_deadline() -> None:
    hold = Overrides(hold=HoldMode.UNTIL_DEADLINE, hold_by="argocd-controller")
    got = with_overrides(WINDOW, hold, NOW)
    assert not got.release
    assert got.reason is Reason.HELD_ON_REQUEST
    assert got.planned_start == LATEST
    assert "argocd-controller" in got.message
    assert "deadline still releases" in got.message
    assert with_overrides(DEADLINE, hold, NOW) is DEADLINE


def test_a_forced_hold_holds_past_the_deadline() -> None:
    got = with_overrides(DEADLINE, Overrides(hold=HoldMode.FORCE, hold_by="me"), NOW)
    assert not got.release
    assert got.forced
    assert "force" in got.message


def test_release_now_wins_over_hold() -> None:
    both = Overrides(release_now=True, hold=HoldMode.FORCE)
    assert with_overrides(HELD, both, NOW).reason is Reason.MANUAL_RELEASE


REASONS = st.sampled_from(list(Reason))


@given(release=st.booleans(), reason=REASONS, forced=st.booleans())
def test_a_hold_only_ever_lets_a_deadline_release_through(
    release: bool, reason: Reason, forced: bool
) -> None:
    mode = HoldMode.FORCE if forced else HoldMode.UNTIL_DEADLINE
    got = with_overrides(decision(release, reason), Overrides(hold=mode), NOW)
    if got.release:
        assert not forced
        assert got.reason in (Reason.DEADLINE_REACHED, Reason.PROVIDER_UNAVAILABLE)
