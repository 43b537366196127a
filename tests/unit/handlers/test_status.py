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
