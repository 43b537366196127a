"""ServerTarget capacity in the registry: a release claims its slot before it awaits."""

from __future__ import annotations

from carbonaware.handlers.state import Registry

TARGET = ("ml", "gpu-box")


def test_the_last_slot_goes_to_one_of_two_releases_starting_together() -> None:
    registry = Registry()
    registry.set_target(TARGET, max_concurrent=1, region=None)
    first, second = ("CarbonAwareJob", "ml", "a"), ("CarbonAwareJob", "ml", "b")
    assert registry.reserve(TARGET, first)
    assert not registry.has_capacity(TARGET)
    assert not registry.reserve(TARGET, second)
    registry.mark_running(TARGET, first)
    registry.unreserve(TARGET, first)
    assert registry.target(TARGET).busy == 1
    assert not registry.reserve(TARGET, second)
    registry.mark_finished(TARGET, first)
    assert registry.reserve(TARGET, second)


def test_a_retried_release_keeps_its_own_slot() -> None:
    registry = Registry()
    registry.set_target(TARGET, max_concurrent=1, region=None)
    key = ("CarbonAwareJob", "ml", "a")
    registry.mark_running(TARGET, key)
    assert registry.reserve(TARGET, key)  # already running: its release may be retried
    registry.unreserve(TARGET, key)
    assert registry.target(TARGET).busy == 1


def test_a_failed_start_gives_the_slot_back() -> None:
    registry = Registry()
    registry.set_target(TARGET, max_concurrent=2, region=None)
    key = ("CarbonAwareJob", "ml", "a")
    assert registry.reserve(TARGET, key)
    assert registry.target(TARGET).free == 1
    registry.unreserve(TARGET, key)
    assert registry.target(TARGET).free == 2


def test_in_cluster_jobs_need_no_slot() -> None:
    assert Registry().reserve(None, ("CarbonAwareJob", "ml", "a"))
