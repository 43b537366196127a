"""Release ordering under limited capacity: priority, deadlines, maxConcurrent, a per-tick cap."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from carbonaware.api.conditions import Reason
from carbonaware.scheduling import ReleaseCandidate, order_releases, plan_releases
from carbonaware.scheduling.ordering import release_order_key

from .helpers import T0

TICK = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def cand(
    key: str, priority: int = 0, latest_hours: float = 5, target: str | None = "srv"
) -> ReleaseCandidate:
    return ReleaseCandidate(
        key=key, priority=priority, latest_start=T0 + timedelta(hours=latest_hours), target=target
    )


def test_higher_priority_goes_first_then_earlier_latest_start() -> None:
    plan = plan_releases(
        [cand("low", 0, 1), cand("high", 5, 9), cand("mid-late", 1, 8), cand("mid-early", 1, 2)],
        now=T0,
        tick=TICK,
        running={"srv": 0},
        max_concurrent={"srv": 2},
    )
    assert plan.released == ("high", "mid-early")
    assert [d.key for d in plan.deferred] == ["mid-late", "low"]
    assert all(d.reason is Reason.TARGET_BUSY for d in plan.deferred)
    assert "maxConcurrent 2" in plan.deferred[0].message


def test_running_jobs_count_against_max_concurrent() -> None:
    plan = plan_releases(
        [cand("a"), cand("b")], now=T0, tick=TICK, running={"srv": 1}, max_concurrent={"srv": 2}
    )
    assert plan.released == ("a",)


def test_a_deadline_due_job_jumps_the_queue() -> None:
    due = cand("due", priority=-10, latest_hours=0)  # now + tick is past its latest start
    plan = plan_releases(
        [cand("vip", priority=100), due],
        now=T0,
        tick=TICK,
        running={},
        max_concurrent={"srv": 1},
    )
    assert plan.released == ("due",)


def test_a_due_job_on_a_full_target_stays_busy_and_says_the_deadline_is_lost() -> None:
    plan = plan_releases(
        [cand("due", latest_hours=0)],
        now=T0,
        tick=TICK,
        running={"srv": 1},
        max_concurrent={"srv": 1},
    )
    assert plan.released == ()
    (deferred,) = plan.deferred
    assert deferred.deadline_passed
    assert "deadline cannot be met" in deferred.message


def test_untargeted_jobs_are_limited_only_by_the_tick_cap() -> None:
    plan = plan_releases(
        [cand(str(i), target=None) for i in range(5)],
        now=T0,
        tick=TICK,
        running={},
        max_concurrent={},
        max_releases_per_tick=3,
    )
    assert len(plan.released) == 3
    assert "at most 3 jobs per tick" in plan.deferred[0].message


def test_order_releases_takes_free_slots() -> None:
    go, busy = order_releases(
        [cand("a", 1), cand("b", 2), cand("c", 0, target=("ns", "other"))],
        {"srv": 1, ("ns", "other"): 0},
        None,
        now=T0,
        tick=TICK,
    )
    assert [c.key for c in go] == ["b"]
    assert [c.key for c in busy] == ["a", "c"]


targets = st.sampled_from([None, "a", "b", "c"])


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[ReleaseCandidate], dict[str, int], dict[str, int], int | None]:
    count = draw(st.integers(0, 30))
    candidates = [
        ReleaseCandidate(
            key=f"job-{i}",
            priority=draw(st.integers(-3, 3)),
            latest_start=T0 + timedelta(minutes=draw(st.integers(-10, 600))),
            target=draw(targets),
        )
        for i in range(count)
    ]
    limits = {t: draw(st.integers(0, 4)) for t in ("a", "b") if draw(st.booleans())}
    running = {t: draw(st.integers(0, 5)) for t in ("a", "b", "c")}
    cap = draw(st.none() | st.integers(0, 10))
    return candidates, running, limits, cap


@given(scenarios())
def test_capacity_cap_and_priority_are_respected(
    scenario: tuple[list[ReleaseCandidate], dict[str, int], dict[str, int], int | None],
) -> None:
    candidates, running, limits, cap = scenario
    plan = plan_releases(
        candidates,
        now=T0,
        tick=TICK,
        running=running,
        max_concurrent=limits,
        max_releases_per_tick=cap,
    )
    by_key = {c.key: c for c in candidates}
    key = {c.key: release_order_key(c, now=T0, tick=TICK) for c in candidates}
    released = [by_key[k] for k in plan.released]
    # Every candidate is either released or deferred, once.
    assert sorted(plan.released + tuple(d.key for d in plan.deferred)) == sorted(by_key)
    # Release order is the documented order.
    assert [key[c.key] for c in released] == sorted(key[c.key] for c in released)
    # The tick cap and each target's maxConcurrent hold.
    if cap is not None:
        assert len(released) <= cap
    for target, limit in limits.items():
        started = sum(1 for c in released if c.target == target)
        assert started == 0 or running.get(target, 0) + started <= limit
    # A deferred job lost only to jobs ahead of it in the order, for a reason that holds.
    for deferred in plan.deferred:
        job = by_key[deferred.key]
        cap_full = cap is not None and len(released) == cap
        ahead = all(key[c.key] < key[job.key] for c in released)
        target_full = job.target in limits and (
            running.get(job.target, 0) + sum(1 for c in released if c.target == job.target)
            >= limits[job.target]
        )
        same_target_ahead = all(
            key[c.key] < key[job.key] for c in released if c.target == job.target
        )
        assert (cap_full and ahead) or (target_full and same_target_ahead)
