"""Plain Jobs' ``carbonaware.io/...`` annotations: messages that say what to write, and a
parser that only ever raises SpecError (a crash here would retry the handler forever)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carbonaware.api import labels
from carbonaware.api.carbonawarejob import (
    MAX_INTENSITY,
    MAX_PRIORITY,
    MAX_SECONDS,
    IndexLevel,
    SchedulePolicy,
)
from carbonaware.api.intensity import IntensityIndex
from carbonaware.errors import SpecError
from carbonaware.handlers.state import WorkKind
from carbonaware.handlers.work import (
    SCHEDULE_ANNOTATIONS,
    parse_spec,
    schedule_from_annotations,
    work_from_carbonawarejob,
    work_from_plain_job,
)

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEFAULT_REGION = "GB"
OUR_KEYS = [*SCHEDULE_ANNOTATIONS, labels.PRIORITY, labels.REGION, labels.PLANNED_START_TIME]


def job(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "batch",
            "uid": "0b7f3c1e-1111-2222-3333-444455556666",
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "labels": {labels.MANAGED: "true"},
            "annotations": annotations,
        },
        "spec": {"suspend": True},
    }


def spec_error(annotations: dict[str, str]) -> str:
    with pytest.raises(SpecError) as caught:
        work_from_plain_job(job(annotations), default_region=DEFAULT_REGION)
    return str(caught.value)


# --------------------------------------------------------------------------- examples


def test_annotations_make_the_schedule() -> None:
    work = work_from_plain_job(
        job(
            {
                labels.POLICY: "Threshold",
                labels.MAX_INTENSITY: "120",
                labels.MAX_INDEX: "Low",
                labels.MAX_DELAY_SECONDS: "7200",
                labels.DEADLINE_TIME: "2024-05-01T13:30:00+01:00",
                labels.EXPECTED_DURATION_SECONDS: "600",
                labels.PRIORITY: "-5",
                labels.REGION: "GB-13",
                labels.PLANNED_START_TIME: "2024-05-01T12:30:00Z",
            }
        ),
        default_region=DEFAULT_REGION,
    )
    assert work.kind is WorkKind.JOB
    assert work.policy is SchedulePolicy.THRESHOLD
    assert work.max_intensity == 120.0
    assert work.max_index is IntensityIndex.LOW
    assert work.priority == -5
    assert work.region == "GB-13"
    # deadline 12:30Z minus 600 s beats creation + 7200 s
    assert work.latest_start == datetime(2024, 5, 1, 12, 20, tzinfo=UTC)
    assert work.planned_start == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def test_no_annotations_means_the_defaults() -> None:
    work = work_from_plain_job(job({}), default_region=DEFAULT_REGION)
    assert work.policy is SchedulePolicy.FORECAST
    assert work.region == DEFAULT_REGION
    assert work.priority == 0
    assert work.latest_start == CREATED + timedelta(days=1)


@pytest.mark.parametrize(
    ("annotations", "fragments"),
    [
        (
            {labels.MAX_DELAY_SECONDS: "soon"},
            [
                labels.MAX_DELAY_SECONDS,
                f"must be a whole number of seconds from 0 to {MAX_SECONDS}",
                "'soon'",
            ],
        ),
        ({labels.MAX_DELAY_SECONDS: "-60"}, [labels.MAX_DELAY_SECONDS, "from 0 to", "'-60'"]),
        (
            {labels.POLICY: "Sometimes"},
            [labels.POLICY, "must be one of Forecast, Threshold, Immediate", "'Sometimes'"],
        ),
        (
            {labels.POLICY: "Threshold", labels.MAX_INDEX: "Low-ish"},
            [labels.MAX_INDEX, "must be one of VeryLow, Low, Moderate, High"],
        ),
        (
            {labels.POLICY: "Threshold"},
            [
                f"annotation {labels.POLICY} Threshold must come with {labels.MAX_INTENSITY}",
                labels.MAX_INDEX,
            ],
        ),
        (
            {labels.MAX_INTENSITY: "100"},
            [f"annotation {labels.MAX_INTENSITY} must only be set with {labels.POLICY} Threshold"],
        ),
        (
            {labels.POLICY: "Immediate", labels.MAX_INTENSITY: "100", labels.MAX_INDEX: "Low"},
            [f"annotation {labels.MAX_INTENSITY} and annotation {labels.MAX_INDEX} must only"],
        ),
        (
            {labels.DEADLINE_TIME: "2030-01-31T18:00:00"},
            [labels.DEADLINE_TIME, "must be an RFC 3339 time with a zone"],
        ),
        ({labels.DEADLINE_TIME: "tomorrow"}, [labels.DEADLINE_TIME, "'tomorrow'"]),
        (
            {labels.MAX_INTENSITY: "250000", labels.POLICY: "Threshold"},
            [labels.MAX_INTENSITY, f"from 0 to {MAX_INTENSITY}"],
        ),
        ({labels.PRIORITY: "high"}, [labels.PRIORITY, f"from -{MAX_PRIORITY} to {MAX_PRIORITY}"]),
        ({labels.PRIORITY: "1_000"}, [labels.PRIORITY, "whole number"]),
        ({labels.PRIORITY: "2000000"}, [labels.PRIORITY, "'2000000'"]),
        ({labels.REGION: "G" * 65}, [labels.REGION, "at most 64 characters"]),
    ],
)
def test_bad_annotations_name_the_annotation_and_what_it_must_hold(
    annotations: dict[str, str], fragments: list[str]
) -> None:
    message = spec_error(annotations)
    for fragment in fragments:
        assert fragment in message


def test_every_bad_annotation_is_reported_at_once() -> None:
    message = spec_error(
        {labels.MAX_DELAY_SECONDS: "soon", labels.PRIORITY: "high", labels.MAX_INDEX: "Low-ish"}
    )
    for key in (labels.MAX_DELAY_SECONDS, labels.PRIORITY, labels.MAX_INDEX):
        assert f"annotation {key} must" in message


def test_long_values_are_cut_in_the_message() -> None:
    message = spec_error({labels.MAX_DELAY_SECONDS: "x" * 10_000})
    assert len(message) < 300


def test_an_ancient_deadline_starts_at_once_instead_of_overflowing() -> None:
    work = work_from_plain_job(
        job({labels.DEADLINE_TIME: "0001-01-01T00:00:00Z"}), default_region=DEFAULT_REGION
    )
    assert work.latest_start == CREATED


def test_an_unreadable_planned_start_is_ignored() -> None:
    work = work_from_plain_job(
        job({labels.PLANNED_START_TIME: "garbage"}), default_region=DEFAULT_REGION
    )
    assert work.planned_start is None


def test_schedule_from_annotations_ignores_other_annotations() -> None:
    schedule = schedule_from_annotations({"example.com/owner": "ml", labels.POLICY: "Immediate"})
    assert schedule.policy is SchedulePolicy.IMMEDIATE


# --------------------------------------------------------------------------- property

INTEGER_TEXT = st.one_of(
    st.integers(min_value=-(10**21), max_value=10**21).map(str),
    st.integers(min_value=-10, max_value=MAX_SECONDS + 10).map(str),
    st.sampled_from(["", " 60 ", "60.0", "1e3", "0x10", "1_000", "١٢", "+5", "-0", "NaN"]),
)
TIME_TEXT = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(
        ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2030-01-31", "1700000000", "now"]
    ),
)
ENUM_TEXT = st.sampled_from(
    [*SchedulePolicy, *IndexLevel, "Sometimes", "Low-ish", "forecast", " Low", ""]
).map(str)
VALUE = st.one_of(INTEGER_TEXT, TIME_TEXT, ENUM_TEXT, st.text(max_size=80))
ANNOTATIONS = st.dictionaries(
    st.one_of(st.sampled_from(OUR_KEYS), st.text(max_size=40)), VALUE, max_size=12
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(ANNOTATIONS)
def test_any_annotations_give_valid_work_or_a_spec_error(annotations: dict[str, str]) -> None:
    try:
        work = work_from_plain_job(job(annotations), default_region=DEFAULT_REGION)
    except SpecError as exc:
        message = str(exc)
        assert message.startswith("annotation"), message
        assert " must " in message
        return
    assert work.policy in SchedulePolicy
    assert work.latest_start.utcoffset() is not None
    assert CREATED <= work.latest_start <= CREATED + timedelta(seconds=MAX_SECONDS)
    assert 1 <= work.expected_duration_seconds <= MAX_SECONDS
    assert -MAX_PRIORITY <= work.priority <= MAX_PRIORITY
    assert 1 <= len(work.region) <= 64
    assert work.planned_start is None or work.planned_start.utcoffset() is not None
    threshold = work.max_intensity is not None or work.max_index is not None
    assert threshold == (work.policy is SchedulePolicy.THRESHOLD)
    if work.max_intensity is not None:
        assert 0 <= work.max_intensity <= MAX_INTENSITY


def test_held_work_keeps_the_object_but_not_its_managed_fields() -> None:
    owners = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}]
    plain = job({labels.POLICY: "Forecast"})
    plain["metadata"]["managedFields"] = owners
    caj = {
        "apiVersion": "carbonaware.io/v1alpha1",
        "kind": "CarbonAwareJob",
        "metadata": {**plain["metadata"], "name": "train"},
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox"}],
                        }
                    }
                }
            }
        },
        "status": {"state": "Held"},
    }
    held = [
        (plain, work_from_plain_job(plain, default_region=DEFAULT_REGION)),
        (caj, work_from_carbonawarejob(caj, parse_spec(caj["spec"]), region="GB")),
    ]
    for body, work in held:
        assert "managedFields" not in work.body["metadata"]
        assert work.body["metadata"] == {
            k: v for k, v in body["metadata"].items() if k != "managedFields"
        }
        assert {k: v for k, v in work.body.items() if k != "metadata"} == {
            k: v for k, v in body.items() if k != "metadata"
        }
        assert body["metadata"]["managedFields"] == owners  # the watched object is untouched
