"""Reading overrides and who set them from an object's metadata."""

from __future__ import annotations

from carbonaware.api.overrides import UNKNOWN_REQUESTER, HoldMode, overrides_of, requester


def entry(manager: str, time: str, *keys: str) -> dict[str, object]:
    annotations = {f"f:{key}": {} for key in keys}
    return {
        "manager": manager,
        "operation": "Update",
        "time": time,
        "fieldsV1": {"f:metadata": {"f:annotations": annotations}},
    }


def test_no_annotations_means_no_overrides() -> None:
    found = overrides_of({"annotations": {"other": "x"}})
    assert not found.any
    assert found.hold is None


def test_each_override_and_who_set_it() -> None:
    meta = {
        "annotations": {
            "carbonaware.io/release-now": "true",
            "carbonaware.io/hold": "true",
            "carbonaware.io/cancel": "yes please",
        },
        "managedFields": [
            entry("kubectl-client-side-apply", "2026-01-01T10:00:00Z", "carbonaware.io/hold"),
            entry("kubectl-annotate", "2026-01-01T11:00:00Z", "carbonaware.io/release-now"),
            entry("kubectl-carbonaware", "2026-01-01T12:00:00Z", "carbonaware.io/cancel"),
        ],
    }
    found = overrides_of(meta)
    assert found.release_now
    assert found.cancel
    assert found.hold is HoldMode.UNTIL_DEADLINE
    assert found.release_now_by == "kubectl-annotate"
    assert found.hold_by == "kubectl-client-side-apply"
    assert found.cancel_by == "kubectl-carbonaware"


def test_force_hold_and_values_that_switch_an_override_off() -> None:
    assert overrides_of({"annotations": {"carbonaware.io/hold": " Force "}}).hold is HoldMode.FORCE
    for off in ("", "false", "False", "no", "0"):
        found = overrides_of(
            {"annotations": {"carbonaware.io/hold": off, "carbonaware.io/release-now": off}}
        )
        assert not found.any, off


def test_the_latest_writer_of_the_annotation_is_the_requester() -> None:
    meta = {
        "managedFields": [
            entry("argocd-controller", "2026-01-01T09:00:00Z", "carbonaware.io/hold"),
            entry("kubectl-annotate", "2026-01-01T10:00:00Z", "carbonaware.io/hold"),
            entry("someone-else", "2026-01-01T11:00:00Z", "carbonaware.io/cancel"),
        ]
    }
    assert requester(meta, "carbonaware.io/hold") == "kubectl-annotate"
    assert requester({}, "carbonaware.io/hold") == UNKNOWN_REQUESTER
    assert requester({"managedFields": ["garbage", {"fieldsV1": None}]}, "x") == UNKNOWN_REQUESTER
