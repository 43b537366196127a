"""Fixed objects as the API server returns them, for the plugin's golden tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def condition(type_: str, reason: str, message: str, status: str = "True") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-03-02T08:00:00Z"}  # fmt: skip


def caj(namespace: str, name: str, status: dict[str, Any], **schedule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
        "spec": {"schedule": {"policy": "Forecast", **schedule}, "jobTemplate": {}},
        "status": status,
    }


HELD = caj(
    "ml", "train-resnet",
    {
        "state": "Held", "region": "GB",
        "plannedStartTime": "2026-03-02T12:12:00Z", "latestStartTime": "2026-03-02T20:00:00Z",
        "intensity": {"current": 182.0, "plannedWindowMean": 61.5, "source": "ukci"},
        "conditions": [
            condition("Held", "WaitingForLowerIntensity",
                      "Held for the lower-carbon window starting 2026-03-02T12:12:00Z."),
            condition("Released", "WaitingForLowerIntensity", "Not released yet.", "False"),
        ],
    },
    expectedDurationSeconds=7200,
)  # fmt: skip
HELD_ON_REQUEST = caj(
    "etl", "nightly",
    {
        "state": "Held", "region": "DE",
        "plannedStartTime": "2026-03-03T06:00:00Z", "latestStartTime": "2026-03-03T06:00:00Z",
        "intensity": {"current": 412.3, "source": "trace"},
        "conditions": [condition("Held", "HeldOnRequest", "Held on request.")],
    },
    policy="Threshold", maxIntensity=300,
)  # fmt: skip
RUNNING = caj(
    "ml", "eval",
    {
        "state": "Running", "region": "GB", "releaseTime": "2026-03-02T08:48:00Z",
        "latestStartTime": "2026-03-02T10:00:00Z",
        "intensity": {"current": 75.0, "atRelease": 75.0, "source": "ukci"},
        "conditions": [condition("Released", "ManualRelease", "Released on request.")],
    },
)  # fmt: skip


def finished(namespace: str, name: str, completed: str, sci: dict[str, Any],
             policy: str = "Forecast") -> dict[str, Any]:  # fmt: skip
    return caj(
        namespace, name,
        {"state": "Succeeded", "completionTime": completed, "sci": sci,
         "intensity": {"source": "ukci"},
         "conditions": [condition("Complete", "Succeeded", "The Job completed.")]},
        policy=policy,
    )  # fmt: skip


def sci(total: float, avoided: float | None, energy: float, unit: str = "1 run") -> dict[str, Any]:
    doc: dict[str, Any] = {"energyKWh": energy, "totalGrams": total, "perUnitGrams": total,
                           "functionalUnit": unit, "intensitySource": "ukci",
                           "operationalGrams": total, "embodiedGrams": 0.0, "method": "x",
                           "cpuCoreSeconds": 1.0}  # fmt: skip
    if avoided is not None:
        doc["avoidedGrams"] = avoided
    return doc


DONE = [
    finished("ml", "a", "2026-03-01T10:00:00Z", sci(0.000207591013873034, 0.0001, 0.0000012)),
    finished("ml", "b", "2026-03-01T22:00:00Z", sci(12.5, 4.25, 0.08)),
    finished("ml", "c", "2026-02-28T03:00:00Z", sci(3.0, -0.5, 0.02), policy="Threshold"),
    finished("etl", "d", "2026-02-28T05:00:00Z", sci(40.0, 10.0, 0.2)),
    finished("etl", "old", "2026-01-01T05:00:00Z", sci(99.0, 1.0, 1.0)),  # before the period
]
PLAIN_DONE = {
    "kind": "Job",
    "metadata": {
        "namespace": "etl", "name": "cron-1", "uid": "j1",
        "labels": {"carbonaware.io/managed": "true"},
        "annotations": {
            "carbonaware.io/policy": "Forecast", "carbonaware.io/state": "Succeeded",
            "carbonaware.io/sci-grams": "2.0", "carbonaware.io/avoided-grams": "0.5",
            "carbonaware.io/energy-kwh": "0.01", "carbonaware.io/intensity-source": "ukci",
        },
    },
    "status": {"completionTime": "2026-03-01T06:00:00Z",
               "conditions": [{"type": "Complete", "status": "True"}]},
}  # fmt: skip
# A Job a Shadow CarbonAwarePolicy watched: it ran at once (nothing avoided); held to the
# policy's planned start it would have emitted 1.75 g instead of 3 g.
PLAIN_SHADOW = {
    "kind": "Job",
    "metadata": {
        "namespace": "etl", "name": "nightly-29000000", "uid": "j3",
        "labels": {"carbonaware.io/managed": "shadow"},
        "annotations": {
            "carbonaware.io/policy": "Forecast", "carbonaware.io/state": "Succeeded",
            "carbonaware.io/governing-policy": "nightly", "carbonaware.io/policy-mode": "Shadow",
            "carbonaware.io/shadow-planned-start-time": "2026-03-01T13:00:00Z",
            "carbonaware.io/sci-grams": "3.0", "carbonaware.io/avoided-grams": "0",
            "carbonaware.io/shadow-would-have-grams": "1.75",
            "carbonaware.io/shadow-would-have-saved-grams": "1.25",
            "carbonaware.io/energy-kwh": "0.02", "carbonaware.io/intensity-source": "ukci",
        },
    },
    "status": {"completionTime": "2026-03-01T07:00:00Z",
               "conditions": [{"type": "Complete", "status": "True"}]},
}  # fmt: skip
PLAIN_HELD = {
    "kind": "Job",
    "metadata": {
        "namespace": "etl", "name": "cron-2", "uid": "j2",
        "labels": {"carbonaware.io/managed": "true"},
        "annotations": {
            "carbonaware.io/state": "Held", "carbonaware.io/reason": "WaitingForThreshold",
            "carbonaware.io/planned-start-time": "2026-03-02T09:30:00Z",
            "carbonaware.io/latest-start-time": "2026-03-02T18:00:00Z",
        },
    },
    "spec": {"suspend": True},
    "status": {},
}  # fmt: skip
