"""Status documents written at release."""

from __future__ import annotations

from datetime import UTC, datetime

from carbonaware.api.conditions import Reason
from carbonaware.handlers import status as status_docs

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def released_conditions(message: str) -> dict[str, str]:
    doc = status_docs.released(
        [],
        reason=Reason.LOW_CARBON_WINDOW,
        message=message,
        now=NOW,
        generation=1,
        region="GB",
        latest_start=NOW,
        current=50.0,
        source="trace",
        at_creation=60.0,
    )
    return {str(c["type"]): str(c["message"]) for c in doc["conditions"]}


def test_held_false_says_released_once_when_the_policy_message_already_does() -> None:
    messages = released_conditions("Released: starting now is the lowest-carbon 2h window.")
    assert messages["Held"] == "Released: starting now is the lowest-carbon 2h window."
    assert messages["Released"] == messages["Held"]


def test_held_false_is_prefixed_when_the_message_does_not_say_released() -> None:
    messages = released_conditions("The operator started the run.")
    assert messages["Held"] == "Released: The operator started the run."
    assert messages["Released"] == "The operator started the run."


def test_values_unknown_at_release_remove_the_ones_seen_while_held() -> None:
    """Written as a JSON merge patch: null removes the held status's current value and
    source, so a release without data does not show them as the release's."""
    doc = status_docs.released(
        [],
        reason=Reason.PROVIDER_UNAVAILABLE,
        message="Released at the latest start; no intensity data.",
        now=NOW,
        generation=1,
        region="GB",
        latest_start=NOW,
        current=None,
        source=None,
        at_creation=None,
    )
    assert doc["intensity"] == {"current": None, "atRelease": None, "source": None}


def child_with(annotations: dict[str, str]) -> dict[str, object]:
    return {"metadata": {"name": "nightly", "annotations": annotations}}


HELD_PARENT = {
    "metadata": {"name": "nightly", "generation": 2},
    "status": {
        "state": "Held",
        "region": "GB",
        "releaseDecidedTime": "2026-01-05T12:00:00Z",
        "latestStartBound": "Deadline",
        "intensity": {"atCreation": 60, "current": 55, "source": "ukci"},
        "conditions": [
            {"type": "Held", "status": "True", "reason": "WaitingForThreshold", "message": "x"},
            {"type": "Released", "status": "False", "reason": "WaitingForThreshold",
             "message": "Not released yet."},
        ],
    },
}  # fmt: skip
FACTS = {
    "carbonaware.io/reason": "ThresholdMet",
    "carbonaware.io/release-time": "2026-01-05T12:00:01Z",
    "carbonaware.io/latest-start-time": "2026-01-06T12:00:00Z",
    "carbonaware.io/parent-generation": "2",
    "carbonaware.io/intensity-at-release": "48",
}


def test_a_release_the_operator_did_not_record_is_recorded_from_the_childs_facts() -> None:
    doc = status_docs.released_from_child(HELD_PARENT, child_with(FACTS))

    assert doc is not None
    assert doc["releaseTime"] == "2026-01-05T12:00:01Z"
    assert doc["latestStartTime"] == "2026-01-06T12:00:00Z"
    assert doc["latestStartBound"] == "Deadline"
    assert doc["observedGeneration"] == 2
    assert doc["intensity"] == {"current": 48, "atRelease": 48, "source": "ukci", "atCreation": 60}
    conditions = {c["type"]: c for c in doc["conditions"]}
    assert conditions["Released"]["status"] == "True"
    assert conditions["Released"]["reason"] == "ThresholdMet"
    assert conditions["Held"]["status"] == "False"


def test_a_recorded_release_or_a_child_without_facts_gives_nothing() -> None:
    released_parent = {**HELD_PARENT, "status": {**HELD_PARENT["status"], "releaseTime": "t"}}

    assert status_docs.released_from_child(released_parent, child_with(FACTS)) is None
    assert status_docs.released_from_child(HELD_PARENT, child_with({})) is None
    wrong = {**FACTS, "carbonaware.io/reason": "NotAReason"}
    assert status_docs.released_from_child(HELD_PARENT, child_with(wrong)) is None
