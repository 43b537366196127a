"""The registry: ServerTarget capacity (a release claims its slot before it awaits), and
which held entry a release decided this tick still applies to."""

from __future__ import annotations

from dataclasses import replace

from carbonaware.api.overrides import HoldMode, Overrides
from carbonaware.handlers.state import Registry

from .test_loop_faults import held

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


def test_a_decision_outlives_our_own_status_write_but_not_an_edit_or_an_override() -> None:
    registry = Registry()
    planned = held("job", "u1")
    planned.body["metadata"]["generation"] = 1
    registry.hold(planned)
    assert registry.as_planned(planned) is planned
    # A watch event for a status write re-registers the same object: the decision stands.
    seen_again = replace(planned, body={"metadata": {"name": "job", "uid": "u1", "generation": 1}})
    registry.hold(seen_again)
    assert registry.as_planned(planned) is seen_again
    # An edited spec, a hold set meanwhile, a new object of the same name, or none at all: not.
    edited = replace(planned, body={"metadata": {"name": "job", "uid": "u1", "generation": 2}})
    registry.hold(edited)
    assert registry.as_planned(planned) is None
    registry.hold(replace(seen_again, overrides=Overrides(hold=HoldMode.UNTIL_DEADLINE)))
    assert registry.as_planned(planned) is None
    registry.hold(replace(seen_again, uid="u2"))
    assert registry.as_planned(planned) is None
    registry.forget(planned.key)
    assert registry.as_planned(planned) is None
